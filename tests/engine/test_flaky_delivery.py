"""A flaky CRM is not a down one: retries within seconds while it answers, batches that
stay together, a failed look-up that costs one quick try, and amoCRM's 403 "blocked"
answer that pauses the destination instead of being retried at the normal pace.
Real store, real Redis, the fake amoCRM on loopback; the engine's clock is controlled."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from hub.engine import jobs
from hub.engine.backoff import JITTER, QUICK_STEP_S
from hub.engine.drain import drain
from hub.engine.drain_control import breaker_open
from hub.engine.jobs import wake_process
from hub.engine.process import process_received
from hub.engine.sweeper import sweep
from hub.runtime import Runtime, set_current
from hub.store import tables as t
from plugins.amocrm.testing import FakeAmoCRM
from tests.engine.test_engine import form, ingest

TOKEN = "long-lived-token"
COMPLEX = "/api/v4/leads/complex"


@pytest.fixture
def rt(amo_runtime: Runtime) -> Runtime:
    return amo_runtime


def deliveries(rt: Runtime) -> list[Any]:
    with rt.reader.connect() as conn:
        return list(conn.execute(select(t.deliveries).order_by(t.deliveries.c.id)))


def new_leads(rt: Runtime, start: int, n: int) -> set[str]:
    for i in range(start, start + n):
        ingest(rt, form(f"name=Lead+{i}&phone=%2B7916{i:07d}"))
    process_received(rt)
    return {d.id for d in deliveries(rt) if d.status == "pending"}


def answering_destination(rt: Runtime, amo: FakeAmoCRM) -> None:
    """One lead delivered: the destination has answered lately."""
    new_leads(rt, 0, 1)
    assert drain(rt, "amo_main").delivered == 1
    amo.clear_records()


def test_a_batch_whose_lookup_failed_once_is_delivered_on_its_next_quick_try(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    answering_destination(rt, amo)
    batch = new_leads(rt, 1, 5)
    now = max(d.next_attempt_at for d in deliveries(rt))

    # attempt 1: amoCRM creates the five deals, then answers 500 (we cannot know they landed)
    amo.faults(1.0, ("500",), after_ratio=1.0, paths=(COMPLEX,))
    drain(rt, "amo_main", clock=lambda: now)
    rows = [d for d in deliveries(rt) if d.id in batch]
    assert {(d.status, d.attempts, d.uncertain) for d in rows} == {("failed", 1, True)}
    assert len({d.next_attempt_at for d in rows}) == 1, "the batch falls due together"
    gap = rows[0].next_attempt_at - now
    assert QUICK_STEP_S * (1 - JITTER) <= gap <= QUICK_STEP_S * (1 + JITTER), gap
    assert len(amo.leads) == 6

    # attempt 2: the look-up fails once; nothing is sent, one quick try is spent
    amo.faults(1.0, ("500",), after_ratio=0.0, methods=("GET",))
    amo.clear_records()
    now = rows[0].next_attempt_at
    drain(rt, "amo_main", clock=lambda: now)
    assert [r.method for r in amo.requests] == ["GET"]
    rows = [d for d in deliveries(rt) if d.id in batch]
    assert {(d.status, d.attempts, d.uncertain) for d in rows} == {("failed", 2, True)}
    assert len({d.next_attempt_at for d in rows}) == 1
    gap = rows[0].next_attempt_at - now
    assert 2 * QUICK_STEP_S * (1 - JITTER) <= gap <= 2 * QUICK_STEP_S * (1 + JITTER), gap

    # attempt 3: one look-up finds all five deals; nothing is created again
    amo.no_faults()
    amo.clear_records()
    now = rows[0].next_attempt_at
    stats = drain(rt, "amo_main", clock=lambda: now)
    assert stats.delivered == 5
    assert [(r.method, r.path) for r in amo.requests] == [("GET", "/api/v4/leads")]
    assert len(amo.leads) == 6
    markers = amo.leads_by_marker("lh:")
    assert len(markers) == 6 and all(len(ids) == 1 for ids in markers.values())
    assert {d.external_id for d in deliveries(rt) if d.id in batch} == {
        str(ids[0]) for m, ids in markers.items()
        if m.split(":")[1] in {d.lead_id for d in deliveries(rt) if d.id in batch}
    }


def test_a_batch_of_fresh_and_retried_leads_falls_due_together(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    """A lead on its second try and one on its first fail in one request: both are due
    again at the same moment (the retried one's quick step), so they go out as one batch
    and their attempt is looked up once, not once per part."""
    answering_destination(rt, amo)
    retried = new_leads(rt, 1, 1)
    now = max(d.next_attempt_at for d in deliveries(rt))
    amo.faults(1.0, ("500",), after_ratio=0.0, paths=(COMPLEX,))
    drain(rt, "amo_main", clock=lambda: now)
    fresh = new_leads(rt, 2, 1)
    now = max(d.next_attempt_at for d in deliveries(rt))
    amo.clear_records()
    drain(rt, "amo_main", clock=lambda: now)
    assert [r.method for r in amo.requests] == ["GET", "POST"], "one look-up, one create"
    rows = [d for d in deliveries(rt) if d.id in retried | fresh]
    assert sorted(d.attempts for d in rows) == [1, 2]
    assert len({d.next_attempt_at for d in rows}) == 1, "the batch falls due together"
    gap = rows[0].next_attempt_at - now
    assert 2 * QUICK_STEP_S * (1 - JITTER) <= gap <= 2 * QUICK_STEP_S * (1 + JITTER), gap

    amo.no_faults()
    amo.clear_records()
    stats = drain(rt, "amo_main", clock=lambda: rows[0].next_attempt_at)
    assert stats.delivered == 2
    assert [r.method for r in amo.requests] == ["GET", "POST"], "one look-up for the batch"


def test_a_retried_lead_goes_out_before_leads_routed_after_it(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    """Due deliveries go oldest first. By due time, a lead whose retry fell due after a
    backlog of newer leads had been routed waited behind all of them: under 20 % faults
    the slowest lead of bench/delivery.py spent 3.4 s so, on its fourth try."""
    answering_destination(rt, amo)
    retried = new_leads(rt, 1, 1)
    (lead_id,) = {d.lead_id for d in deliveries(rt) if d.id in retried}
    later = max(d.next_attempt_at for d in deliveries(rt)) + 1000
    amo.faults(1.0, ("429",), paths=(COMPLEX,))
    drain(rt, "amo_main", clock=lambda: later)  # its retry is due after the leads below
    new_leads(rt, 2, 50)  # routed now: due before it, a batch's worth
    amo.no_faults()
    amo.clear_records()
    stats = drain(rt, "amo_main", clock=lambda: later + 1000)
    assert stats.delivered == 51
    creates = [r for r in amo.requests if r.path == COMPLEX]
    assert len(creates) == 2
    assert lead_id.encode() in creates[0].body, "the retried lead waited behind newer ones"


def test_a_destination_that_never_answers_backs_off_exponentially(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    """No success lately: the first failure already waits the long schedule (5 s ± 20 %)."""
    new_leads(rt, 0, 3)
    now = max(d.next_attempt_at for d in deliveries(rt))
    amo.faults(1.0, ("500",), after_ratio=0.0)
    drain(rt, "amo_main", clock=lambda: now)
    rows = deliveries(rt)
    assert {(d.status, d.attempts) for d in rows} == {("failed", 1)}
    gap = rows[0].next_attempt_at - now
    assert 5 * (1 - JITTER) <= gap <= 5 * (1 + JITTER), gap


@pytest.mark.parametrize(("delivered_ago", "quick"), [(1.0, True), (60.0, False)])
def test_a_redis_restart_does_not_make_a_flaky_crm_look_down(
    rt: Runtime, amo: FakeAmoCRM, delivered_ago: float, quick: bool,
) -> None:
    """Redis loses the destination's health keys (a restart): the store still knows it took
    a delivery a moment ago, so a failed batch gets a quick try, not the long schedule;
    one quiet for a minute does get the long schedule."""
    answering_destination(rt, amo)
    rt.redis.flushdb()
    batch = new_leads(rt, 1, 3)
    with rt.reader.connect() as conn:
        delivered_at = conn.execute(select(t.deliveries.c.updated_at).where(
            t.deliveries.c.status == "delivered")).scalar_one()
    now = delivered_at + delivered_ago
    amo.faults(1.0, ("500",), after_ratio=0.0, paths=(COMPLEX,))
    drain(rt, "amo_main", clock=lambda: now)
    rows = [d for d in deliveries(rt) if d.id in batch]
    assert {(d.status, d.attempts) for d in rows} == {("failed", 1)}
    gap = rows[0].next_attempt_at - now
    step = QUICK_STEP_S if quick else 5.0
    assert step * (1 - JITTER) <= gap <= step * (1 + JITTER), gap


def test_a_drain_waiting_on_a_hanging_call_routes_the_leads_that_wait_for_a_worker(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    """A drain with nothing to lease and a call hanging until its timeout only waits; with
    every worker such a drain (``leadhub serve`` has two), a routing job queued meanwhile
    waited as long. The drain job routes those leads while it waits (``route_waiting``),
    and sends them on past the hanging call."""
    answering_destination(rt, amo)
    new_leads(rt, 1, 1)  # routed and due: its create will hang
    amo.faults(1.0, ("timeout",), after_ratio=0.0, paths=(COMPLEX,))
    hung = threading.Event()

    def end_faults_once_hung() -> None:
        deadline = time.monotonic() + 10
        while not amo.requests_to("POST", COMPLEX) and time.monotonic() < deadline:
            time.sleep(0.005)
        amo.no_faults()  # later requests are answered; the first one hangs on
        hung.set()

    waiter = threading.Thread(target=end_faults_once_hung)
    waiter.start()
    ingest(rt, form("name=Waiting&phone=%2B79160000077"))  # received, not routed
    assert wake_process(rt)  # a routing job queued; no worker is free to take it
    set_current(rt)
    try:
        jobs.drain_job("amo_main")
    finally:
        set_current(None)
        waiter.join()
    assert hung.is_set()
    (hanging,) = amo.requests_to("POST", COMPLEX)[:1]
    routed = [d for d in deliveries(rt) if d.created_at > hanging.time]
    assert len(routed) == 1, "the waiting lead was routed by the drain"
    assert routed[0].created_at - hanging.time < 2.0, "before the hanging call timed out (2 s)"
    assert routed[0].status == "delivered"
    second_create = amo.requests_to("POST", COMPLEX)[1]
    assert second_create.time - hanging.time < 2.0, "sent while the first call still hung"


def test_a_blocked_account_pauses_the_destination(rt: Runtime, amo: FakeAmoCRM) -> None:
    """amoCRM's 403 "blocked for exceeding the request rate": nobody sends for minutes."""
    answering_destination(rt, amo)
    batch = new_leads(rt, 1, 3)
    now = max(d.next_attempt_at for d in deliveries(rt))
    amo.block(600)
    drain(rt, "amo_main", clock=lambda: now)
    assert len(amo.requests) == 1  # the refused request, nothing after it
    rows = [d for d in deliveries(rt) if d.id in batch]
    assert {d.status for d in rows} == {"failed"}
    assert all(d.next_attempt_at - now >= 60 for d in rows), "retried at the normal pace"
    assert breaker_open(rt, "amo_main")
    # while paused, the sweeper does not wake it
    assert "amo_main" not in sweep(rt).drains
    later = min(d.next_attempt_at for d in rows)
    # the block is over (an admin may retry at once): the items go and land once
    amo.unblock()
    rt.redis.delete("leadhub:breaker:amo_main")
    amo.clear_records()
    assert drain(rt, "amo_main", clock=lambda: later).delivered == 3
    assert len(amo.leads) == 4


def test_a_lease_keeps_an_earlier_attempts_items_together() -> None:
    """The uncertain items of one earlier attempt are looked up with one request: a batch
    boundary never cuts them in two (they wait for the next batch, whole)."""
    from types import SimpleNamespace

    from hub.store.deliveries import _whole_attempts

    def row(i: int, attempt: str | None) -> SimpleNamespace:
        return SimpleNamespace(id=f"d{i}", sent_attempt_id=attempt, uncertain=attempt is not None,
                               lease_until=0.0)

    candidates = [row(0, None), row(1, None), row(2, "A"), row(3, "B"), row(4, "A"),
                  row(5, "A"), row(6, None), row(7, "B")]
    assert [r.id for r in _whole_attempts(candidates, 4)] == ["d0", "d1", "d3", "d7"]
    assert [r.id for r in _whole_attempts(candidates, 5)] == ["d0", "d1", "d2", "d4", "d5"]
    assert [r.id for r in _whole_attempts([row(i, "A") for i in range(6)], 4)] == [
        "d0", "d1", "d2", "d3"]  # a group larger than a batch is cut, never skipped
