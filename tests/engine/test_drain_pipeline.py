"""A call hanging until its timeout does not stop a healthy destination: the drain sends
the next batch meanwhile and records the hung one when it ends. Real store, real Redis,
the fake amoCRM on loopback (a request held, then its connection dropped)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from hub.engine.drain import drain
from hub.engine.process import process_received
from hub.runtime import Runtime
from hub.store import tables as t
from plugins.amocrm.testing import FakeAmoCRM
from tests.engine.test_engine import form, ingest

DEST = "amo_main"
COMPLEX = "/api/v4/leads/complex"
#: with this seed and ratio 0.5 the first leads/complex request hangs, the second does not
SEED = 3


@pytest.fixture
def rt(amo_runtime: Runtime) -> Runtime:
    return amo_runtime


def deliveries(rt: Runtime) -> list[Any]:
    """In the order a drain leases them (by id: routing order to the millisecond; within
    one, ids are random, so ``created_at`` order could put a lead in the wrong batch)."""
    with rt.reader.connect() as conn:
        return list(conn.execute(select(t.deliveries).order_by(t.deliveries.c.id)))


def route(rt: Runtime, start: int, n: int) -> None:
    for i in range(start, start + n):
        ingest(rt, form(f"name=Lead+{i}&phone=%2B7916{i:07d}"))
        process_received(rt)


def test_a_hanging_call_does_not_hold_back_the_next_batch(rt: Runtime, amo: FakeAmoCRM) -> None:
    route(rt, 0, 1)
    assert drain(rt, DEST).delivered == 1  # the destination has answered lately
    amo.clear_records()
    route(rt, 1, 51)  # a full batch of 50, and one more lead

    amo.faults(0.5, ("timeout",), seed=SEED, after_ratio=0.0, hang_s=1.5, paths=(COMPLEX,))
    stats = drain(rt, DEST)
    amo.no_faults()

    creates = [r for r in amo.requests if r.path == COMPLEX]
    assert [bool(r.fault) for r in creates[:2]] == [True, False]
    assert [len(json.loads(r.body)) for r in creates[:2]] == [50, 1], \
        "the 51st lead was sent while the first call hung"
    rows = deliveries(rt)[1:]
    hung, after = rows[:50], rows[50:]
    assert [d.status for d in after] == ["delivered"]
    assert stats.failed == 50  # the hung call, recorded when it ended
    # its quick try may have come within the same drain: a look-up, then the deals
    assert {(d.status, d.attempts) for d in hung} in (
        {("failed", 1)}, {("delivered", 2)}), {(d.status, d.attempts) for d in hung}
    markers = amo.leads_by_marker("lh:")
    assert all(len(ids) == 1 for ids in markers.values()), "a deal made twice"


def test_a_drain_past_its_budget_with_a_call_in_the_air_still_sends_what_comes(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    """It waits for that call anyway; meanwhile it sends (another drain taking over the
    trickle would hold a second worker)."""
    route(rt, 0, 1)
    assert drain(rt, DEST).delivered == 1
    route(rt, 1, 1)
    amo.faults(1.0, ("timeout",), after_ratio=0.0, hang_s=2.0, paths=(COMPLEX,))
    amo.clear_records()

    def later_lead() -> None:
        while not amo.requests:  # the first call is in the air
            time.sleep(0.01)
        amo.no_faults()
        time.sleep(0.5)  # past the drain's budget
        route(rt, 2, 1)

    th = threading.Thread(target=later_lead)
    th.start()
    stats = drain(rt, DEST, budget_s=0.2)
    th.join()
    assert [bool(r.fault) for r in amo.requests if r.path == COMPLEX] == [True, False]
    assert stats.delivered == 1 and stats.failed == 1
    assert [d.status for d in deliveries(rt)] == ["delivered", "failed", "delivered"]
