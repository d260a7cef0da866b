"""The rows an accepted request writes (``hub/engine/ingest.py`` decides them): its raw
request (``inbound_events``), its leads, its event keys and its quarantine entry, one
statement per table for a whole group commit; and what reprocessing a quarantined
request reads and rewrites.

On SQLite the inserts go straight to the driver: the rows are the engine's own (same
keys, every NOT NULL column given) and the only conversion SQLAlchemy made was JSON,
done here the same way. Per group commit, SQLAlchemy's statement execution (parameter
processing for every row, the execution context) cost about as much as SQLite's own
work, and the group commit is the one serial step of the api.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Connection, Table, bindparam, exists, insert, or_, select, update

from hub.store import StoredRow, encode_json
from hub.store import tables as t
from hub.store.statements import sqlite_driver

ek, ie, q, ld = t.event_keys, t.inbound_events, t.quarantine, t.leads

_IN_CHUNK = 500  # event keys per SELECT ... IN (...): far below every driver's bind limit


def seen_keys(conn: Connection, source: str, keys: list[str]) -> Iterator[tuple[str, str | None, float]]:
    """``(event_key, lead_id, seen_at)`` of those of ``keys`` already recorded for ``source``."""
    raw = sqlite_driver(conn)
    ordered = sorted(keys)
    for i in range(0, len(ordered), _IN_CHUNK):
        part = ordered[i:i + _IN_CHUNK]
        rows: Any
        if raw is not None:
            rows = raw.execute(
                "SELECT event_key, lead_id, seen_at FROM event_keys WHERE source = ? AND "
                f"event_key IN ({', '.join('?' * len(part))})", (source, *part))
        else:
            rows = conn.execute(select(ek.c.event_key, ek.c.lead_id, ek.c.seen_at)
                                .where(ek.c.source == source, ek.c.event_key.in_(part)))
        yield from rows


def keys_without_live_lead(conn: Connection, source: str, keys: list[str],
                           raw_id: str) -> list[str]:
    """Those of ``keys`` that the raw request ``raw_id`` recorded itself and that point at
    no lead still in the store (none, or one the worker deleted into quarantine)."""
    return list(conn.execute(select(ek.c.event_key).where(
        ek.c.source == source, ek.c.event_key.in_(sorted(keys)), ek.c.inbound_id == raw_id,
        or_(ek.c.lead_id.is_(None), ~exists().where(ld.c.id == ek.c.lead_id)),
    )).scalars())


def insert_leads(conn: Connection, rows: list[dict[str, Any]]) -> None:
    _insert(conn, ld, rows)


def insert_keys(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """``event_keys`` rows: ``source``, ``event_key``, ``lead_id``, ``inbound_id``, ``seen_at``."""
    _insert(conn, ek, rows)


def update_keys(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Rows shaped as for ``insert_keys``, of keys already recorded: they now point at
    ``lead_id``, ``inbound_id`` and ``seen_at`` (one executemany)."""
    if not rows:
        return
    conn.execute(
        update(ek)
        .where(ek.c.source == bindparam("k_source"), ek.c.event_key == bindparam("k_key"))
        .values(lead_id=bindparam("k_lead"), inbound_id=bindparam("k_inbound"),
                seen_at=bindparam("k_seen")),
        [{"k_source": r["source"], "k_key": r["event_key"], "k_lead": r["lead_id"],
          "k_inbound": r["inbound_id"], "k_seen": r["seen_at"]} for r in rows],
    )


def insert_quarantine(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(q), rows)


def insert_requests(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """``inbound_events`` rows, every column given."""
    _insert(conn, ie, rows)


def quarantined_request(conn: Connection, entry_id: str) -> StoredRow | None:
    """The quarantine entry with its raw request's columns (``method``, ``path``, ``query``,
    ``headers``, ``body``, ``received_at``, ``event_key``); where both tables have a column
    (``id``, ``source``, ``lead_id``) the entry's comes first under that name."""
    return conn.execute(select(q, ie).join(ie, ie.c.id == q.c.inbound_id)
                        .where(q.c.id == entry_id)).first()


def close_entry(conn: Connection, entry_id: str, raw_id: str, counted: dict[str, Any],
                reason: str | None, now: float) -> bool:
    """What reprocessing made of a quarantined request: its raw request takes ``counted``
    (``outcome``, ``lead_id``, ``events``, ``event_key``, ``note``); its entry stays open
    with ``reason``, or (``reason`` None) is closed as ``reprocessed`` with the request's
    lead. False, and nothing written to the entry, when it was not open any more."""
    conn.execute(update(ie).where(ie.c.id == raw_id).values(counted))
    values: dict[str, Any] = (
        {"reason": reason, "updated_at": now} if reason is not None else
        {"state": "reprocessed", "lead_id": counted["lead_id"], "updated_at": now}
    )
    return bool(conn.execute(update(q).where(q.c.id == entry_id, q.c.state == "open")
                             .values(values)).rowcount == 1)


@lru_cache(maxsize=64)
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})")


def _insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """``conn.execute(insert(table), rows)``; on SQLite straight to the driver (module doc)."""
    if not rows:
        return
    raw = sqlite_driver(conn)
    if raw is None:  # SQLAlchemy encodes JSON columns (JsonText as it is: encode_json)
        conn.execute(insert(table), rows)
        return
    columns = tuple(rows[0])
    at = [columns.index(c) for c in _json_columns(table, columns)]
    values_of = itemgetter(*columns)  # C-level; one column would give a value, not a tuple
    single = len(columns) == 1
    params = []
    for row in rows:
        values = [values_of(row)] if single else list(values_of(row))
        for i in at:
            values[i] = encode_json(values[i])
        params.append(values)
    raw.executemany(_insert_sql(table.name, columns), params)


@lru_cache(maxsize=64)
def _json_columns(table: Table, columns: tuple[str, ...]) -> tuple[str, ...]:
    """Those of ``columns`` that hold JSON (asked once per table and column set)."""
    return tuple(c for c in columns if isinstance(table.c[c].type, JSON))
