"""Running a ``[reconcile.NAME]`` job: read both sides, match, flag, store.

The same function serves the worker (a run queued by the API or the schedule), and
``leadhub reconcile JOB`` (its own process, against the same store). A run is a row in
``reconcile_runs`` before anything is read, so the API can show its progress, and a run
whose worker died is queued again by the sweep (``hub/store/reconcile.py``).

Reading is the slow part (a year of an account, page by page, within the connector's
rate limit); matching a million records a side takes seconds (``bench/reconcile.py``).
Progress: reading the books is 0–45 %, the CRM 45–90 %, matching and storing the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hub.config import ReconcileJob
from hub.reconcile.flags import FlagParams, flag_frame
from hub.reconcile.frames import records_frame
from hub.reconcile.fuzzy import FuzzyParams
from hub.reconcile.match import MatchParams, match
from hub.reconcile.report import flag_records
from hub.runtime import Runtime
from hub.store import reconcile as store

log = logging.getLogger("leadhub.reconcile")

Progress = Callable[[float, str], None]
R = TypeVar("R")
#: The store hears about progress at most this often (a heartbeat, not a log).
_BEAT_S = 1.0


class ReconcileError(Exception):
    """A job that cannot run as configured (no reader for its connector, unknown job)."""


class RunTaken(ReconcileError):
    """The run is not queued (any more): another worker took it, or it has ended."""


def _no_progress(_share: float, _what: str) -> None:
    return None


def job_of(rt: Runtime, name: str) -> ReconcileJob:
    job = rt.config.reconcile.get(name)
    if job is None:
        known = ", ".join(sorted(rt.config.reconcile)) or "none"
        raise ReconcileError(f"no reconcile job named {name!r} (configured: {known})")
    return job


def queue_run(rt: Runtime, name: str) -> str:
    """A queued run of the job (the API and the schedule); a worker takes it."""
    job_of(rt, name)
    with rt.db.begin() as conn:
        return store.create_run(conn, name)


def run_job(rt: Runtime, name: str, *, run_id: str | None = None, now: datetime | None = None,
            progress: Progress = _no_progress) -> dict[str, Any]:
    """Run the job (a new run, or the queued ``run_id``) to the end; the run and the flags
    it saw, as the contract's JSON. A failure is recorded on the run and raised."""
    with rt.db.begin() as conn:
        if run_id is None:
            job_of(rt, name)
            run_id = store.create_run(conn, name)
        claimed = store.claim_run(conn, run_id)
    if claimed is None:
        raise RunTaken(f"run {run_id} is not queued (already taken by another worker?)")
    try:
        # a run queued before its job was removed from plugins.toml fails here, recorded
        counts = _run(rt, name, job_of(rt, name), run_id, now or datetime.now(UTC), progress)
    except Exception as exc:
        with rt.db.begin() as conn:
            store.finish_run(conn, run_id, {}, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    with rt.db.begin() as conn:
        store.finish_run(conn, run_id, counts)
    doc = result(rt, run_id)
    if job_of(rt, name).notify:
        sent = notify(rt, name, doc)
        with rt.db.begin() as conn:
            store.merge_counts(conn, run_id, sent)
        doc = result(rt, run_id)
    return doc


def notify(rt: Runtime, name: str, doc: dict[str, Any]) -> dict[str, int]:
    """Send the run and the flags it raised for the first time to the job's ``notify``
    destinations (``Capability.REPORTS``: a webhook gets ``{"type": "reconciliation",
    "run", "flags"}``). A destination that fails is logged and counted, never fails the
    run: the flags are stored, and the admin sees them in the API either way."""
    from hub.capabilities import Capability

    run = doc["run"]
    report = {"type": "reconciliation", "run": run,
              "flags": [f for f in doc["flags"] if f["first_seen"] == f["last_seen"]]}
    sent = {"notified": 0, "notify_failed": 0}
    for target in job_of(rt, name).notify:
        dest = rt.destination(target)
        try:
            if dest is None or Capability.REPORTS not in dest.capabilities:
                raise ReconcileError(f"{target!r} cannot receive reports")
            dest.send_report(report, run["id"])
            sent["notified"] += 1
        except Exception as exc:
            sent["notify_failed"] += 1
            log.warning("reconcile report to %s failed: %s", target, exc,
                        extra={"job": name, "run": run["id"]})
    return sent


def result(rt: Runtime, run_id: str) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        run = store.get_run(conn, run_id)
        flags = store.list_flags(conn, run_id=run_id, limit=1_000_000)
    if run is None:
        raise ReconcileError(f"no run {run_id}")
    return {"run": store.run_json(run), "flags": flags}


def _run(rt: Runtime, name: str, job: ReconcileJob, run_id: str, now: datetime,
         progress: Progress) -> dict[str, int]:
    accounting = rt.accounting_reader(job.accounting)
    if accounting is None:
        raise ReconcileError(f"[reconcile.{name}] accounting: {job.accounting!r} has no accounting reader")
    crm = rt.crm_reader(job.crm)
    if crm is None:
        raise ReconcileError(f"[reconcile.{name}] crm: {job.crm!r} has no CRM reader")
    since, until = now - timedelta(days=job.lookback_days), now
    beat = _Heartbeat(rt, run_id, progress)

    beat(0.0, "reading payments")
    paid = records_frame(beat.pages(accounting.payments(since, until), 0.0, 0.45, "payments"))
    beat(0.45, "reading won deals")
    won = records_frame(beat.pages(crm.won_deals(since, until, job.pipelines), 0.45, 0.9, "won deals"))
    beat(0.9, "matching", force=True)
    matching = match(paid, won, MatchParams(
        default_region=rt.config.hub.default_region,
        fuzzy=FuzzyParams(amount_tolerance=job.amount_tolerance)))
    params = FlagParams(amount_tolerance=job.amount_tolerance, payment_grace_days=job.payment_grace_days)
    found = flag_records(flag_frame(matching, params, now), paid, won, params)
    beat(0.95, "storing flags", force=True)
    with rt.db.begin() as conn:
        stored = store.record_flags(conn, name, run_id, found)
    counts: dict[str, int] = {"payments": paid.height, "won_deals": won.height,
                              "parties": matching.parties.height, "flags": len(found),
                              "new": stored["new"]}
    for flag in found:
        counts[flag.kind] = counts.get(flag.kind, 0) + 1
    log.info("reconcile run finished", extra={"job": name, "run": run_id, "counts": counts})
    return counts


class _Heartbeat:
    """Progress for the caller on every page, and for the store at most every ``_BEAT_S``."""

    def __init__(self, rt: Runtime, run_id: str, progress: Progress) -> None:
        self.rt, self.run_id, self.progress = rt, run_id, progress
        self.last = 0.0

    def __call__(self, share: float, what: str, force: bool = False) -> None:
        self.progress(share, what)
        if force or time.monotonic() - self.last >= _BEAT_S:
            self.last = time.monotonic()
            with self.rt.db.begin() as conn:
                store.set_progress(conn, self.run_id, share)

    def pages(self, pages: Iterable[Sequence[R]], start: float, end: float,
              what: str) -> Iterator[Sequence[R]]:
        """The pages, reporting each: the total is unknown, so the share creeps towards
        ``end`` (half the remaining way per ten pages) instead of claiming to know it."""
        records = 0
        for n, page in enumerate(pages, 1):
            records += len(page)
            self(start + (end - start) * (1 - 0.5 ** (n / 10)), f"{what}: {records:,}")
            yield page
