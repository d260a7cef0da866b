"""The express path (hub/engine/express.py) on a real store and Redis, in-process: what it
delivers itself (leased as it is routed, to a destination that answers), and what it
leaves to the drains and the queue."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from sqlalchemy import select

from hub.engine import jobs
from hub.engine.drain import drain
from hub.engine.drain_control import breaker_key, note_success, open_breaker
from hub.engine.express import (
    Recent,
    RoutedSends,
    deliver_now,
    express_destinations,
    routed_sends,
)
from hub.engine.process import process_received
from hub.queue import PROCESS_QUEUE, destination_queue
from hub.runtime import Runtime, set_current
from hub.store import tables as t
from hub.store.connector_state import set_enabled
from hub.testing.fakeserver import FakeServer, RecordedRequest, Response
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import AMO_TOKEN, RuntimeFactory
from tests.engine.test_engine import form, ingest
from tests.engine.test_process_batch import write_transactions


def config(amo: FakeAmoCRM) -> str:
    return f"""
[hub]
default_region = "RU"
default_destinations = ["jsonl", "amo"]
dedup_window_minutes = 0

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
path = "leads.jsonl"

[destinations.amo]
plugin = "amocrm"
base_url = "{amo.base_url}"
access_token = "{AMO_TOKEN}"
"""


def statuses(rt: Runtime) -> dict[str, str]:
    with rt.reader.connect() as conn:
        return {r.destination: r.status for r in conn.execute(
            select(t.deliveries.c.destination, t.deliveries.c.status))}


def woken(rt: Runtime, queue: str, *args: str) -> bool:
    """A wake-up for ``queue`` is queued (its marker, ``hub.queue.wake``)."""
    return bool(rt.redis.exists(f"leadhub:wake:{queue}:{':'.join(args)}"))


def test_express_delivers_to_a_fast_destination_and_leaves_a_rate_limited_one_to_the_queue(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    rt = make_runtime(config(amo))
    lead_id = ingest(rt, form("name=Ivan&phone=%2B79161234567")).lead_ids[0]
    deliver_now(rt, 1)
    # the file destination (1,000 requests/s) got the lead from this call, exactly once
    path: Path = rt.destination("jsonl").file  # type: ignore[union-attr]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["id"] for x in lines] == [lead_id]
    assert statuses(rt) == {"jsonl": "delivered", "amo": "pending"}
    # amoCRM (7 requests/s) waits for a worker's batch: woken, not sent
    assert woken(rt, destination_queue("amo"), "amo")
    assert not amo.requests
    # the only lead was routed here: no process job for nothing
    assert not woken(rt, PROCESS_QUEUE)


def test_express_wakes_the_process_queue_when_older_leads_wait_too(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    rt = make_runtime(config(amo))
    for i in range(3):
        ingest(rt, form(f"name=Ivan&phone=%2B7916123456{i}"))
    deliver_now(rt, 1)  # handed one lead; routes two (the oldest first), leaves one
    with rt.reader.connect() as conn:
        left = conn.execute(select(t.leads.c.id).where(t.leads.c.status == "received")).all()
    assert len(left) == 1
    assert woken(rt, PROCESS_QUEUE)


def file_ids(rt: Runtime) -> list[str]:
    path: Path = rt.destination("jsonl").file  # type: ignore[union-attr]
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def answering(rt: Runtime) -> None:
    """The file destination delivered lately (what a first drain leaves behind)."""
    note_success(rt, "jsonl")


def test_a_lead_to_an_answering_destination_is_leased_as_it_is_routed_and_sent_at_once(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    rt = make_runtime(config(amo))
    answering(rt)
    assert express_destinations(rt) == {"jsonl"}  # amoCRM's 7 requests/s: never
    lead_id = ingest(rt, form("name=Ivan&phone=%2B79161234567")).lead_ids[0]
    begun = write_transactions(rt)
    deliver_now(rt, 1)
    assert file_ids(rt) == [lead_id]
    assert statuses(rt) == {"jsonl": "delivered", "amo": "pending"}
    # routing (with the claim and the lease) and the record: no lease of a drain's own
    assert len(begun) == 2
    assert woken(rt, destination_queue("amo"), "amo")


def test_a_destination_switched_off_broken_or_unheard_of_is_left_to_its_drain(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    rt = make_runtime(config(amo))
    assert express_destinations(rt) == set()  # never delivered anything yet
    note_success(rt, "jsonl")
    assert express_destinations(rt) == {"jsonl"}
    open_breaker(rt, "jsonl", 5)
    assert express_destinations(rt) == set()
    rt.redis.delete(breaker_key("jsonl"))
    with rt.db.begin() as conn:
        set_enabled(conn, "jsonl", False, time.time())
    rt.note_switch()
    assert express_destinations(rt) == set()


def test_a_duplicate_is_left_to_the_drain(make_runtime: RuntimeFactory, amo: FakeAmoCRM) -> None:
    """amoCRM notes a duplicate on its original's deal: that waits for the original's
    delivery, which a drain knows how to do (asked to lease for amoCRM here directly)."""
    rt = make_runtime(config(amo).replace("dedup_window_minutes = 0", "dedup_window_minutes = 30"))
    first = ingest(rt, form("name=Ivan&phone=%2B79161234567")).lead_ids[0]
    second = ingest(rt, form("name=Ivan+again&phone=%2B79161234567")).lead_ids[0]
    done = process_received(rt, send_now={"jsonl", "amo"})
    assert [row.lead_id for row in done.leased["amo"].rows] == [first]
    assert done.unleased == {"amo"}  # the duplicate's delivery: a drain's
    with rt.reader.connect() as conn:
        attempts = {(r.lead_id, r.destination): r.attempt_id for r in conn.execute(
            select(t.deliveries.c.lead_id, t.deliveries.c.destination, t.deliveries.c.attempt_id))}
    assert attempts[(first, "amo")] == done.leased["amo"].attempt
    assert attempts[(first, "jsonl")] == done.leased["jsonl"].attempt
    assert attempts[(second, "amo")] is None


def test_a_lease_taken_in_routing_and_never_sent_runs_out_and_a_drain_sends_it_once(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    """The api dies between the routing commit and its request: the delivery waits out
    its lease (twice the request timeout and 10 s), then a worker's drain sends it."""
    rt = make_runtime(config(amo))
    answering(rt)
    lead_id = ingest(rt, form("name=Ivan&phone=%2B79161234567")).lead_ids[0]
    routed_at = time.time()
    done = process_received(rt, send_now={"jsonl"})  # ... and no send_leased
    assert done.leased["jsonl"].rows
    timeout = rt.destination("jsonl").request_timeout_s  # type: ignore[union-attr]
    assert drain(rt, "jsonl", clock=lambda: routed_at + timeout * 2 + 9).delivered == 0
    stats = drain(rt, "jsonl", clock=lambda: routed_at + timeout * 2 + 11)
    assert stats.delivered == 1
    assert file_ids(rt) == [lead_id]


