"""The engine on a real store (SQLite and PostgreSQL) and a real Redis, in-process:
ingest, dedup of provider retries, quarantine, routing, assignment, leased delivery."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.connectors import InboundRequest, ParsedEvent
from hub.engine.drain import drain
from hub.engine.drain_control import (
    answered_key,
    drain_start,
    failures_key,
    offer_spread,
    spread_key,
)
from hub.engine.ingest import build_item, ingest_batch
from hub.engine.leads import get_lead
from hub.engine.ledger import ledger
from hub.engine.process import process_received
from hub.engine.replay import replay_lead
from hub.runtime import SWITCHES_KEY, Runtime
from hub.store import connector_state
from hub.store import leads as lead_store
from hub.store import tables as t
from tests.conftest import RuntimeFactory

CONFIG = """
[hub]
default_region = "RU"
default_destinations = ["jsonl"]

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
path = "leads.jsonl"

[destinations.other]
plugin = "file"
path = "other.jsonl"

[[routes]]
name = "ads"
match = { "utm.source" = "yandex*" }
destinations = ["jsonl", "other"]
assign = { strategy = "round_robin", managers = ["1001", "1002", "1003"] }
"""


@pytest.fixture
def rt(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(CONFIG)


def form(body: str, **headers: str) -> InboundRequest:
    return InboundRequest(
        method="POST", source="site_form", path="", query=(),
        headers={"content-type": "application/x-www-form-urlencoded", **headers},
        body=body.encode(),
    )


def ingest(rt: Runtime, req: InboundRequest) -> Any:
    src = rt.source(req.source)
    assert src is not None
    parsed: list[ParsedEvent] = src.parse(req)
    item = build_item(req, parsed, None, default_region="RU", dedup_window_s=1800,
                      received_at=time.time())
    return ingest_batch(rt.db, [item])[0]


def count(rt: Runtime, table: Any) -> int:
    with rt.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_lead_flows_to_destinations_with_manager(rt: Runtime) -> None:
    res = ingest(rt, form("name=%D0%98%D0%B2%D0%B0%D0%BD&phone=8+(916)+123-45-67&utm_source=yandex"))
    [lead_id] = res.lead_ids
    assert count(rt, t.inbound_events) == 1  # the raw request is in the store
    done = process_received(rt)
    assert [lead.id for lead in done.leads] == [lead_id]
    assert done.destinations == {"jsonl", "other"}
    assert drain(rt, "jsonl").delivered == 1
    assert drain(rt, "other").delivered == 1
    lead = get_lead(rt, lead_id)
    assert lead is not None
    assert lead.status == "delivered"
    assert lead.assigned_to == "1001"
    assert lead.contact.phones == ["+79161234567"]
    lines = (rt.data_dir / "leads.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [lead_id]


def test_a_routed_lead_is_found_by_its_cyrillic_name(rt: Runtime) -> None:
    """Routing writes the lead back encoded as at ingest (UTF-8 text): with ``json.dumps``
    the name became ``\\u...`` escapes and the admin search no longer found it."""
    [lead_id] = ingest(rt, form("name=%D0%98%D0%B2%D0%B0%D0%BD+%D0%9F%D0%B5%D1%82%D1%80%D0%BE%D0%B2"
                                "&phone=8+(916)+123-45-67")).lead_ids
    assert [lead.id for lead in process_received(rt).leads] == [lead_id]
    with rt.reader.connect() as conn:
        found = lead_store.newest(conn, lead_store.LeadFilter(text="Петров"), 10)
    assert [row.id for row in found] == [lead_id]


def test_provider_retry_with_same_body_is_one_lead(rt: Runtime) -> None:
    body = "name=A&phone=%2B79161234567"
    first = ingest(rt, form(body))
    again = ingest(rt, form(body))
    assert again.retry and again.lead_ids == first.lead_ids
    assert count(rt, t.leads) == 1
    assert count(rt, t.inbound_events) == 2  # both raw requests kept
    doc = ledger(rt.db)
    assert doc["totals"]["events"] == 1 and doc["balanced"]


def test_same_event_id_is_one_lead_even_with_other_body(rt: Runtime) -> None:
    a = ingest(rt, form("phone=%2B79161234567&event_id=e1"))
    b = ingest(rt, form("phone=%2B79161234567&event_id=e1&x=1"))
    assert b.lead_ids == a.lead_ids


def test_no_contact_goes_to_quarantine(rt: Runtime) -> None:
    res = ingest(rt, form("name=Nobody&comment=hi"))
    assert res.quarantined and "no contact" in res.quarantined
    assert count(rt, t.quarantine) == 1 and count(rt, t.leads) == 0
    assert ledger(rt.db)["totals"]["quarantined"] == 1


def test_cross_channel_duplicate_points_at_original(rt: Runtime) -> None:
    a = ingest(rt, form("phone=%2B79161234567&email=a%40example.ru"))
    b = ingest(rt, form("name=Other&email=A%40Example.ru"))
    process_received(rt)
    dup = get_lead(rt, b.lead_ids[0])
    assert dup is not None and dup.status == "duplicate" and dup.duplicate_of == a.lead_ids[0]
    doc = ledger(rt.db)
    assert doc["totals"]["duplicates"] == 1 and doc["totals"]["leads"] == 1 and doc["balanced"]


def test_round_robin_is_even_and_persistent(rt: Runtime) -> None:
    for i in range(9):
        ingest(rt, form(f"phone=%2B7916123{i:04d}&utm_source=yandex"))
    process_received(rt)
    with rt.db.connect() as conn:
        got = [r for (r,) in conn.execute(select(t.leads.c.assigned_to).order_by(t.leads.c.id))]
    assert sorted(got) == ["1001"] * 3 + ["1002"] * 3 + ["1003"] * 3


def test_expired_lease_makes_next_attempt_a_lookup(rt: Runtime) -> None:
    """A worker that died after writing but before recording: no second line."""
    res = ingest(rt, form("phone=%2B79161234567"))
    process_received(rt)
    dest = rt.destination("jsonl")
    assert dest is not None
    # simulate the crash: the file got the line, the store still shows a leased attempt
    from hub.connectors import DeliveryItem

    lead = get_lead(rt, res.lead_ids[0])
    assert lead is not None
    dest.deliver([DeliveryItem("x", "k", lead)])
    with rt.db.begin() as conn:
        conn.execute(t.deliveries.update().values(lease_until=time.time() - 1))
    assert drain(rt, "jsonl").delivered == 1
    lines = (rt.data_dir / "leads.jsonl").read_text().splitlines()
    assert len(lines) == 1


def test_disabled_destination_holds_deliveries_pending(rt: Runtime) -> None:
    ingest(rt, form("phone=%2B79161234567"))
    process_received(rt)
    with rt.db.begin() as conn:
        conn.execute(t.connector_state.insert().values(name="jsonl", enabled=False, updated_at=0))
    assert drain(rt, "jsonl").delivered == 0
    with rt.db.connect() as conn:
        assert conn.execute(select(t.deliveries.c.status)).scalar() == "pending"


def test_a_switch_reaches_drains_of_every_process(make_runtime: RuntimeFactory) -> None:
    """A drain reads the switches from the store only when their version in Redis changed
    (``Runtime.switches_at``): a switch made through another runtime (the api's, here on
    the same store and Redis) reaches the next drain of this one, both ways."""
    worker, api = make_runtime(CONFIG), make_runtime(CONFIG)
    ingest(worker, form("phone=%2B79161234567"))
    process_received(worker)
    assert drain(worker, "jsonl").delivered == 1  # read the switches (none), kept them
    for enabled, delivered in ((False, 0), (True, 2)):  # enabled: the held lead, and this one
        ingest(worker, form(f"phone=%2B7916123456{int(enabled)}&name={enabled}"))
        process_received(worker)
        with api.db.begin() as conn:  # what the admin API's switch does
            connector_state.set_enabled(conn, "jsonl", enabled, time.time())
        api.note_switch()
        assert drain(worker, "jsonl").delivered == delivered
    with worker.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.deliveries)
                            .where(t.deliveries.c.status == "pending")).scalar_one() == 0


def test_drain_start_takes_a_helper_offer_only_from_a_destination_that_may_have_helpers(
    rt: Runtime,
) -> None:
    """One round trip: answering, failures in a row, the helper offer (taken only while
    the destination answers or has no failures) and the switches' version (set by the
    first drain that finds none)."""
    rt.redis.delete(SWITCHES_KEY, spread_key("jsonl"), failures_key("jsonl"), answered_key("jsonl"))
    first = drain_start(rt, "jsonl")
    assert (first.answering, first.failures, first.helper) == (False, None, False)
    assert first.switches == rt.redis.get(SWITCHES_KEY)
    assert drain_start(rt, "jsonl").switches == first.switches
    offer_spread(rt, "jsonl")
    assert drain_start(rt, "jsonl").helper and not drain_start(rt, "jsonl").helper  # taken once
    rt.redis.set(failures_key("jsonl"), 2)
    offer_spread(rt, "jsonl")
    failing = drain_start(rt, "jsonl")
    assert (failing.failures, failing.helper) == (2, False)  # failing, not answering: left
    rt.redis.set(answered_key("jsonl"), 1)
    answering = drain_start(rt, "jsonl")
    assert (answering.answering, answering.helper) == (True, True)
    rt.note_switch()
    assert drain_start(rt, "jsonl").switches != first.switches


def test_replay_is_idempotent_per_destination(rt: Runtime) -> None:
    res = ingest(rt, form("phone=%2B79161234567"))
    process_received(rt)
    drain(rt, "jsonl")
    assert replay_lead(rt, res.lead_ids[0])
    drain(rt, "jsonl")
    assert len((rt.data_dir / "leads.jsonl").read_text().splitlines()) == 1
    lead = get_lead(rt, res.lead_ids[0])
    assert lead is not None and [d.attempts for d in lead.deliveries] == [1]


def test_a_taken_over_attempt_records_nothing(rt: Runtime) -> None:
    """A stalled worker whose lease ran out must not overwrite the newer attempt's result."""
    from hub.store.deliveries import AttemptRecord, lease_batch, record_attempt

    ingest(rt, form("phone=%2B79161234567"))
    process_received(rt)
    now = time.time()
    with rt.db.begin() as conn:
        rows = lease_batch(conn, "jsonl", 10, now, 0.001, "stalled")
    time.sleep(0.01)  # the stalled attempt's lease runs out; another drain delivers
    assert drain(rt, "jsonl").delivered == 1
    late = AttemptRecord(failed=[{"b_id": rows[0].id, "b_status": "failed", "b_next": now + 5,
                                  "b_uncertain": True, "b_error": "late timeout",
                                  "b_attempts": 1, "b_first": now}], lead_ids={rows[0].lead_id})
    assert record_attempt(rt.db, late, "stalled", time.time()) == set()
    with rt.db.connect() as conn:
        status, error = conn.execute(select(t.deliveries.c.status, t.deliveries.c.last_error)).one()
    assert (status, error) == ("delivered", None)
