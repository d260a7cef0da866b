"""Reading leads back as the contract's JSON, with their deliveries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from hub.models import Delivery, Lead
from hub.runtime import Runtime
from hub.store import deliveries as delivery_store
from hub.store import leads as lead_store


def lead_from_row(row: Any, deliveries: list[Any]) -> Lead:
    lead = Lead.model_validate(row.data)
    lead.status = row.status
    lead.deliveries = [
        Delivery(
            id=d.id, destination=d.destination, status=d.status, external_id=d.external_id,
            attempts=d.attempts, last_error=d.last_error,
        )
        for d in deliveries
    ]
    return lead


def load_leads(conn: Connection, rows: list[Any]) -> list[Lead]:
    ids = [r.id for r in rows]
    by_lead: dict[str, list[Any]] = {i: [] for i in ids}
    if ids:
        for d in delivery_store.of_leads(conn, ids):
            by_lead[d.lead_id].append(d)
    return [lead_from_row(r, by_lead[r.id]) for r in rows]


def get_leads(rt: Runtime, lead_ids: list[str]) -> dict[str, Lead]:
    """Leads by id, with their deliveries, in two queries."""
    if not lead_ids:
        return {}
    with rt.reader.connect() as conn:
        rows = lead_store.by_ids(conn, lead_ids)
        return {lead.id: lead for lead in load_leads(conn, rows)}


def get_lead(rt: Runtime, lead_id: str) -> Lead | None:
    with rt.reader.connect() as conn:
        row = lead_store.by_id(conn, lead_id)
        if row is None:
            return None
        return load_leads(conn, [row])[0]
