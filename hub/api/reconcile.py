"""Reconciliation in the admin API (``CONTRACT.md`` "Reconciliation").

``POST /api/reconciliations`` queues a run and answers at once with its id; a worker runs it
(``hub.engine.jobs.reconcile_job``), and ``GET /api/reconciliations/{id}`` shows its status,
progress, counts and the flags it saw. Flags are listed and resolved on their own routes.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict

from hub.api.deps import Admin, State
from hub.api.errors import ApiError
from hub.store import reconcile as store

# hub.reconcile.run and .schedule are imported in the handlers: they bring in polars,
# rapidfuzz and croniter, which an api process that never reconciles need not load.

router = APIRouter(prefix="/api", tags=["reconciliation"], dependencies=[Admin])


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    job: str


@router.post("/reconciliations", status_code=202)
def start_run(body: RunRequest, state: State) -> dict[str, Any]:
    """Queue a run of a ``[reconcile.*]`` job; ``{"id"}`` of the run."""
    from hub.reconcile.run import ReconcileError, queue_run
    from hub.reconcile.schedule import wake_reconcile

    try:
        run_id = queue_run(state.rt, body.job)
    except ReconcileError as exc:
        raise ApiError(404, "unknown_job", str(exc), "job") from None
    wake_reconcile(state.rt)  # lost with Redis down: the scheduler's next tick wakes it
    return {"id": run_id, "job": body.job, "status": "queued"}


@router.get("/reconciliations/{run_id}")
def get_run(run_id: str, state: State) -> dict[str, Any]:
    """The run (status, progress 0..1, counts) with the flags it saw."""
    from hub.reconcile.run import ReconcileError, result

    try:
        doc = result(state.rt, run_id)
    except ReconcileError:
        raise ApiError(404, "not_found", f"no reconciliation run {run_id}") from None
    return {**doc["run"], "flags": doc["flags"]}


@router.get("/reconciliation-flags")
def list_flags(
    state: State,
    flag_state: Literal["open", "resolved"] | None = Query(None, alias="state"),
    kind: Literal["missing_in_crm", "missing_in_accounting", "amount_mismatch"] | None = None,
    job: str | None = None,
    limit: int = Query(500, ge=1, le=5000),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> dict[str, Any]:
    """Flags, oldest first; ``next_cursor`` is null on the last page."""
    with state.rt.reader.connect() as conn:
        items = store.list_flags(conn, job=job, state=flag_state, kind=kind, limit=limit + 1, cursor=cursor)
    page = items[:limit]
    return {"items": page, "next_cursor": page[-1]["id"] if len(items) > limit else None}


@router.post("/reconciliation-flags/{flag_id}/resolve")
def resolve_flag(flag_id: str, state: State) -> dict[str, Any]:
    """Mark a flag resolved: later runs update it but never reopen it."""
    with state.rt.db.begin() as conn:
        flag = store.resolve_flag(conn, flag_id)
    if flag is None:
        raise ApiError(404, "not_found", f"no reconciliation flag {flag_id}")
    return flag
