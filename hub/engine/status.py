"""A lead's status follows from its deliveries; one function derives it, everywhere."""

from __future__ import annotations


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

