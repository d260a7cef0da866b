"""Replay and retry: send again what did not get through, never what did."""

from __future__ import annotations

import time

from sqlalchemy import select, update

from hub.engine.jobs import wake_drain, wake_process
from hub.engine.process import create_deliveries
from hub.engine.routing import choose_route
from hub.models import Lead
from hub.runtime import Runtime
from hub.store import tables as t


def replay_lead(rt: Runtime, lead_id: str) -> bool:
    """Re-route and re-deliver. Idempotent per destination: a delivered destination is not
    sent again; a dead or failed one is tried now (its earlier attempts make it start with a
    lookup in the destination, so nothing is created twice). False if there is no such lead."""
    now = time.time()
    with rt.db.begin() as conn:
        row = conn.execute(select(t.leads).where(t.leads.c.id == lead_id)).first()
        if row is None:
            return False
        if row.status not in ("received", "duplicate"):
            lead = Lead.model_validate(row.data)
            decision = choose_route(lead, rt.config.routes, rt.config.hub.default_destinations)
            create_deliveries(conn, lead_id, decision.destinations, now)
            if decision.destinations and row.status == "unrouted":
                conn.execute(update(t.leads).where(t.leads.c.id == lead_id).values(status="routed"))
        revived = conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.lead_id == lead_id, t.deliveries.c.status.in_(("dead", "failed")))
            .values(status="pending", next_attempt_at=now, first_attempt_at=None, updated_at=now)
        ).rowcount
        if revived and row.status in ("failed", "partially_delivered"):
            conn.execute(update(t.leads).where(t.leads.c.id == lead_id).values(status="routed"))
        dests = list(conn.execute(
            select(t.deliveries.c.destination).where(t.deliveries.c.lead_id == lead_id)
        ).scalars())
    wake_process(rt)
    for d in dests:
        wake_drain(rt, d)
    return True


def retry_delivery(rt: Runtime, delivery_id: str) -> bool:
    """Try a failed or dead delivery now; a delivered one is left alone. False if unknown."""
    now = time.time()
    with rt.db.begin() as conn:
        row = conn.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id)).first()
        if row is None:
            return False
        if row.status in ("failed", "dead", "pending"):
            conn.execute(
                update(t.deliveries).where(t.deliveries.c.id == delivery_id).values(
                    status="pending", next_attempt_at=now, updated_at=now,
                    first_attempt_at=None if row.status == "dead" else row.first_attempt_at,
                )
            )
            conn.execute(
                update(t.leads)
                .where(t.leads.c.id == row.lead_id,
                       t.leads.c.status.in_(("failed", "partially_delivered")))
                .values(status="routed", updated_at=now)
            )
    wake_drain(rt, row.destination)
    return True
