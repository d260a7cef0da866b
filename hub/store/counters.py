"""Shared persistent counters (the round-robin positions of assignment rules)."""

from __future__ import annotations

from sqlalchemy import Connection

from hub.store import tables as t
from hub.store.dialect import upsert


def advance(conn: Connection, name: str, step: int = 1) -> int:
    """Advance counter ``name`` atomically by ``step`` (created at 0) and return its new
    value: one upsert, so concurrent workers never take the same values."""
    stmt = upsert(conn, t.counters).values(name=name, value=step).on_conflict_do_update(
        index_elements=["name"], set_={"value": t.counters.c.value + step}
    ).returning(t.counters.c.value)
    return int(conn.execute(stmt).scalar_one())
