"""Reconciliation through the contract: ``POST /api/reconciliations`` run by a worker, the
flags' routes, ``leadhub reconcile JOB``, and the cron schedule (real processes; readers
of ``tests/erp_plugin.py``, registered by module path as a plugin under test would be)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from hub.reconcile.schedule import ReconcileSchedule, fire_id
from hub.runtime import build_runtime
from hub.store import reconcile as store
from hub.testing.cluster import HubCluster, wait_until
from tests import erp_plugin
from tests.conftest import ClusterFactory, ConfigWriter

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
    [hub]
    admin_token = "${LEADHUB_ADMIN_TOKEN}"
    [destinations.books]
    plugin = "erp"
    path = "books.jsonl"
    [reconcile.daily]
    crm = "books"
    accounting = "books"
    lookback_days = 30
    payment_grace_days = 3
"""


def books(data_dir: Path) -> None:
    now = datetime.now(UTC)

    def day(n: float) -> str:
        return (now - timedelta(days=n)).isoformat()

    rows = [
        {"type": "payment", "id": "p1", "client": "1c-1", "amount": 10_000, "date": day(5),
         "inn": "7707083893", "name": "ООО «Ромашка»"},
        {"type": "payment", "id": "p2", "client": "1c-2", "amount": 5_000, "date": day(4),
         "phones": ["8 (916) 111-22-38"], "name": "Иванов Иван"},
        {"type": "deal", "id": "d1", "client": "amo-1", "amount": 10_000, "date": day(6), "pipeline": 1,
         "name": "Ромашка Трейд", "inn": "7707 083 893"},
        {"type": "deal", "id": "d4", "client": "amo-4", "amount": 2_000, "date": day(10), "pipeline": 1,
         "name": "Won, unpaid"},
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "books.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def erp_cluster(make_cluster: ClusterFactory, write_config: ConfigWriter, database_url: str) -> HubCluster:
    cluster = make_cluster(write_config(CONFIG), database_url,
                           env={"LEADHUB_PLUGIN_MODULES": "erp=tests.erp_plugin"})
    books(cluster.data_dir)
    return cluster


def finished(client: httpx.Client, run_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        doc: dict[str, Any] = client.get(f"/api/reconciliations/{run_id}").json()
        return doc if doc["status"] in ("done", "failed") else None

    result: dict[str, Any] = wait_until(done, timeout=60, what=f"reconcile run {run_id}")
    return result


def test_the_api_queues_a_run_a_worker_runs_it_and_flags_keep_their_state(
    make_cluster: ClusterFactory, write_config: ConfigWriter, database_url: str,
) -> None:
    cluster = erp_cluster(make_cluster, write_config, database_url).start()
    client = httpx.Client(base_url=cluster.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {cluster.admin_token}"})
    answer = client.post("/api/reconciliations", json={"job": "daily"})
    assert answer.status_code == 202, answer.text
    run = finished(client, answer.json()["id"])
    assert run["status"] == "done" and run["progress"] == 1.0, run
    assert {f["kind"] for f in run["flags"]} == {"missing_in_crm", "missing_in_accounting"}
    missing = next(f for f in run["flags"] if f["kind"] == "missing_in_crm")
    assert missing["accounting"]["phones"] == ["8 (916) 111-22-38"] and missing["crm"] is None

    listed = client.get("/api/reconciliation-flags", params={"state": "open"}).json()["items"]
    assert {f["id"] for f in listed} == {f["id"] for f in run["flags"]}
    resolved = client.post(f"/api/reconciliation-flags/{missing['id']}/resolve").json()
    assert resolved["state"] == "resolved"

    again = finished(client, client.post("/api/reconciliations", json={"job": "daily"}).json()["id"])
    assert again["counts"]["new"] == 0
    assert next(f for f in again["flags"] if f["id"] == missing["id"])["state"] == "resolved"
    open_now = client.get("/api/reconciliation-flags", params={"state": "open"}).json()["items"]
    assert [f["kind"] for f in open_now] == ["missing_in_accounting"]

    unknown = client.post("/api/reconciliations", json={"job": "weekly"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_job"
    assert client.get("/api/reconciliations/nope").status_code == 404
    assert client.post("/api/reconciliation-flags/nope/resolve").status_code == 404


def test_leadhub_reconcile_runs_in_its_own_process(
    make_cluster: ClusterFactory, write_config: ConfigWriter, database_url: str,
) -> None:
    cluster = erp_cluster(make_cluster, write_config, database_url)
    cluster.start_redis()  # the readers share the account's rate limit there; no api, no worker

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub.cli", "reconcile", *args, "--config",
                               str(cluster.config)], env=cluster.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    out = cli("daily", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"]["status"] == "done"
    assert sorted(f["kind"] for f in doc["flags"]) == ["missing_in_accounting", "missing_in_crm"]
    rows = list(csv.DictReader(io.StringIO(cli("daily", "--format", "csv").stdout)))
    assert sorted(r["kind"] for r in rows) == ["missing_in_accounting", "missing_in_crm"]
    assert "Иванов Иван" in {r["accounting"] for r in rows}
    assert cli("weekly").returncode == 2


def test_the_schedule_queues_each_firing_once(write_config: ConfigWriter, tmp_path: Path, redis_url: str,
                                              database_url: str) -> None:
    scheduled = CONFIG.replace("lookback_days = 30", 'lookback_days = 30\n    schedule = "0 6 * * *"')
    path = write_config(scheduled)
    environ = {"LEADHUB_DATA_DIR": str(tmp_path / "data"), "LEADHUB_REDIS_URL": redis_url,
               "LEADHUB_DATABASE_URL": database_url, "LEADHUB_ADMIN_TOKEN": "adm"}
    rt = build_runtime(path, extra_plugins=[("erp", erp_plugin)], environ=environ)
    try:
        start = datetime(2026, 12, 1, 5, 0, tzinfo=UTC).timestamp()
        clock = [start]
        first, second = ReconcileSchedule(rt, lambda: clock[0]), ReconcileSchedule(rt, lambda: clock[0])
        assert first.tick() == [] and second.tick() == []  # 05:00, nothing due
        clock[0] = start + 3600 + 1  # 06:00:01: both schedulers see the firing; one queues it
        fired = first.tick() + second.tick()
        six = datetime(2026, 12, 1, 6, 0, tzinfo=UTC).timestamp()
        assert fired == [fire_id("daily", six)]
        clock[0] += 600
        assert first.tick() == []  # counted from the run it queued: next is tomorrow 06:00
        with rt.db.begin() as conn:
            run = store.claim_run(conn, fired[0], now=clock[0])
            assert run is not None and run["status"] == "running"
        clock[0] += store.STALL_S + 60  # its worker died: the sweep queues it again
        first.tick()
        with rt.reader.connect() as conn:
            assert store.get_run(conn, fired[0])["status"] == "queued"  # type: ignore[index]
    finally:
        rt.close()


def test_bad_schedules_and_time_zones_are_config_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "plugins.toml"
    cfg.write_text('[hub]\ntimezone = "Mars/Olympus"\n[destinations.books]\nplugin = "file"\n'
                   '[reconcile.daily]\ncrm = "books"\naccounting = "books"\nschedule = "every day"\n')
    out = subprocess.run([sys.executable, "-m", "hub.cli", "check", "--config", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "timezone: unknown time zone 'Mars/Olympus'" in out.stdout + out.stderr
    assert "schedule: not a cron expression" in out.stdout + out.stderr

