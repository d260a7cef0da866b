"""Reconcile runs and flags in the store (tables ``reconcile_runs``, ``reconcile_flags``).

The contract's promise about flags lives here: a flag is identified by job, kind and both
sides' client keys; a later run that finds it again updates its records, evidence and
``last_seen`` — it never raises it a second time and never reopens one the admin resolved.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from hub.ids import new_id
from hub.store import tables as t

if TYPE_CHECKING:  # the report module brings in polars; storing flags does not need it
    from hub.reconcile.report import FlagRecord

#: Statements carry at most this many identities (SQLite's variable limit is 32766).
_CHUNK = 500


def identity(job: str, flag: FlagRecord) -> str:
    return hashlib.sha256("\0".join((job, flag.kind, flag.accounting_key, flag.crm_key)).encode()).hexdigest()


#: A running run that has not reported progress for this long lost its worker: it is
#: queued again by the sweep (``requeue_stalled``).
STALL_S = 600.0


def create_run(conn: Connection, job: str, now: float | None = None, run_id: str | None = None) -> str:
    """A queued run of ``job``; a worker claims it (``claim_run``). ``run_id`` names it
    (a cron firing's id, the same in every scheduler: a second insert fails)."""
    run_id, when = run_id or new_id(), now or time.time()
    conn.execute(insert(t.reconcile_runs).values(
        id=run_id, job=job, status="queued", progress=0.0, created_at=when, updated_at=when, counts={}))
    return run_id


def claim_run(conn: Connection, run_id: str | None = None, now: float | None = None) -> dict[str, Any] | None:
    """Mark a queued run (that one, else the oldest) running and return it; None when there
    is none. The compare-and-set on ``status`` lets only one worker win a run."""
    rr = t.reconcile_runs
    when = now or time.time()
    stmt = select(rr.c.id).where(rr.c.status == "queued").order_by(rr.c.created_at).limit(5)
    if run_id is not None:
        stmt = select(rr.c.id).where(rr.c.id == run_id, rr.c.status == "queued")
    for candidate in conn.execute(stmt).scalars().all():
        won = conn.execute(update(rr).where(rr.c.id == candidate, rr.c.status == "queued").values(
            status="running", started_at=when, updated_at=when, progress=0.0)).rowcount
        if won:
            return get_run(conn, candidate)
    return None


def set_progress(conn: Connection, run_id: str, progress: float, now: float | None = None) -> None:
    conn.execute(update(t.reconcile_runs).where(t.reconcile_runs.c.id == run_id).values(
        progress=max(0.0, min(1.0, progress)), updated_at=now or time.time()))


def finish_run(conn: Connection, run_id: str, counts: dict[str, int], error: str | None = None,
               now: float | None = None) -> None:
    when = now or time.time()
    rr = t.reconcile_runs
    conn.execute(update(rr).where(rr.c.id == run_id).values(
        status="failed" if error else "done", progress=rr.c.progress if error else 1.0,
        finished_at=when, updated_at=when, counts=counts, error=error))


def merge_counts(conn: Connection, run_id: str, extra: dict[str, int]) -> None:
    """Add counts to a finished run (what its report's delivery did)."""
    rr = t.reconcile_runs
    counts = conn.execute(select(rr.c.counts).where(rr.c.id == run_id)).scalar() or {}
    conn.execute(update(rr).where(rr.c.id == run_id).values(counts={**counts, **extra}))


def get_run(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(t.reconcile_runs).where(t.reconcile_runs.c.id == run_id)).mappings().first()
    return dict(row) if row else None


def next_queued(conn: Connection) -> tuple[str, str] | None:
    """(run id, job) of the oldest queued run."""
    rr = t.reconcile_runs
    row = conn.execute(select(rr.c.id, rr.c.job).where(rr.c.status == "queued")
                       .order_by(rr.c.created_at).limit(1)).first()
    return (row.id, row.job) if row else None


def last_run_created(conn: Connection, job: str) -> float | None:
    """When the newest run of ``job`` was created (the cron schedule counts from it)."""
    rr = t.reconcile_runs
    return conn.execute(select(rr.c.created_at).where(rr.c.job == job)
                        .order_by(rr.c.created_at.desc()).limit(1)).scalar()


def requeue_stalled(conn: Connection, now: float | None = None) -> list[str]:
    """Runs whose worker vanished (no heartbeat for ``STALL_S``) go back to the queue;
    returns the ids of every queued run, so the caller can wake a worker for them."""
    rr = t.reconcile_runs
    when = now or time.time()
    conn.execute(update(rr).where(rr.c.status == "running", rr.c.updated_at < when - STALL_S)
                 .values(status="queued", updated_at=when))
    return list(conn.execute(select(rr.c.id).where(rr.c.status == "queued")).scalars())


def run_json(run: dict[str, Any]) -> dict[str, Any]:
    """A run as the contract's JSON (without its flags)."""
    return {key: run[key] for key in ("id", "job", "status", "progress", "started_at", "finished_at",
                                      "counts", "error")}


def record_flags(conn: Connection, job: str, run_id: str, flags: Iterable[FlagRecord],
                 now: float | None = None) -> Counter[str]:
    """Store what a run found: new flags open; known ones updated in place (``new`` and
    ``seen`` counted, and ``new:<kind>`` for the report)."""
    when = now or time.time()
    fl = t.reconcile_flags
    counts: Counter[str] = Counter()
    pending = {identity(job, f): f for f in flags}
    items = list(pending.items())
    for start in range(0, len(items), _CHUNK):
        chunk = dict(items[start:start + _CHUNK])
        known = {row.identity: row.id for row in conn.execute(
            select(fl.c.identity, fl.c.id).where(fl.c.identity.in_(list(chunk))))}
        new_rows = []
        for key, flag in chunk.items():
            values = {"accounting": flag.accounting, "crm": flag.crm, "evidence": flag.evidence,
                      "last_seen": when, "run_id": run_id}
            if key in known:
                conn.execute(update(fl).where(fl.c.id == known[key]).values(**values))
                counts["seen"] += 1
            else:
                new_rows.append({"id": new_id(), "identity": key, "job": job, "kind": flag.kind,
                                 "accounting_key": flag.accounting_key, "crm_key": flag.crm_key,
                                 "state": "open", "first_seen": when, **values})
                counts["new"] += 1
                counts[f"new:{flag.kind}"] += 1
        if new_rows:
            conn.execute(insert(fl), new_rows)
    return counts


def flag_json(row: Any) -> dict[str, Any]:
    """A stored flag as the contract's JSON."""
    return {
        "id": row.id, "job": row.job, "kind": row.kind, "state": row.state,
        "accounting": row.accounting, "crm": row.crm, "evidence": row.evidence,
        "first_seen": row.first_seen, "last_seen": row.last_seen, "resolved_at": row.resolved_at,
    }


def list_flags(conn: Connection, *, job: str | None = None, state: str | None = None,
               kind: str | None = None, run_id: str | None = None, limit: int = 500,
               cursor: str | None = None) -> list[dict[str, Any]]:
    fl = t.reconcile_flags
    stmt = select(fl).order_by(fl.c.id).limit(limit)
    for column, value in ((fl.c.job, job), (fl.c.state, state), (fl.c.kind, kind), (fl.c.run_id, run_id)):
        if value is not None:
            stmt = stmt.where(column == value)
    if cursor:
        stmt = stmt.where(fl.c.id > cursor)
    return [flag_json(row) for row in conn.execute(stmt)]


def resolve_flag(conn: Connection, flag_id: str, now: float | None = None) -> dict[str, Any] | None:
    """Mark a flag resolved (idempotent); None when there is no such flag."""
    fl = t.reconcile_flags
    conn.execute(update(fl).where(fl.c.id == flag_id, fl.c.state == "open").values(
        state="resolved", resolved_at=now or time.time()))
    row = conn.execute(select(fl).where(fl.c.id == flag_id)).first()
    return flag_json(row) if row else None
