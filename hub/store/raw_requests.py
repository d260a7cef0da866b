"""Raw requests (``inbound_events``): read back by erasure, purged by retention.

Ingest writes them (``hub/engine/ingest.py``); this module holds the other queries.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from hub.store import StoredRow
from hub.store import tables as t
from hub.store.dialect import for_update

ie = t.inbound_events


def oldest(conn: Connection, before: float, limit: int) -> list[StoredRow]:
    """Up to ``limit`` raw requests received before ``before``, oldest first, with ``id``,
    ``source``, ``received_at``, ``outcome`` and ``events``; on PostgreSQL rows another
    transaction holds are skipped (another scheduler's batch is not counted twice)."""
    q = (select(ie.c.id, ie.c.source, ie.c.received_at, ie.c.outcome, ie.c.events)
         .where(ie.c.received_at < before).order_by(ie.c.received_at).limit(limit))
    return list(conn.execute(for_update(conn, q, skip_locked=True, of=ie)))


def after(conn: Connection, last_id: str, limit: int) -> list[StoredRow]:
    """``(id, lead_id, body, query)`` of up to ``limit`` raw requests with ids above
    ``last_id``, in id order: a full scan, a chunk at a time."""
    return list(conn.execute(
        select(ie.c.id, ie.c.lead_id, ie.c.body, ie.c.query)
        .where(ie.c.id > last_id).order_by(ie.c.id).limit(limit)))


def present(conn: Connection, ids: Iterable[str]) -> set[str]:
    """Which of these raw requests still exist."""
    return set(conn.execute(select(ie.c.id).where(ie.c.id.in_(list(ids)))).scalars())


def delete_ids(conn: Connection, ids: list[str]) -> int:
    """Delete these raw requests (not their quarantine entries); how many went."""
    return conn.execute(delete(ie).where(ie.c.id.in_(ids))).rowcount
