"""Replay and retry: send again what did not get through, never what did."""

from __future__ import annotations

import time

from hub.engine.jobs import wake_drain, wake_process
from hub.engine.process import create_deliveries
from hub.engine.routing import choose_route
from hub.models import Lead
from hub.runtime import Runtime
from hub.store import deliveries as delivery_store
from hub.store import leads as lead_store


def replay_lead(rt: Runtime, lead_id: str) -> bool:
    """Re-route and re-deliver. Idempotent per destination: a delivered destination is not
    sent again; a dead or failed one is tried now (its earlier attempts make it start with a
    lookup in the destination, so nothing is created twice). False if there is no such lead."""
    now = time.time()
    with rt.db.begin() as conn:
        row = lead_store.by_id(conn, lead_id)
        if row is None:
            return False
        if row.status not in ("received", "duplicate"):
            lead = Lead.model_validate(row.data)
            decision = choose_route(lead, rt.config.routes, rt.config.hub.default_destinations)
            create_deliveries(conn, lead_id, decision.destinations, now)
            if decision.destinations and row.status == "unrouted":
                lead_store.set_routed(conn, lead_id)
        revived = delivery_store.revive_of_lead(conn, lead_id, now)
        if revived and row.status in ("failed", "partially_delivered"):
            lead_store.set_routed(conn, lead_id)
        dests = delivery_store.destinations_of(conn, lead_id)
    wake_process(rt)
    for d in dests:
        wake_drain(rt, d)
    return True


def retry_delivery(rt: Runtime, delivery_id: str) -> bool:
    """Try a failed or dead delivery now; a delivered one is left alone. False if unknown."""
    now = time.time()
    with rt.db.begin() as conn:
        row = delivery_store.by_id(conn, delivery_id)
        if row is None:
            return False
        if row.status in ("failed", "dead", "pending"):
            delivery_store.retry_now(conn, row, now)
            lead_store.reopen(conn, row.lead_id, now)
    wake_drain(rt, row.destination)
    return True
