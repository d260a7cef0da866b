"""A lead's status follows from its deliveries; one function derives it, everywhere."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from hub.store import tables as t


def derive_status(current: str, delivery_statuses: list[str]) -> str:
    """``delivered`` when every delivery is; ``partially_delivered`` when some are and the
    rest are dead; ``failed`` when all are dead; otherwise still ``routed``. Leads that are
    duplicates, unrouted or not yet processed keep their status."""
    if current in ("duplicate", "unrouted", "received") or not delivery_statuses:
        return current
    done = delivery_statuses.count("delivered")
    dead = delivery_statuses.count("dead")
    if done == len(delivery_statuses):
        return "delivered"
    if done + dead == len(delivery_statuses):
        return "partially_delivered" if done else "failed"
    return "routed"


def refresh_lead_status(conn: Connection, lead_id: str, now: float) -> str:
    current = conn.execute(select(t.leads.c.status).where(t.leads.c.id == lead_id)).scalar_one()
    statuses = list(
        conn.execute(select(t.deliveries.c.status).where(t.deliveries.c.lead_id == lead_id)).scalars()
    )
    new = derive_status(current, statuses)
    if new != current:
        conn.execute(
            update(t.leads).where(t.leads.c.id == lead_id).values(status=new, updated_at=now)
        )
    return new
