"""Statements built once and executed many times with new parameters.

Building a SQLAlchemy statement (``select(...).where(...)``) and computing its cache key
costs 100-150 µs, about as much as running it on SQLite; the worker's hot queries
(claiming, routing, leasing and recording deliveries) run a few times per batch of leads,
so they are built once, with ``bindparam`` for every value (``expanding`` for id lists).
Where the dialects differ (``FOR UPDATE`` on PostgreSQL only), one is built per dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection

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
