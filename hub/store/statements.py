"""Statements built once and executed many times with new parameters.

Building a SQLAlchemy statement (``select(...).where(...)``) and computing its cache key
costs 100-150 µs, about as much as running it on SQLite; the worker's hot queries
(claiming, routing, leasing and recording deliveries) run a few times per batch of leads,
so they are built once, with ``bindparam`` for every value (``expanding`` for id lists).
Where the dialects differ (``FOR UPDATE`` on PostgreSQL only), one is built per dialect.

``Many`` runs an INSERT or UPDATE once per row (executemany). SQLAlchemy processes every
row's parameters in Python (about 20 µs a row, four times SQLite's own work for it), and
the worker writes four or five rows per lead; on SQLite the statement is compiled once and
the rows go straight to the sqlite3 connection under the transaction, as the api's group
commit does with its inserts (``hub/store/accepted.py``). PostgreSQL keeps SQLAlchemy's
path (its driver's own batching).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import JSON, Connection
from sqlalchemy.sql.dml import Insert, Update

from hub.store import encode_json
from hub.store.dialect import is_sqlite

T = TypeVar("T")


class PerDialect(Generic[T]):
    """A statement built by ``build`` on first use with each dialect, then reused."""

    def __init__(self, build: Callable[[Connection], T]) -> None:
        self._build = build
        self._built: dict[str, T] = {}

    def __call__(self, conn: Connection) -> T:
        name = conn.dialect.name
        stmt = self._built.get(name)
        if stmt is None:
            stmt = self._built[name] = self._build(conn)
        return stmt


def sqlite_driver(conn: Connection) -> sqlite3.Connection | None:
    """The sqlite3 connection under ``conn`` (in its transaction), None elsewhere."""
    if not is_sqlite(conn):
        return None
    driver = conn.connection.driver_connection
    return driver if isinstance(driver, sqlite3.Connection) else None


_ROW = object()  # a slot filled from each row (its constants may be None)


class Many:
    """An INSERT or UPDATE for a list of rows, each a dict of its bind parameters (of an
    INSERT: its columns), all rows with the same keys (module doc). On SQLite the SQL is
    compiled once per set of keys; each row gives the values of its parameters in the
    compiled order, the statement's own constants (and the columns' scalar defaults) fill
    the rest, and JSON values are encoded as the engines' serializer does (``encode_json``:
    ``JsonText`` as it is)."""

    def __init__(self, stmt: Insert | Update) -> None:
        self.stmt = stmt
        #: keys of the rows -> SQL and, per position, (name, constant or _ROW, JSON-encode);
        #: None where SQLAlchemy has to run it (a column default computed per row)
        self._sqlite: dict[tuple[str, ...], tuple[str, list[tuple[str, Any, bool]]] | None] = {}

    def __call__(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        raw = sqlite_driver(conn)
        keys = tuple(rows[0])
        compiled = self._sqlite[keys] if keys in self._sqlite else self._compile(conn, keys)
        if raw is None or compiled is None:
            conn.execute(self.stmt, list(rows))
            return
        sql, slots = compiled
        params = []
        for row in rows:
            values = []
            for name, constant, encode in slots:
                value = row[name] if constant is _ROW else constant
                values.append(encode_json(value) if encode and value is not None else value)
            params.append(values)
        raw.executemany(sql, params)

    def _compile(self, conn: Connection, keys: tuple[str, ...],
                 ) -> tuple[str, list[tuple[str, Any, bool]]] | None:
        if not is_sqlite(conn) or any(
                c.default is not None and not c.default.is_scalar
                for c in self.stmt.table.c if c.key not in keys):
            self._sqlite[keys] = None
            return None
        compiled = self.stmt.compile(dialect=conn.dialect, column_keys=list(keys))
        slots = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            # a value written into the statement (``.values(status="delivered")``), or a
            # column's scalar default, is a constant; every other one comes from the rows
            value = _ROW if bind.required or name in keys else bind.effective_value
            slots.append((name, value, isinstance(bind.type, JSON)))
        self._sqlite[keys] = (compiled.string, slots)
        return self._sqlite[keys]
