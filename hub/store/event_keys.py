"""Provider event ids already seen (``event_keys``): purged by retention, erased with a
person. Ingest reads and writes them (``hub/engine/ingest.py``)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, or_, select

from hub.store import StoredRow
from hub.store import tables as t
from hub.store.dialect import for_update

ek = t.event_keys


def oldest(conn: Connection, before: float, limit: int) -> list[StoredRow]:
    """``(source, event_key)`` of up to ``limit`` keys first seen before ``before``; on
    PostgreSQL keys another transaction holds are skipped."""
    q = select(ek.c.source, ek.c.event_key).where(ek.c.seen_at < before).limit(limit)
    return list(conn.execute(for_update(conn, q, skip_locked=True, of=ek)))


def delete_keys(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Delete these ``(source, event_key)`` pairs, a statement each (by primary key)."""
    for source, key in keys:
        conn.execute(delete(ek).where(ek.c.source == source, ek.c.event_key == key))


def delete_of(conn: Connection, lead_ids: list[str], raw_ids: list[str]) -> int:
    """Delete the keys that made these leads or belong to these raw requests; how many."""
    return conn.execute(delete(ek).where(
        or_(ek.c.lead_id.in_(lead_ids), ek.c.inbound_id.in_(raw_ids)))).rowcount
