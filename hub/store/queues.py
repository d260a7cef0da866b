"""The store as a queue: what waits to be processed or delivered, and for how long.

The scheduler's sweep wakes whatever is due (``hub/engine/sweeper.py``); health calls a
queue stalled when its work has waited long and nothing moved (``hub/engine/health.py``).
Each is a grouped query over an index (``leads (status, lease_until)``,
``deliveries (destination, status, next_attempt_at)``), cheap enough to run every second.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select, text

from hub.store import StoredRow
from hub.store import tables as t

ld, dl = t.leads, t.deliveries
DUE = ("pending", "failed")


def ping(conn: Connection) -> None:
    """Raises unless the store answers a trivial query (readiness)."""
    conn.execute(text("SELECT 1"))


def received_waiting(conn: Connection, now: float) -> int:
    """Received leads no worker holds a lease on."""
    return int(conn.execute(
        select(func.count()).select_from(ld)
        .where(ld.c.status == "received", ld.c.lease_until < now)
    ).scalar_one())


def oldest_received(conn: Connection) -> float | None:
    """When the oldest lead still waiting to be processed came in."""
    value = conn.execute(select(func.min(ld.c.received_at)).where(ld.c.status == "received")).scalar()
    return None if value is None else float(value)


def due_destinations(conn: Connection, now: float) -> list[str]:
    """Destinations with a delivery due at ``now`` that no drain holds."""
    return list(conn.execute(
        select(dl.c.destination)
        .where(dl.c.status.in_(DUE), dl.c.next_attempt_at <= now, dl.c.lease_until < now)
        .group_by(dl.c.destination)
    ).scalars())


def delivered_since(conn: Connection, destination: str, since: float) -> float | None:
    """When ``destination`` last took a delivery, if it did after ``since`` (over the
    ``deliveries (destination, updated_at)`` index: only rows changed since then are read)."""
    value = conn.execute(
        select(func.max(dl.c.updated_at))
        .where(dl.c.destination == destination, dl.c.updated_at >= since,
               dl.c.status == "delivered")).scalar()
    return None if value is None else float(value)


def due_before(conn: Connection, before: float) -> list[StoredRow]:
    """``(destination, oldest next_attempt_at)`` of the destinations with a delivery that
    was due before ``before``."""
    return list(conn.execute(
        select(dl.c.destination, func.min(dl.c.next_attempt_at))
        .where(dl.c.status.in_(DUE), dl.c.next_attempt_at <= before)
        .group_by(dl.c.destination)
    ).all())


def last_moved(conn: Connection, destination: str) -> float | None:
    """When a delivery to ``destination`` last changed."""
    value = conn.execute(
        select(func.max(dl.c.updated_at)).where(dl.c.destination == destination)).scalar()
    return None if value is None else float(value)
