"""The lead ledger: every accepted event accounted for, over any time range.

Per source (and in total):  events = leads + duplicates + non_lead + quarantined
and  leads = delivered + partially_delivered + pending + failed + dead + unrouted.
A lead that still has a delivery retrying counts as ``failed``; one whose deliveries all
gave up counts as ``dead``; one not yet routed or still on its way counts as ``pending``.
A provider's retry of an event already stored is not an event.

Retention (``hub/engine/retention.py``) deletes old rows but first adds what they counted
to ``ledger_rollup``, per UTC day; the ledger adds the rollup to what the rows still say.
Where a range reaches into purged days, its ends are taken to the start of their UTC day
(for the rows too, so a day's events and its leads are always counted together): the
totals of a purged period are the same as before the purge, and balance.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Engine

from hub.store import ledger as ledger_store

LEAD_KEYS = ("delivered", "partially_delivered", "pending", "failed", "dead", "unrouted")
EVENT_KEYS = ("events", "leads", "duplicates", "non_lead", "quarantined")


DAY_S = 86400.0


def _empty() -> dict[str, int]:
    return dict.fromkeys(EVENT_KEYS + LEAD_KEYS, 0)


def day_of(ts: float) -> float:
    """The UTC midnight at or before ``ts`` (epoch seconds)."""
    return (ts // DAY_S) * DAY_S


def lead_category(status: str, retrying: bool) -> str:
    """The ledger's count a lead belongs to: ``duplicates`` or one of ``LEAD_KEYS``."""
    if status == "duplicate":
        return "duplicates"
    if status in ("delivered", "partially_delivered", "unrouted"):
        return status
    if status == "failed":
        return "dead"
    return "failed" if retrying else "pending"


def add_events(row: dict[str, int], outcome: str, n: int) -> None:
    """Count ``n`` events of raw requests with ``outcome`` (a retry is no event)."""
    if outcome == "retry":
        return
    row["events"] += n
    if outcome in ("non_lead", "update"):  # an update continued a call or a chat
        row["non_lead"] += n
    elif outcome == "quarantined":
        row["quarantined"] += n


def add_leads(row: dict[str, int], category: str, n: int) -> None:
    """Count ``n`` leads of ``category`` (``lead_category``)."""
    if category == "duplicates":
        row["duplicates"] += n
        return
    row["leads"] += n
    row[category] += n


def rolled_up_until(conn: Connection) -> float | None:
    """The end of the last UTC day whose rows retention purged, None when none was."""
    last = ledger_store.last_rolled_up_day(conn)
    return None if last is None else last + DAY_S


def ledger(engine: Engine, since: float | None = None, until: float | None = None) -> dict[str, Any]:
    lo = since if since is not None else 0.0
    hi = until if until is not None else 1e12
    by_source: dict[str, dict[str, int]] = defaultdict(_empty)
    by_dest: dict[str, dict[str, int]] = defaultdict(
        lambda: {"pending": 0, "delivered": 0, "failed": 0, "dead": 0}
    )
    with engine.connect() as conn:
        purged_until = rolled_up_until(conn)
        if purged_until is not None:  # a purged day counts whole (module doc)
            lo = day_of(lo) if lo < purged_until else lo
            hi = day_of(hi) if hi < purged_until else hi
        for source, outcome, n in ledger_store.event_counts(conn, lo, hi):
            add_events(by_source[source], outcome, int(n or 0))
        for source, status, is_retrying, n in ledger_store.lead_counts(conn, lo, hi):
            add_leads(by_source[source], lead_category(status, bool(is_retrying)), n)
        if purged_until is not None:
            for kind, name, key, n in ledger_store.rollup_counts(conn, lo, hi):
                if kind == "event":
                    add_events(by_source[name], key, int(n))
                elif kind == "lead":
                    add_leads(by_source[name], key, int(n))
                elif kind == "delivery":
                    by_dest[name][key] = by_dest[name].get(key, 0) + int(n)
        for dest, status, n in ledger_store.delivery_counts(conn, lo, hi):
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
