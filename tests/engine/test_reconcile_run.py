"""A reconcile job run against the store: runs, flags and their state across runs.

The readers are those of ``tests/erp_plugin.py`` (a plugin keeping a small ERP in a file
under ``data_dir``): the run reads both sides through the plugin's readers, as it will
read 1C and amoCRM, and stores what it finds, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hub.reconcile.run import ReconcileError, RunTaken, queue_run, run_job
from hub.runtime import Runtime, build_runtime
from hub.store import reconcile as store
from tests import erp_plugin
from tests.conftest import ConfigWriter

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CONFIG = """
    [hub]
    data_dir = "{data_dir}"
    database_url = "{database_url}"
    redis_url = "{redis_url}"
    [destinations.books]
    plugin = "erp"
    path = "books.jsonl"
    page_size = 2
    [reconcile.daily]
    crm = "books"
    accounting = "books"
    lookback_days = 30
    payment_grace_days = 3
"""


def day(n: float) -> str:
    return (NOW - timedelta(days=n)).isoformat()


BOOKS = [
    {"type": "payment", "id": "p1", "client": "1c-1", "amount": 10_000, "date": day(5), "inn": "7707083893"},
    {"type": "payment", "id": "p2", "client": "1c-2", "amount": 5_000, "date": day(4)},  # not in the CRM
    {"type": "payment", "id": "p3", "client": "1c-3", "amount": 8_000, "date": day(3), "inn": "500100732259"},
    {"type": "payment", "id": "old", "client": "1c-9", "amount": 1, "date": day(90)},  # outside lookback
    {"type": "deal", "id": "d1", "client": "amo-1", "amount": 10_000, "date": day(6), "pipeline": 1,
     "name": "Ромашка", "phones": []},
    {"type": "deal", "id": "d3", "client": "amo-3", "amount": 10_000, "date": day(3), "pipeline": 1,
     "name": "ИП Орлов"},
    {"type": "deal", "id": "d4", "client": "amo-4", "amount": 2_000, "date": day(10), "pipeline": 1,
     "name": "Won, unpaid"},
]


@pytest.fixture
def rt(write_config: ConfigWriter, tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Runtime]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # The CRM knows company 1c-1 by its INN only; 1c-3 pays 8,000 for a 10,000 deal.
    rows = [dict(r) for r in BOOKS]
    rows[4]["inn"] = "7707 083 893"
    rows[5]["inn"] = "500100732259"
    (data_dir / "books.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = write_config(CONFIG.format(data_dir=data_dir, database_url=database_url, redis_url=redis_url))
    runtime = build_runtime(path, extra_plugins=[("erp", erp_plugin)])
    yield runtime
    runtime.close()


def kinds(result: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(f["kind"], ",".join((f["accounting"] or {}).get("client_keys", [])),
             ",".join((f["crm"] or {}).get("client_keys", []))) for f in result["flags"]}


def test_a_run_flags_what_differs_and_records_its_counts(rt: Runtime) -> None:
    seen: list[float] = []
    result = run_job(rt, "daily", now=NOW, progress=lambda share, _what: seen.append(share))
    assert kinds(result) == {("missing_in_crm", "1c-2", ""), ("amount_mismatch", "1c-3", "amo-3"),
                             ("missing_in_accounting", "", "amo-4")}
    run = result["run"]
    assert run["status"] == "done" and run["progress"] == 1.0
    assert run["counts"]["payments"] == 3 and run["counts"]["won_deals"] == 3  # "old" is outside
    assert run["counts"]["new"] == 3 and run["counts"]["amount_mismatch"] == 1
    assert seen == sorted(seen) and seen[-1] >= 0.95
    mismatch = next(f for f in result["flags"] if f["kind"] == "amount_mismatch")
    assert mismatch["evidence"]["accounting_total"] == 8000 and mismatch["evidence"]["crm_total"] == 10000
    assert mismatch["accounting"]["external_ids"] == ["p3"] and mismatch["crm"]["external_ids"] == ["d3"]
    assert mismatch["state"] == "open"


def test_a_second_run_raises_nothing_new_and_a_resolved_flag_stays_resolved(rt: Runtime) -> None:
    first = run_job(rt, "daily", now=NOW)
    missing = next(f for f in first["flags"] if f["kind"] == "missing_in_crm")
    with rt.db.begin() as conn:
        assert store.resolve_flag(conn, missing["id"])["state"] == "resolved"  # type: ignore[index]
    second = run_job(rt, "daily", now=NOW + timedelta(hours=1))
    assert second["run"]["counts"]["new"] == 0
    assert {f["id"] for f in second["flags"]} == {f["id"] for f in first["flags"]}
    again = next(f for f in second["flags"] if f["id"] == missing["id"])
    assert again["state"] == "resolved" and again["last_seen"] > missing["last_seen"]
    with rt.reader.connect() as conn:
        assert len(store.list_flags(conn, job="daily")) == 3
        assert [f["id"] for f in store.list_flags(conn, state="open", kind="missing_in_crm")] == []


def test_a_queued_run_is_taken_once(rt: Runtime) -> None:
    run_id = queue_run(rt, "daily")
    run_job(rt, "daily", run_id=run_id, now=NOW)
    with pytest.raises(RunTaken, match="not queued"):
        run_job(rt, "daily", run_id=run_id, now=NOW)


def test_a_failing_reader_fails_the_run_with_its_reason(rt: Runtime, tmp_path: Path) -> None:
    broken = {"type": "payment", "id": "", "client": "x", "amount": 1, "date": day(1)}
    (tmp_path / "data" / "books.jsonl").write_text(json.dumps(broken) + "\n")
    run_id = queue_run(rt, "daily")
    with pytest.raises(ValueError, match="external_id is empty"):
        run_job(rt, "daily", run_id=run_id, now=NOW)
    with rt.reader.connect() as conn:
        run = store.get_run(conn, run_id)
    assert run is not None and run["status"] == "failed" and "external_id is empty" in run["error"]


def test_unknown_jobs_and_connectors_without_readers_are_refused(rt: Runtime) -> None:
    with pytest.raises(ReconcileError, match="no reconcile job named 'weekly'"):
        run_job(rt, "weekly", now=NOW)


def test_the_report_goes_to_notify_destinations_signed_with_new_flags_only(
    write_config: ConfigWriter, tmp_path: Path, database_url: str, redis_url: str,
) -> None:
    from hub.sdk import verify_standard_webhook
    from tests.plugins.test_webhook_destination import Answer, Receiver

    with Receiver(lambda _body, _headers: Answer(body={})) as receiver:
        secret = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="
        config = CONFIG + f"""
    notify = ["boss"]
    [destinations.boss]
    plugin = "webhook"
    url = "{receiver.url}"
    signing_secret = "{secret}"
