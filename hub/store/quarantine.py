"""Quarantine: raw requests that made no lead the hub could trust, waiting for a fix.

Listed by the admin API, filled by the worker when a lead turns out not to be one,
emptied by retention and erasure. Ingest and reprocessing write their own rows
(``hub/engine/ingest.py``, ``hub/engine/reprocess.py``).
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, exists, insert, select, update

from hub.store import StoredRow
from hub.store import tables as t

q, ie = t.quarantine, t.inbound_events


def newest(conn: Connection, state: str, limit: int) -> list[StoredRow]:
    """Up to ``limit`` entries in ``state`` ("all": any), newest first, each with its raw
    request's ``method``, ``path``, ``headers`` and ``body``."""
    return list(conn.execute(
        select(q, ie.c.method, ie.c.path, ie.c.headers, ie.c.body)
        .join(ie, ie.c.id == q.c.inbound_id)
        .where(q.c.state == state if state != "all" else q.c.state.is_not(None))
        .order_by(q.c.id.desc()).limit(limit)
    ))


def quarantine_lead(conn: Connection, entry_id: str, lead: StoredRow, reason: str, now: float) -> None:
    """The event behind ``lead`` (a ``leads`` row) is not a lead after all: the lead goes,
    its raw request counts as quarantined (the ledger follows) and a quarantine entry
    ``entry_id`` holds it."""
    conn.execute(t.leads.delete().where(t.leads.c.id == lead.id))
    conn.execute(update(ie).where(ie.c.id == lead.inbound_id)
                 .values(outcome="quarantined", lead_id=None, note=reason))
    conn.execute(insert(q).values(
        id=entry_id, inbound_id=lead.inbound_id or "", source=lead.source, reason=reason,
        state="open", created_at=now, updated_at=now,
    ))


def delete_of_requests(conn: Connection, raw_ids: list[str]) -> int:
    """Delete the entries of these raw requests; how many went."""
    return conn.execute(delete(q).where(q.c.inbound_id.in_(raw_ids))).rowcount


def delete_orphans_of_leads(conn: Connection, lead_ids: list[str]) -> None:
    """Delete the entries of these leads whose raw request is gone."""
    conn.execute(delete(q).where(q.c.lead_id.in_(lead_ids), ~exists().where(
        ie.c.id == q.c.inbound_id)))
