"""The counts Prometheus scrapes (``hub/metrics.py``): read from the store at scrape time,
so they are true whichever process did the work. Each is one grouped query."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from hub.store import StoredRow
from hub.store import tables as t

ie, ld, dl, q = t.inbound_events, t.leads, t.deliveries, t.quarantine


def events(conn: Connection) -> list[StoredRow]:
    """``(source, outcome, raw requests)``."""
    return list(conn.execute(
        select(ie.c.source, ie.c.outcome, func.count()).group_by(ie.c.source, ie.c.outcome)))


def leads(conn: Connection) -> list[StoredRow]:
    """``(source, status, leads)``."""
    return list(conn.execute(
        select(ld.c.source, ld.c.status, func.count()).group_by(ld.c.source, ld.c.status)))


def open_quarantine(conn: Connection) -> list[StoredRow]:
    """``(source, open entries)``."""
    return list(conn.execute(
        select(q.c.source, func.count()).where(q.c.state == "open").group_by(q.c.source)))


def deliveries(conn: Connection) -> list[StoredRow]:
    """``(destination, status, deliveries)``."""
    return list(conn.execute(
        select(dl.c.destination, dl.c.status, func.count())
        .group_by(dl.c.destination, dl.c.status)))


def due(conn: Connection, now: float) -> list[StoredRow]:
    """``(destination, deliveries due, oldest next_attempt_at)``."""
    return list(conn.execute(
        select(dl.c.destination, func.count(), func.min(dl.c.next_attempt_at))
        .where(dl.c.status.in_(("pending", "failed")), dl.c.next_attempt_at <= now)
        .group_by(dl.c.destination)))


def recent_latencies(conn: Connection, limit: int) -> list[StoredRow]:
    """``(destination, seconds from received to delivered)`` of the last ``limit``
    deliveries."""
    return list(conn.execute(
        select(dl.c.destination, dl.c.delivered_at - ld.c.received_at)
        .join(ld, ld.c.id == dl.c.lead_id)
        .where(dl.c.status == "delivered", dl.c.delivered_at.is_not(None))
        .order_by(dl.c.delivered_at.desc())
        .limit(limit)
    ).all())
