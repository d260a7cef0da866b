"""The admin API (``/api/...``, bearer token): leads, deliveries, quarantine, ledger,
plugins and connectors, as the contract lists them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import redis
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from hub.api.deps import Admin, State
from hub.api.errors import ApiError
from hub.engine.jobs import wake_drain, wake_process
from hub.engine.leads import load_leads
from hub.engine.ledger import ledger
from hub.engine.replay import replay_lead, retry_delivery
from hub.store import connector_state
from hub.store import deliveries as delivery_store
from hub.store import leads as lead_store
from hub.store import quarantine as quarantine_store

router = APIRouter(prefix="/api", tags=["admin"], dependencies=[Admin])


def parse_time(value: str | None, name: str) -> float | None:
    """ISO 8601 (``2026-11-23T18:30:00Z``) or Unix seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(422, "invalid_time", f"{name}: not an ISO 8601 time", name) from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


@router.get("/leads")
def list_leads(
    state: State,
    source: str | None = None,
    channel: str | None = None,
    status: str | None = None,
    since: str | None = None,
    q: str | None = Query(None, description="Substring of name, phone, email or message"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="next_cursor of the previous page"),
) -> dict[str, Any]:
    """Newest first; ``next_cursor`` is null on the last page."""
    keep = lead_store.LeadFilter(source=source, channel=channel, status=status,
                                 since=parse_time(since, "since"), before_id=cursor, text=q)
    with state.rt.reader.connect() as conn:
        rows = lead_store.newest(conn, keep, limit + 1)
        page = rows[:limit]
        items = load_leads(conn, page)
    return {
        "items": [lead.to_json_dict() for lead in items],
        "next_cursor": page[-1].id if len(rows) > limit else None,
    }


@router.get("/leads/{lead_id}")
def get_lead(lead_id: str, state: State) -> dict[str, Any]:
    with state.rt.reader.connect() as conn:
        row = lead_store.by_id(conn, lead_id)
        if row is None:
            raise ApiError(404, "not_found", f"no lead {lead_id}")
        return load_leads(conn, [row])[0].to_json_dict()


@router.post("/leads/{lead_id}/replay")
def replay(lead_id: str, state: State) -> dict[str, Any]:
    """Re-route and re-deliver (idempotent per destination: nothing delivered is sent again)."""
    if not replay_lead(state.rt, lead_id):
        raise ApiError(404, "not_found", f"no lead {lead_id}")
    return get_lead(lead_id, state)


