"""Where SQLite and PostgreSQL differ, in one place: row locks, upserts, JSON as text.

Store modules build one statement for both dialects and pass it through these helpers;
nothing else in the hub asks which database it runs on.

* Row locks: PostgreSQL takes ``FOR UPDATE`` (``SKIP LOCKED`` where another worker's
  batch is to be passed over, not waited for). SQLite has no row locks and needs none:
  every write transaction begins ``IMMEDIATE`` (``hub/store/db.py``), so writers are
  already serialized when the rows are read.
* Upserts: both dialects speak ``INSERT ... ON CONFLICT DO UPDATE``, through their own
  ``insert`` construct.
* JSON columns read as text (a substring search over a lead's JSON): the same ``CAST``
  on both, named here so that a third dialect has one place to change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, String, Table, cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, Select


def is_postgresql(bind: Connection | Engine) -> bool:
    return bind.dialect.name == "postgresql"


def is_sqlite(bind: Connection | Engine) -> bool:
    return bind.dialect.name == "sqlite"


def for_update(conn: Connection, stmt: Select[Any], *, skip_locked: bool = False,
               of: Table | None = None) -> Select[Any]:
    """``stmt`` locking the rows it reads until the transaction ends (PostgreSQL); with
    ``skip_locked``, rows another transaction holds are left out instead of waited for.
    Unchanged on SQLite (its writers are serialized, module doc)."""
    if not is_postgresql(conn):
        return stmt
    return stmt.with_for_update(skip_locked=skip_locked, of=of)


def upsert(conn: Connection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An ``INSERT`` into ``table`` that takes ``.on_conflict_do_update(...)``."""
    return postgresql.insert(table) if is_postgresql(conn) else sqlite.insert(table)


def json_as_text(column: ColumnElement[Any]) -> ColumnElement[str]:
    """A JSON column as its text, for ``LIKE`` searches."""
    return cast(column, String)
