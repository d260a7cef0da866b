"""A short chaos run (bench/chaos.py runs the full one): workers SIGKILLed every few
seconds, the api killed and restarted, Redis restarted, 20% CRM faults. Every accepted
lead ends up in the fake amoCRM exactly once, nothing dead, the ledger balanced."""

from __future__ import annotations

from pathlib import Path

from hub.testing.chaos import run_chaos


def test_short_chaos_run_loses_nothing_and_duplicates_nothing(tmp_path: Path, database_url: str) -> None:
    report = run_chaos(tmp_path, leads=400, rate=40, workers=2, kill_every_s=2.5,
                       database_url=database_url, drain_timeout_s=240, min_worker_kills=3,
                       log=lambda *_: None)
    assert report.worker_kills >= 3 and report.api_restarts == 1 and report.redis_restarts == 1
    assert report.crm_faults > 0
    assert report.accepted == report.posted
    assert report.missing == 0, report
    assert report.duplicated == 0, report
    assert report.dead == 0, report
    assert report.ledger_balanced, report
