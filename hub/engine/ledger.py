"""The lead ledger: every accepted event accounted for, over any time range.

Per source (and in total):  events = leads + duplicates + non_lead + quarantined
and  leads = delivered + partially_delivered + pending + failed + dead + unrouted.
A lead that still has a delivery retrying counts as ``failed``; one whose deliveries all
gave up counts as ``dead``; one not yet routed or still on its way counts as ``pending``.
A provider's retry of an event already stored is not an event.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, exists, func, select

from hub.store import tables as t

LEAD_KEYS = ("delivered", "partially_delivered", "pending", "failed", "dead", "unrouted")
EVENT_KEYS = ("events", "leads", "duplicates", "non_lead", "quarantined")


def _empty() -> dict[str, int]:
    return dict.fromkeys(EVENT_KEYS + LEAD_KEYS, 0)


def ledger(engine: Engine, since: float | None = None, until: float | None = None) -> dict[str, Any]:
    lo = since if since is not None else 0.0
    hi = until if until is not None else 1e12
    by_source: dict[str, dict[str, int]] = defaultdict(_empty)
    by_dest: dict[str, dict[str, int]] = defaultdict(
        lambda: {"pending": 0, "delivered": 0, "failed": 0, "dead": 0}
    )
    ie, ld, dl = t.inbound_events, t.leads, t.deliveries
    with engine.connect() as conn:
        for source, outcome, n in conn.execute(
            select(ie.c.source, ie.c.outcome, func.sum(ie.c.events))
            .where(ie.c.received_at >= lo, ie.c.received_at < hi, ie.c.outcome != "retry")
            .group_by(ie.c.source, ie.c.outcome)
        ):
            row = by_source[source]
            row["events"] += int(n or 0)
            if outcome in ("non_lead", "update"):  # an update continued a call or a chat
                row["non_lead"] += int(n or 0)
            elif outcome == "quarantined":
                row["quarantined"] += int(n or 0)
        retrying = exists().where(dl.c.lead_id == ld.c.id, dl.c.status == "failed")
        for source, status, is_retrying, n in conn.execute(
            select(ld.c.source, ld.c.status, retrying, func.count())
            .where(ld.c.received_at >= lo, ld.c.received_at < hi)
            .group_by(ld.c.source, ld.c.status, retrying)
        ):
            row = by_source[source]
            if status == "duplicate":
                row["duplicates"] += n
                continue
            row["leads"] += n
            if status in ("delivered", "partially_delivered", "unrouted"):
                row[status] += n
            elif status == "failed":
                row["dead"] += n
            elif is_retrying:
                row["failed"] += n
            else:
                row["pending"] += n
        for dest, status, n in conn.execute(
            select(dl.c.destination, dl.c.status, func.count())
            .join(ld, ld.c.id == dl.c.lead_id)
            .where(ld.c.received_at >= lo, ld.c.received_at < hi)
            .group_by(dl.c.destination, dl.c.status)
        ):
            by_dest[dest][status] += n
    totals = _empty()
    for row in by_source.values():
        for k, v in row.items():
            totals[k] += v
    return {
        "since": since,
        "until": until,
        "totals": totals,
        "by_source": dict(by_source),
        "by_destination": dict(by_dest),
        "balanced": balanced(totals) and all(balanced(r) for r in by_source.values()),
    }


def balanced(row: dict[str, int]) -> bool:
    events_ok = row["events"] == row["leads"] + row["duplicates"] + row["non_lead"] + row["quarantined"]
    leads_ok = row["leads"] == sum(row[k] for k in LEAD_KEYS)
    return events_ok and leads_ok