def test_the_process_job_sends_what_it_routed_to_a_fast_destination_on_threads_of_its_own(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    """Under load the worker sends the batch it routed, leased in the routing transaction,
    instead of waking a drain job to lease and read it again; amoCRM's batches stay the
    drain's."""
    rt = make_runtime(config(amo))
    answering(rt)
    ids = [ingest(rt, form(f"name=Ivan&phone=%2B7916123456{n}")).lead_ids[0] for n in range(3)]
    set_current(rt)
    try:
        assert jobs.process_job() == 3
    finally:
        set_current(None)
    assert routed_sends(rt).wait(10)
    assert sorted(file_ids(rt)) == sorted(ids)
    with rt.reader.connect() as conn:
        rows = list(conn.execute(select(t.deliveries.c.destination, t.deliveries.c.status,
                                        t.deliveries.c.attempts)))
    assert sorted((r.status, r.attempts) for r in rows if r.destination == "jsonl") == \
        [("delivered", 1)] * 3
    assert {r.status for r in rows if r.destination == "amo"} == {"pending"}
    assert woken(rt, destination_queue("amo"), "amo")
    assert not woken(rt, destination_queue("jsonl"), "jsonl"), "nothing left for its drain"


def hook_config(url: str, extra: str = "") -> str:
    return f"""
[hub]
default_region = "RU"
default_destinations = ["hook"]

[sources.site_form]
plugin = "webform"

[destinations.hook]
plugin = "webhook"
url = "{url}"
{extra}
"""


def test_routing_leases_at_most_a_batch_for_a_direct_send_and_leaves_the_rest_to_the_drain(
    make_runtime: RuntimeFactory,
) -> None:
    # 60 requests/s within a 0.05 s timeout: one lead per lease (plugins/webhook.py)
    rt = make_runtime(hook_config("http://127.0.0.1:9/hook",
                                  "requests_per_second = 60\ntimeout_s = 0.05"))
    assert rt.destination("hook").effective_limits().batch_size == 1  # type: ignore[union-attr]
    for n in range(3):
        ingest(rt, form(f"name=Ivan&phone=%2B7916123456{n}"))
    done = process_received(rt, send_now={"hook"})
    assert len(done.leads) == 3
    assert len(done.leased["hook"].rows) == 1
    assert done.for_drains() == {"hook"}


def test_a_destination_whose_sends_are_all_in_the_air_is_left_to_its_drains(
    make_runtime: RuntimeFactory,
) -> None:
    """A receiver that holds its requests holds up the worker's send threads, not its
    routing: while the destination's sends are in the air, its new deliveries are the
    drains'."""
    release = threading.Event()

    def held(_req: RecordedRequest, _params: dict[str, str]) -> Response:
        release.wait(10)
        return Response.json({"ok": True})

    with FakeServer() as receiver:
        receiver.add_route("POST", "/hook", held)
        rt = make_runtime(hook_config(f"{receiver.base_url}/hook"))
        note_success(rt, "hook")
        sends = RoutedSends(rt, per_destination=1)
        assert sends.destinations() == {"hook"}
        lead_id = ingest(rt, form("name=Ivan&phone=%2B79161234567")).lead_ids[0]
        done = process_received(rt, send_now=sends.destinations())
        started = time.monotonic()
        sends.submit(done.leased)
        assert time.monotonic() - started < 1, "submit returns while the receiver holds it"
        assert sends.destinations() == set()
        second = ingest(rt, form("name=Petr&phone=%2B79161234568")).lead_ids[0]
        later = process_received(rt, send_now=sends.destinations())
        assert not later.leased and later.for_drains() == {"hook"}
        release.set()
        assert sends.wait(10)
        assert sends.destinations() == {"hook"}
        assert drain(rt, "hook").delivered == 1  # the second lead: the drain's
        got = [json.loads(r.body)["id"] for r in receiver.requests]
        assert sorted(got) == sorted([lead_id, second])


def test_recent_reads_the_express_destinations_again_after_a_while_or_a_switch_of_this_process(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    rt = make_runtime(config(amo))
    answering(rt)
    recent = Recent(rt, fresh_s=3600, late_s=3600)
    fresh = Recent(rt, fresh_s=0, late_s=0)
    assert recent() == fresh() == {"jsonl"}
    open_breaker(rt, "jsonl", 5)
    assert fresh() == set()
    assert recent() == {"jsonl"}, "read a moment ago: used again (Redis is not asked)"
    rt.redis.delete(breaker_key("jsonl"))
    with rt.db.begin() as conn:
        set_enabled(conn, "jsonl", False, time.time())
    rt.note_switch()
    assert recent() == set(), "this process flipped a switch: read again at once"


def test_recent_reads_again_after_the_work_once_stale_and_before_it_once_late(
    make_runtime: RuntimeFactory, amo: FakeAmoCRM
) -> None:
    """The round trip is off a lead's path: a stale read is used for the work at hand and
    read again after it (``refresh``); only a late one is read before the work."""
    rt = make_runtime(config(amo))
    answering(rt)
    lazy = Recent(rt, fresh_s=0, late_s=3600)
    assert lazy() == {"jsonl"}
    open_breaker(rt, "jsonl", 5)
    assert lazy() == {"jsonl"}, "stale, not late: used for this work"
    lazy.refresh()
    assert lazy() == set(), "read again after the work: the breaker is seen"
    unchanged = Recent(rt, fresh_s=3600, late_s=3600)
    assert unchanged() == set()
    rt.redis.delete(breaker_key("jsonl"))
    unchanged.refresh()
    assert unchanged() == set(), "fresh: refresh reads nothing"
    eager = Recent(rt, fresh_s=3600, late_s=0)
    assert eager() == {"jsonl"}, "late: read before the work"
