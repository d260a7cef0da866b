"""Threads: the events of one call or the messages of one chat, pointing at their lead
(``hub/engine/conversations.py`` holds the merge rules and decides; this module stores)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from hub.store import StoredRow
from hub.store import tables as t
from hub.store.dialect import for_update

th = t.threads


class ThreadRow(NamedTuple):
    source: str
    key: str  # "call:<id>", "chat:<id>"
    lead_id: str | None
    last_seen: float
    applied_seq: int | None
    pending: list[dict[str, Any]]  # call events held until the caller is known


def of_keys(conn: Connection, source: str, keys: list[str]) -> list[StoredRow]:
    """The threads of ``source`` with these keys (whole rows)."""
    return list(conn.execute(select(th).where(th.c.source == source, th.c.key.in_(keys))))


def insert_new(conn: Connection, rows: list[ThreadRow]) -> None:
    """One executemany."""
    if rows:
        conn.execute(insert(th), [r._asdict() for r in rows])


def update_existing(conn: Connection, rows: list[ThreadRow]) -> None:
    """One executemany, by (source, key)."""
    if not rows:
        return
    conn.execute(
        update(th)
        .where(th.c.source == bindparam("t_source"), th.c.key == bindparam("t_key"))
        .values(lead_id=bindparam("t_lead"), last_seen=bindparam("t_seen"),
                applied_seq=bindparam("t_seq"), pending=bindparam("t_pending")),
        [{"t_source": r.source, "t_key": r.key, "t_lead": r.lead_id, "t_seen": r.last_seen,
          "t_seq": r.applied_seq, "t_pending": r.pending} for r in rows],
    )


def every(conn: Connection) -> list[StoredRow]:
    """``(source, key, lead_id, pending)`` of every thread: a full scan (erasure)."""
    return list(conn.execute(select(th.c.source, th.c.key, th.c.lead_id, th.c.pending)))


def quiet_since(conn: Connection, before: float, limit: int) -> list[StoredRow]:
    """``(source, key)`` of up to ``limit`` threads last seen before ``before``; on
    PostgreSQL threads another transaction holds are skipped."""
    q = select(th.c.source, th.c.key).where(th.c.last_seen < before).limit(limit)
    return list(conn.execute(for_update(conn, q, skip_locked=True, of=th)))


def delete_keys(conn: Connection, keys: list[tuple[str, str]]) -> int:
    """Delete these ``(source, key)`` threads, a statement each; how many went."""
    return sum(conn.execute(delete(th).where(th.c.source == source, th.c.key == key)).rowcount
               for source, key in keys)