@router.get("/deliveries")
def list_deliveries(
    state: State,
    status: Literal["pending", "delivered", "failed", "dead"] | None = None,
    destination: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> dict[str, Any]:
    with state.rt.reader.connect() as conn:
        rows = delivery_store.newest(conn, status, destination, cursor, limit + 1)
    page = rows[:limit]
    return {"items": [_delivery(r) for r in page], "next_cursor": page[-1].id if len(rows) > limit else None}


def _delivery(r: Any) -> dict[str, Any]:
    return {
        "id": r.id, "lead_id": r.lead_id, "destination": r.destination, "status": r.status,
        "external_id": r.external_id, "attempts": r.attempts, "last_error": r.last_error,
        "next_attempt_at": _iso(r.next_attempt_at) if r.status in ("pending", "failed") else None,
        "delivered_at": _iso(r.delivered_at),
    }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@router.post("/deliveries/{delivery_id}/retry")
def retry(delivery_id: str, state: State) -> dict[str, Any]:
    """Try a failed or dead delivery now; a delivered one is left alone (no duplicate)."""
    if not retry_delivery(state.rt, delivery_id):
        raise ApiError(404, "not_found", f"no delivery {delivery_id}")
    with state.rt.reader.connect() as conn:
        row = delivery_store.by_id(conn, delivery_id)
    if row is None:  # erased in between
        raise ApiError(404, "not_found", f"no delivery {delivery_id}")
    return _delivery(row)


@router.get("/quarantine")
def list_quarantine(
    state: State, state_filter: str = Query("open", alias="state"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    with state.rt.reader.connect() as conn:
        rows = quarantine_store.newest(conn, state_filter, limit)
    items = [
        {
            "id": r.id, "source": r.source, "reason": r.reason, "state": r.state,
            "lead_id": r.lead_id, "created_at": _iso(r.created_at),
            "request": {"method": r.method, "path": r.path, "headers": r.headers,
                        "body": r.body.decode("utf-8", "replace")},
        }
        for r in rows
    ]
    return {"items": items}


@router.post("/quarantine/{qid}/reprocess")
def reprocess(qid: str, state: State) -> dict[str, Any]:
    """Parse the stored raw request again with the plugin as it is now (after a fix)."""
    from hub.engine.reprocess import reprocess_quarantined

    result = reprocess_quarantined(state.rt, qid)
    if result is None:
        raise ApiError(404, "not_found", f"no quarantined request {qid}")
    if result.get("lead_ids"):
        wake_process(state.rt)
    return result


class ErasureRequest(BaseModel):
    """Who to erase: phones as written anywhere, e-mail addresses."""

    model_config = ConfigDict(extra="forbid")
    phones: list[str] = Field(default_factory=list, max_length=100)
    emails: list[str] = Field(default_factory=list, max_length=100)


@router.post("/erasures")
def create_erasure(body: ErasureRequest, state: State) -> dict[str, Any]:
    """Remove a person from the store (leads, raw requests, quarantine, dedup keys); the
    answer lists what was deleted and the destinations that hold copies (with external ids)."""
    from hub.engine.erasure import ErasureError, erase

    try:
        report = erase(state.rt, body.phones, body.emails)
    except ErasureError as exc:
        raise ApiError(422, "invalid_erasure", str(exc)) from None
    return report.to_json()


@router.get("/ledger")
def get_ledger(state: State, since: str | None = None, until: str | None = None) -> dict[str, Any]:
    doc = ledger(state.rt.reader, parse_time(since, "since"), parse_time(until, "until"))
    doc["since"], doc["until"] = since, until
    return doc


@router.get("/plugins")
def list_plugins(state: State) -> dict[str, Any]:
    return {
        "items": [
            {**p.listing(), "settings_schema": p.settings_schema()}
            for p in sorted(state.rt.plugins.values(), key=lambda p: p.id)
        ]
    }


@router.get("/connectors")
def list_connectors(state: State) -> dict[str, Any]:
    rt = state.rt
    overrides = rt.enabled_overrides()
    items = [
        {"name": name, "kind": kind, "plugin": spec.plugin.id, "enabled": rt.is_enabled(name, overrides)}
        for kind, table in (("source", rt.config.sources), ("destination", rt.config.destinations))
        for name, spec in table.items()
    ]
    return {"items": items}


def _switch(name: str, state: Any, enabled: bool) -> dict[str, Any]:
    rt = state.rt
    if name not in rt.config.sources and name not in rt.config.destinations:
        raise ApiError(404, "not_found", f"no connector {name!r}")
    now = time.time()
    with rt.db.begin() as conn:
        connector_state.set_enabled(conn, name, enabled, now)
    state.forget_overrides()
    try:
        rt.note_switch()  # drains in every process read the switches again
    except redis.RedisError as exc:  # the store has it; a drain would go on with the old one
        raise ApiError(503, "unavailable",
                       f"switched, but the workers could not be told ({type(exc).__name__}); "
                       "switch again once Redis is back") from exc
    if enabled and name in rt.config.destinations:
        wake_drain(rt, name)
    return {"name": name, "enabled": enabled}


@router.post("/connectors/{name}/enable")
def enable_connector(name: str, state: State) -> dict[str, Any]:
    return _switch(name, state, True)


@router.post("/connectors/{name}/disable")
def disable_connector(name: str, state: State) -> dict[str, Any]:
    """A disabled destination holds its deliveries as pending; a disabled source answers 404."""
    return _switch(name, state, False)
