"""The retry schedule as the engine runs it, with a controlled clock: the intervals, the
jitter bounds, the 24-hour horizon, the move to ``dead``, and replay of a dead delivery
that creates no duplicate in the CRM. Real store, real Redis, the fake amoCRM on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.engine.backoff import BASE_S, CAP_S, FACTOR, JITTER
from hub.engine.drain import drain
from hub.engine.process import process_received
from hub.engine.replay import replay_lead
from hub.runtime import Runtime, build_runtime
from hub.store import tables as t
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import ConfigWriter
from tests.engine.test_engine import form, ingest

TOKEN = "long-lived-token"
COMPLEX = "/api/v4/leads/complex"


@pytest.fixture
def rt(amo_runtime: Runtime) -> Runtime:
    return amo_runtime


def delivery(rt: Runtime) -> Any:
    with rt.reader.connect() as conn:
        return conn.execute(select(t.deliveries)).one()


def test_retries_back_off_for_a_day_then_dead_then_replay_without_duplicate(
    rt: Runtime, amo: FakeAmoCRM
) -> None:
    res = ingest(rt, form("name=Ivan&phone=%2B79161234567"))
    process_received(rt)
    t0 = delivery(rt).next_attempt_at

    # attempt 1: amoCRM creates the deal, then answers 500 (the effect happened, we can't know)
    amo.faults(1.0, ("500",), after_ratio=1.0, paths=(COMPLEX,))
    drain(rt, "amo_main", clock=lambda: t0)
    assert len(amo.leads) == 1
    d = delivery(rt)
    assert (d.status, d.attempts, d.uncertain) == ("failed", 1, True)

    # from now on every request fails before any effect: lookups too
    amo.faults(1.0, ("500", "503"), after_ratio=0.0)
    now, attempts, intervals = t0, 1, []
    clock = {"now": now}
    while d.status == "failed":
        base = min(CAP_S, max(BASE_S, (FACTOR - 1) * (now - d.first_attempt_at)))
        gap = d.next_attempt_at - now
        assert base * (1 - JITTER) - 1e-6 <= gap <= base * (1 + JITTER) + 1e-6, (attempts, gap)
        intervals.append(gap)
        now = clock["now"] = d.next_attempt_at
        drain(rt, "amo_main", clock=lambda: clock["now"])
        d = delivery(rt)
        attempts += 1
        assert d.attempts == attempts
    assert d.status == "dead"
    assert now - t0 >= 24 * 3600, "gave up before 24 hours"
    assert len(set(round(i, 3) for i in intervals)) == len(intervals), "no jitter"
    lead = rt.reader.connect().execute(select(t.leads.c.status)).scalar()
    assert lead == "failed"
    assert len(amo.leads) == 1

    # the CRM is back; replay finds the deal made by attempt 1 instead of creating another
    amo.no_faults()
    amo.clear_records()
    assert replay_lead(rt, res.lead_ids[0])
    drain(rt, "amo_main")
    d = delivery(rt)
    assert d.status == "delivered" and d.external_id == str(amo.leads[0]["id"])
    assert len(amo.leads) == 1
    assert [r.method for r in amo.requests] == ["GET"]  # a lookup, no create
    # replaying a delivered lead sends nothing
    assert replay_lead(rt, res.lead_ids[0])
    drain(rt, "amo_main")
    assert len(amo.requests) == 1


def test_permanent_error_is_dead_at_once(
    amo: FakeAmoCRM, write_config: ConfigWriter, tmp_path: Path, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A validation error (an unknown pipeline: 400) will never succeed: dead at once."""
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data2"))
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    runtime = build_runtime(write_config(f"""
        [hub]
        default_destinations = ["amo_main"]
        [sources.site_form]
        plugin = "webform"
        [destinations.amo_main]
        plugin = "amocrm"
        base_url = "{amo.base_url}"
        access_token = "{TOKEN}"
        pipeline_id = 999
    """))
    try:
        ingest(runtime, form("name=Ivan&phone=%2B79161234567"))
        process_received(runtime)
        drain(runtime, "amo_main")
        d = delivery(runtime)
        assert (d.status, d.attempts) == ("dead", 1), d.last_error
        assert "PermanentError" in d.last_error
        assert amo.leads == []
    finally:
        runtime.close()
