"""Retention under a controlled clock (SQLite and PostgreSQL): raw requests and quarantine
older than ``raw_retention_days`` are purged, leads older than ``lead_retention_days`` too
when it is set, and the ledger of the purged period keeps its totals and balances."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from hub.connectors import InboundRequest
from hub.engine.drain import drain
from hub.engine.ingest import build_item, ingest_batch
from hub.engine.ledger import DAY_S, ledger
from hub.engine.process import process_received
from hub.engine.retention import RetentionSchedule, purge
from hub.runtime import Runtime
from hub.store import tables as t
from tests.conftest import RuntimeFactory

NOW = 1781524800.0 + 12 * 3600  # 2026-06-15 12:00 UTC
OLD = NOW - 40 * DAY_S  # beyond raw_retention_days = 30
RECENT = NOW - 10 * DAY_S
CONFIG = """
[hub]
default_region = "RU"
default_destinations = ["jsonl"]
raw_retention_days = 30

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
"""


@pytest.fixture
def rt(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(CONFIG)


def post(rt: Runtime, at: float, **fields: str) -> None:
    req = InboundRequest("POST", "site_form", "", (),
                         {"content-type": "application/x-www-form-urlencoded"},
                         urlencode(fields).encode())
    src = rt.source("site_form")
    assert src is not None
    item = build_item(req, src.parse(req), None, default_region="RU", dedup_window_s=1800,
                      received_at=at)
    ingest_batch(rt.db, [item])


def count(rt: Runtime, table: Any, before: float | None = None) -> int:
    stmt = select(func.count()).select_from(table)
    if before is not None:
        stmt = stmt.where(table.c.received_at < before)
    with rt.db.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def fill(rt: Runtime) -> None:
    """Leads, a duplicate, a provider's retry and a quarantined request, 40 and 10 days ago."""
    for at in (OLD, OLD + 7200, RECENT):
        post(rt, at, name="Иван", phone=f"8 916 111-22-{int(at) % 90 + 10}", utm_source="ya")
        post(rt, at + 60, name="Иван", phone=f"+7 916 111 22 {int(at) % 90 + 10}")  # duplicate
        post(rt, at + 120, email=f"anna{int(at)}@example.ru", message="Перезвоните")
        post(rt, at + 180, email=f"anna{int(at)}@example.ru", message="Перезвоните")  # retry
        post(rt, at + 240, message="no contact at all")  # quarantine
    while process_received(rt).leads:
        pass
    drain(rt, "jsonl")


def test_raw_requests_older_than_the_setting_are_purged_and_the_ledger_keeps_its_counts(
        rt: Runtime) -> None:
    fill(rt)
    cut = NOW - 30 * DAY_S
    whole = ledger(rt.reader)
    old_day = ledger(rt.reader, OLD - OLD % DAY_S, OLD - OLD % DAY_S + DAY_S)
    assert whole["balanced"] and old_day["totals"]["events"] == 8
    assert old_day["totals"]["quarantined"] == 2 and old_day["totals"]["duplicates"] == 2
    assert count(rt, t.inbound_events, cut) == 10 and count(rt, t.quarantine) == 3
    leads = count(rt, t.leads)

    report = purge(rt.db, rt.config.hub, NOW, batch=3)  # several batches
    assert report.deleted["inbound_events"] == 10 and report.deleted["quarantine"] == 2
    assert count(rt, t.inbound_events, cut) == 0
    assert count(rt, t.inbound_events) == 5 and count(rt, t.quarantine) == 1
    assert count(rt, t.leads) == leads  # lead_retention_days = 0 keeps leads

    assert ledger(rt.reader) == whole
    assert ledger(rt.reader, OLD - OLD % DAY_S, OLD - OLD % DAY_S + DAY_S) == old_day
    assert purge(rt.db, rt.config.hub, NOW).deleted.total() == 0  # nothing left to do
    assert ledger(rt.reader) == whole
    # any range balances, also one whose ends fall inside a purged day
    rng = random.Random(8)
    for _ in range(20):
        lo, hi = sorted(rng.uniform(OLD - DAY_S, NOW) for _ in range(2))
        assert ledger(rt.reader, lo, hi)["balanced"]


def test_lead_retention_purges_leads_and_what_hangs_off_them(rt: Runtime) -> None:
    fill(rt)
    whole = ledger(rt.reader)
    assert whole["by_destination"]["jsonl"]["delivered"] >= 4
    cut = NOW - 20 * DAY_S
    with rt.db.connect() as conn:
        recent_deliveries = conn.execute(
            select(func.count()).select_from(t.deliveries.join(
                t.leads, t.leads.c.id == t.deliveries.c.lead_id))
            .where(t.leads.c.received_at >= cut)).scalar_one()
    settings = rt.config.hub.model_copy(update={"lead_retention_days": 20})
    purge(rt.db, settings, NOW, batch=2)
    for table in (t.leads, t.inbound_events, t.contact_keys):
        assert count(rt, table, cut) == 0, table.name
    assert count(rt, t.leads) == 3 and count(rt, t.deliveries) == recent_deliveries > 0
    with rt.db.connect() as conn:
        assert conn.execute(select(func.min(t.event_keys.c.seen_at))).scalar_one() >= cut
        assert conn.execute(select(func.count()).select_from(t.threads)
                            .where(t.threads.c.last_seen < cut)).scalar_one() == 0
    assert ledger(rt.reader) == whole


def test_the_scheduler_purges_in_ticks_without_holding_up_its_loop(rt: Runtime) -> None:
    fill(rt)
    clock = [NOW]
    schedule = RetentionSchedule(rt.db, rt.config.hub, clock=lambda: clock[0])
    ticks = 0
    while (report := schedule.tick()) is not None:
        ticks += 1
        if not report.more:
            break
    assert count(rt, t.inbound_events, NOW - 30 * DAY_S) == 0
    assert schedule.tick() is None  # next look only after the idle interval
    clock[0] += 601
    post(rt, NOW - 31 * DAY_S, phone="+79160000001")
    assert schedule.tick() is not None and count(rt, t.inbound_events, NOW - 30 * DAY_S) == 0
    keep_all = rt.config.hub.model_copy(update={"raw_retention_days": 0})
    assert RetentionSchedule(rt.db, keep_all, clock=lambda: NOW).tick() is None