"""
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        (data_dir / "books.jsonl").write_text("".join(json.dumps(r) + "\n" for r in BOOKS[:3]))
        path = write_config(config.format(data_dir=data_dir, database_url=database_url,
                                          redis_url=redis_url))
        rt = build_runtime(path, extra_plugins=[("erp", erp_plugin)])
        try:
            first = run_job(rt, "daily", now=NOW)
            second = run_job(rt, "daily", now=NOW + timedelta(hours=1))
        finally:
            rt.close()
    assert first["run"]["counts"]["notified"] == 1 and second["run"]["counts"]["notified"] == 1
    (h1, r1, _), (_, r2, _) = receiver.received
    assert r1["type"] == "reconciliation" and r1["run"]["id"] == first["run"]["id"]
    assert sorted(f["kind"] for f in r1["flags"]) == ["missing_in_crm", "missing_in_crm", "missing_in_crm"]
    assert r2["flags"] == []  # nothing new the second time
    assert h1["webhook-id"] == first["run"]["id"]
    verify_standard_webhook(secret, h1, h1["x-raw-body"].encode())  # raises when the signature is wrong


def test_notify_must_name_a_destination_that_takes_reports(write_config: ConfigWriter,
                                                           tmp_path: Path) -> None:
    from hub.config import load_config
    from hub.errors import ConfigError
    from hub.plugins import discover, make_plugin_manager

    path = write_config(CONFIG.format(data_dir=tmp_path, database_url="", redis_url="")
                        + '    notify = ["books", "nobody"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, discover(make_plugin_manager([("erp", erp_plugin)])))
    text = str(caught.value)
    assert "notify: 'books' (plugin 'erp') cannot receive reports" in text
    assert "notify: unknown destination 'nobody'" in text
