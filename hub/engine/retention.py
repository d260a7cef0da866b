"""Retention: raw requests, quarantine and (when the admin sets it) leads are purged when
they are older than ``[hub] raw_retention_days`` / ``lead_retention_days``.

Names, phones and e-mails sit in raw bodies, quarantine and leads; 152-FZ and the GDPR
want them kept no longer than needed. What the purged rows counted is not lost: in the
same transaction as each deletion, their counts are added to ``ledger_rollup`` per UTC
day, so ``/api/ledger`` over a purged period shows the same totals as before
(``hub/engine/ledger.py``). Cut-offs are UTC midnights: a day is purged whole.

* raw cut-off: ``raw_retention_days`` ago, or ``lead_retention_days`` ago when that is
  later (a lead's raw request holds the same person; it never outlives the lead). Purges
  raw requests, their quarantine entries, and call/chat threads not seen since.
* lead cut-off: leads with their deliveries, contact keys (cross-channel dedup and
  ``sticky`` assignment) and provider event ids. A lead is purged whatever its
  deliveries' state: after that many days, retention is the admin's stated intent.

Each batch (``batch`` rows) is one short transaction; on PostgreSQL rows are taken with
``FOR UPDATE SKIP LOCKED``, so two schedulers never count a row twice. The scheduler calls
``RetentionSchedule.tick`` every second; a tick runs a few batches and comes back for the
rest on the next one, so the sweep loop is never held up for long. SQLite zeroes what is
deleted (``PRAGMA secure_delete``, ``hub/store/db.py``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from hub.config import HubSettings
from hub.engine.ledger import DAY_S, day_of, lead_category
from hub.store import conversations as thread_store
from hub.store import deliveries as delivery_store
from hub.store import event_keys, raw_requests
from hub.store import leads as lead_store
from hub.store import quarantine as quarantine_store
from hub.store.ledger import RollupKey, add_to_rollup

BATCH = 500
#: batches per scheduler tick: the sweep loop waits for at most this many short transactions
BATCHES_PER_TICK = 4
#: how often the scheduler looks for rows to purge once nothing is left
IDLE_INTERVAL_S = 600.0


@dataclass(frozen=True)
class Cutoffs:
    """Rows received before these times go; None keeps them."""

    raw: float | None
    leads: float | None

    @classmethod
    def of(cls, settings: HubSettings, now: float) -> Cutoffs:
        leads = (day_of(now - settings.lead_retention_days * DAY_S)
                 if settings.lead_retention_days else None)
        raw = (day_of(now - settings.raw_retention_days * DAY_S)
               if settings.raw_retention_days else None)
        if leads is not None and (raw is None or leads > raw):
            raw = leads
        return cls(raw, leads)


@dataclass
class PurgeReport:
    """Rows deleted, per table; ``more`` when the batch limit stopped the purge early."""

    deleted: Counter[str] = field(default_factory=Counter)
    more: bool = False


def purge(engine: Engine, settings: HubSettings, now: float, *, batch: int = BATCH,
          max_batches: int | None = None) -> PurgeReport:
    """Delete what the retention settings no longer keep at ``now`` (the caller's clock),
    ``batch`` rows per transaction, at most ``max_batches`` transactions (None: all)."""
    cut = Cutoffs.of(settings, now)
    report = PurgeReport()
    # (the table a step walks, the step): a step is done when a batch comes back short
    steps: list[tuple[str, float, Callable[[Connection, float, int], Counter[str]]]] = []
    if cut.leads is not None:
        steps += [("leads", cut.leads, _purge_leads), ("event_keys", cut.leads, _purge_event_keys)]
    if cut.raw is not None:
        steps += [("inbound_events", cut.raw, _purge_raw), ("threads", cut.raw, _purge_threads)]
    done = 0
    for table, cutoff, step in steps:
        while True:
            if max_batches is not None and done >= max_batches:
                report.more = True
                return report
            with engine.begin() as conn:
                deleted = step(conn, cutoff, batch)
            done += 1
            report.deleted.update(deleted)
            if deleted[table] < batch:
                break
    return report


def _purge_raw(conn: Connection, cut: float, limit: int) -> Counter[str]:
    rows = raw_requests.oldest(conn, cut, limit)
    if not rows:
        return Counter(inbound_events=0)
    rollup: Counter[RollupKey] = Counter()
    for r in rows:
        if r.outcome != "retry":
            rollup[(day_of(r.received_at), "event", r.source, r.outcome)] += int(r.events)
    add_to_rollup(conn, rollup)
    ids = [r.id for r in rows]
    quarantined = quarantine_store.delete_of_requests(conn, ids)
    raw_requests.delete_ids(conn, ids)
    return Counter(inbound_events=len(ids), quarantine=quarantined)


def _purge_leads(conn: Connection, cut: float, limit: int) -> Counter[str]:
    rows = lead_store.oldest(conn, cut, limit)
    if not rows:
        return Counter(leads=0)
    ids = [r.id for r in rows]
    day = {r.id: day_of(r.received_at) for r in rows}
    rollup: Counter[RollupKey] = Counter()
    for r in rows:
        rollup[(day[r.id], "lead", r.source, lead_category(r.status, bool(r.retrying)))] += 1
    for lead_id, destination, status in delivery_store.statuses_of_leads(conn, ids):
        rollup[(day[lead_id], "delivery", destination, status)] += 1
    add_to_rollup(conn, rollup)
    return lead_store.delete_with_dependents(conn, ids)


def _purge_event_keys(conn: Connection, cut: float, limit: int) -> Counter[str]:
    keys = [(r.source, r.event_key) for r in event_keys.oldest(conn, cut, limit)]
    event_keys.delete_keys(conn, keys)
    return Counter(event_keys=len(keys))


def _purge_threads(conn: Connection, cut: float, limit: int) -> Counter[str]:
    keys = [(r.source, r.key) for r in thread_store.quiet_since(conn, cut, limit)]
    thread_store.delete_keys(conn, keys)
    return Counter(threads=len(keys))


class RetentionSchedule:
    """Purges from the scheduler's loop: a few batches per tick while rows are due, then
    a look every ``IDLE_INTERVAL_S``. Nothing to do when both settings are 0."""

    def __init__(self, engine: Engine, settings: HubSettings,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.next_due = 0.0

    def tick(self) -> PurgeReport | None:
        """Purge what is due now; None when it was not time to look."""
        now = self.clock()
        if now < self.next_due or not (self.settings.raw_retention_days
                                       or self.settings.lead_retention_days):
            return None
        report = purge(self.engine, self.settings, now, max_batches=BATCHES_PER_TICK)
        self.next_due = now if report.more else now + IDLE_INTERVAL_S
        return report
