"""The express path (hub/engine/express.py) on a real store and Redis, in-process: what it
delivers itself, and what it leaves to the queue."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from hub.engine.express import deliver_now
from hub.queue import PROCESS_QUEUE, destination_queue
from hub.runtime import Runtime
from hub.store import tables as t
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import AMO_TOKEN, RuntimeFactory
from tests.engine.test_engine import form, ingest


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
