"""Worker step two: drain one destination's due deliveries in batches, at its rate.

A drain leases a batch (the lease is the record that an attempt is under way), takes a
rate-limit slot shared by all workers, looks up items whose previous attempt may have
landed, delivers the rest in one call, and records each result. A worker killed at any
point leaves a lease that expires; the next attempt then counts as uncertain and starts
with a lookup, so a crash between the CRM's answer and our commit creates nothing twice.

Several drains of one destination may run at once (in different workers), sharing its
rate limit: a drain that leased a full batch wakes a helper, up to ``MAX_DRAINS``, so the
database work of one batch overlaps the rate-limit wait and the HTTP call of another. A
destination earns that only by succeeding: until its last batch succeeded (a new
destination, or one that is failing) only one drain runs, and a drain whose whole batch
failed gives its worker back at once. A destination that times out on every call thus
holds at most one worker, for one call at a time, whatever the number of wake-ups; three
whole-batch failures in a row (counted across drains, in Redis) open the circuit breaker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Connection, bindparam, select, update

from hub.connectors import DeliveryItem, DeliveryOutcome, Destination
from hub.engine.drain_control import (
    DrainSlot,
    failures_in_row,
    note_failure,
    note_success,
    open_breaker,
)
from hub.engine.ingest import new_id
from hub.engine.limiter import RateLimiter
from hub.engine.retry import decide
from hub.engine.status import derive_status
from hub.errors import PermanentError, RateLimited, RetryableError
from hub.models import Lead
from hub.runtime import Runtime
from hub.store import tables as t

log = logging.getLogger("leadhub.drain")
BUDGET_S = 20.0  # a drain job yields after this, so one destination never holds a worker
BREAKER_AFTER = 3  # consecutive whole-batch failures that open the circuit
MAX_DRAINS = 3  # drains of one healthy destination at once (they share its rate limit)
DEFER_S = 5.0  # items not tried because the destination just failed go again after this


@dataclass
class DrainStats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    finished: list[tuple[str, str, str, str | None, str | None]] = field(default_factory=list)
    more: bool = False
    refused: bool = False  # enough drains of this destination were running already


def request_timeout(dest: Destination[Any]) -> float:
    return float(getattr(dest.config, "timeout_s", 30.0) or 30.0)


def lease_batch(
    conn: Connection, destination: str, size: int, now: float, lease_s: float, attempt: str
) -> list[Any]:
    """Lease due deliveries for attempt ``attempt``; the rows are returned as they were
    before (their ``attempt_id`` is the previous attempt's)."""
    q = (
        select(t.deliveries)
        .where(
            t.deliveries.c.destination == destination,
            t.deliveries.c.status.in_(("pending", "failed")),
            t.deliveries.c.next_attempt_at <= now,
            t.deliveries.c.lease_until < now,
        )
        .order_by(t.deliveries.c.next_attempt_at, t.deliveries.c.id)
        .limit(size)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    rows = list(conn.execute(q))
    if rows:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id.in_([r.id for r in rows]))
            .values(lease_until=now + lease_s, attempt_id=attempt, updated_at=now)
        )
    return rows


def _extend(rt: Runtime, ids: list[str], until: float, attempt: str, sending: bool = False) -> None:
    """Extend this attempt's lease; ``sending``: record, before the request leaves, that this
    attempt is the one whose records a later look-up must search for."""
    values: dict[str, Any] = {"lease_until": until}
    if sending:
        values["sent_attempt_id"] = attempt
    with rt.db.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id.in_(ids), t.deliveries.c.attempt_id == attempt)
            .values(**values)
        )


def _items(rt: Runtime, rows: list[Any], attempt: str) -> list[DeliveryItem]:
    lead_ids = {r.lead_id for r in rows}
    with rt.reader.connect() as conn:
        data = {
            lid: d
            for lid, d in conn.execute(
                select(t.leads.c.id, t.leads.c.data).where(t.leads.c.id.in_(lead_ids))
            )
        }
        originals = {
            Lead.model_validate(d).duplicate_of for d in data.values()
        } - {None}
        orig_ext: dict[tuple[str, str], str | None] = {}
        if originals:
            for lid, dest, ext in conn.execute(
                select(t.deliveries.c.lead_id, t.deliveries.c.destination, t.deliveries.c.external_id)
                .where(t.deliveries.c.lead_id.in_(originals))
            ):
                orig_ext[(lid, dest)] = ext
    items = []
    for r in rows:
        lead = Lead.model_validate(data[r.lead_id])
        dup_ext = orig_ext.get((lead.duplicate_of, r.destination)) if lead.duplicate_of else None
        items.append(
            DeliveryItem(
                delivery_id=r.id,
                idempotency_key=r.idempotency_key,
                lead=lead,
                # an attempt that left no result (lease ran out) may have landed
                uncertain=bool(r.uncertain or r.lease_until > 0),
                duplicate_of_external_id=dup_ext,
                attempt_id=attempt,
                previous_attempt_id=r.sent_attempt_id,
            )
        )
    return items


def _record(
    rt: Runtime, rows: dict[str, Any], outcomes: list[DeliveryOutcome], now: float,
    stats: DrainStats, destination: str, attempt: str,
) -> None:
    """Write every outcome of a batch and the leads' statuses in one transaction, with one
    statement per kind of change (executemany), not a few per lead: on SQLite a batch of
    50 costs a few milliseconds instead of tens, which all writers of the store wait for."""
    horizon = rt.config.hub.retry_horizon_hours * 3600.0
    with rt.db.begin() as conn:
        outcomes = _still_ours(conn, outcomes, attempt)
        _write_outcomes(conn, rows, outcomes, now, stats, destination, horizon)


def _still_ours(conn: Connection, outcomes: list[DeliveryOutcome], attempt: str) -> list[DeliveryOutcome]:
    """Outcomes of deliveries this attempt still holds. An attempt whose lease ran out (a
    stalled worker) and was taken over records nothing: the newer attempt, which looked
    the lead up first, speaks for it."""
    if not outcomes:
        return outcomes
    q = select(t.deliveries.c.id).where(
        t.deliveries.c.id.in_([o.delivery_id for o in outcomes]),
        t.deliveries.c.attempt_id == attempt,
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    ours = set(conn.execute(q).scalars())
    if len(ours) < len(outcomes):
        log.warning("%d outcome(s) dropped: their lease was taken over", len(outcomes) - len(ours))
    return [o for o in outcomes if o.delivery_id in ours]


def _write_outcomes(
    conn: Connection, rows: dict[str, Any], outcomes: list[DeliveryOutcome], now: float,
    stats: DrainStats, destination: str, horizon: float,
) -> None:
    done: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for out in outcomes:
        row = rows[out.delivery_id]
        attempts = row.attempts + 1
        first = row.first_attempt_at or now
        common = {"b_id": row.id, "b_attempts": attempts, "b_first": first}
        if out.error is None:
            done.append({**common, "b_ext": out.external_id})
            stats.delivered += 1
            stats.finished.append((row.lead_id, destination, "delivered", out.external_id, None))
            continue
        err = out.error
        message = f"{type(err).__name__}: {err}"[:2000]
        if isinstance(err, PermanentError):
            status, next_at, uncertain = "dead", now, False
        else:
            retry_after = err.retry_after if isinstance(err, RateLimited) else None
            decision = decide(attempt=attempts, first_attempt_at=first, now=now,
                              retry_after=retry_after, horizon_s=horizon)
            status = "dead" if decision.dead else "failed"
            next_at = decision.next_attempt_at
            uncertain = bool(getattr(err, "uncertain", True)) or bool(row.uncertain)
        other.append({**common, "b_status": status, "b_next": next_at, "b_uncertain": uncertain,
                      "b_error": message})
        if status == "dead":
            stats.dead += 1
            stats.finished.append((row.lead_id, destination, "dead", None, message))
        else:
            stats.failed += 1
    d = t.deliveries
    if done:
        conn.execute(
            update(d).where(d.c.id == bindparam("b_id")).values(
                status="delivered", external_id=bindparam("b_ext"), uncertain=False,
                last_error=None, delivered_at=now, attempts=bindparam("b_attempts"),
                first_attempt_at=bindparam("b_first"), lease_until=0.0, updated_at=now),
            done,
        )
    if other:
        conn.execute(
            update(d).where(d.c.id == bindparam("b_id")).values(
                status=bindparam("b_status"), next_attempt_at=bindparam("b_next"),
                uncertain=bindparam("b_uncertain"), last_error=bindparam("b_error"),
                attempts=bindparam("b_attempts"), first_attempt_at=bindparam("b_first"),
                lease_until=0.0, updated_at=now),
            other,
        )
    _refresh_statuses(conn, {rows[o.delivery_id].lead_id for o in outcomes}, now)


def _refresh_statuses(conn: Connection, lead_ids: set[str], now: float) -> None:
    """``refresh_lead_status`` for many leads: two reads and one executemany."""
    if not lead_ids:
        return
    current: dict[str, str] = {
        row.id: row.status
        for row in conn.execute(
            select(t.leads.c.id, t.leads.c.status).where(t.leads.c.id.in_(lead_ids)))
    }
    statuses: dict[str, list[str]] = {}
    for row in conn.execute(
        select(t.deliveries.c.lead_id, t.deliveries.c.status)
        .where(t.deliveries.c.lead_id.in_(lead_ids))
    ):
        statuses.setdefault(row.lead_id, []).append(row.status)
    changed = [
        {"b_id": lid, "b_status": new}
        for lid, old in current.items()
        if (new := derive_status(old, statuses.get(lid, []))) != old
    ]
    if changed:
        conn.execute(
            update(t.leads).where(t.leads.c.id == bindparam("b_id"))
            .values(status=bindparam("b_status"), updated_at=now),
            changed,
        )


def _defer(rt: Runtime, ids: list[str], until: float, now: float, attempt: str) -> None:
    """Give leased items back untouched (not an attempt): the destination just failed, or
    the duplicate's original is not delivered yet. The previous attempt stays the one to
    look for, so a deferred uncertain item still starts with a look-up."""
    with rt.db.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id.in_(ids), t.deliveries.c.attempt_id == attempt)
            .values(lease_until=0.0, next_attempt_at=until, updated_at=now)
        )


def _call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args), None
    except (RetryableError, PermanentError) as exc:
        return None, exc
    except Exception as exc:  # a plugin bug or an unmapped network error: retry, look up first
        log.warning("destination raised %s", type(exc).__name__)
        return None, RetryableError(f"{type(exc).__name__}: {exc}", uncertain=True)


def drain(
    rt: Runtime, destination: str, budget_s: float = BUDGET_S, clock: Callable[[], float] = time.time,
    spread: Callable[[], object] | None = None,
) -> DrainStats:
    """Deliver due deliveries of ``destination`` until none are due or the budget is spent.

    ``clock`` gives the store's notion of now (tests drive the retry schedule with it).
    ``spread`` wakes one more drain of this destination (another worker); it is called
    while full batches keep coming and the destination is healthy.
    """
    stats = DrainStats()
    dest = rt.destination(destination)
    if dest is None or not rt.is_enabled(destination):
        return stats
    timeout = request_timeout(dest)
    slot = DrainSlot(rt.redis, destination, timeout * 2 + 10)
    if not slot.acquire(MAX_DRAINS if failures_in_row(rt, destination) == 0 else 1):
        stats.refused = True  # the running drain is told to look again when it ends
        return stats
    try:
        _drain(rt, dest, destination, budget_s, clock, spread, slot, stats)
    finally:
        try:
            if slot.release():  # a wake-up was refused meanwhile: work may be waiting
                stats.more = True
        except redis.RedisError:  # the slot expires on its own
            stats.more = True
    return stats


def _drain(
    rt: Runtime, dest: Destination[Any], destination: str, budget_s: float,
    clock: Callable[[], float], spread: Callable[[], object] | None, slot: DrainSlot,
    stats: DrainStats,
) -> None:
    limits = dest.effective_limits()
    limiter = RateLimiter(rt.redis)

    def take_slot() -> None:  # one request slot per call, unless the plugin counts its own
        if not dest.counts_own_requests:
            limiter.acquire(destination, limits.requests_per_second, limits.burst)
    timeout = request_timeout(dest)
    started = time.monotonic()
    while time.monotonic() - started < budget_s:
        now = clock()
        attempt = new_id()
        with rt.db.begin() as conn:
            rows = lease_batch(conn, destination, limits.batch_size, now, timeout * 2 + 10, attempt)
        if not rows:
            return
        by_id = {r.id: r for r in rows}
        items = _items(rt, rows, attempt)
        waiting = [
            i for i in items
            if i.lead.duplicate_of and i.duplicate_of_external_id is None
            and _original_pending(rt, i.lead.duplicate_of, destination)
        ]
        if waiting:
            _defer(rt, [i.delivery_id for i in waiting], now + 5, now, attempt)
            stats.deferred += len(waiting)
            items = [i for i in items if i not in waiting]
        # a duplicate whose original never reached this destination has nothing to annotate
        outcomes: list[DeliveryOutcome] = [
            DeliveryOutcome(i.delivery_id, external_id=None)
            for i in items if i.lead.duplicate_of and i.duplicate_of_external_id is None
        ]
        items = [i for i in items if not (i.lead.duplicate_of and i.duplicate_of_external_id is None)]
        untried: list[DeliveryItem] = []  # not tried: the destination just failed
        failed_lookup = False
        uncertain = [i for i in items if i.uncertain]
        if uncertain and type(dest).lookup_many is not Destination.lookup_many:
            _extend(rt, [i.delivery_id for i in uncertain], clock() + timeout + 5, attempt)
            take_slot()
            found_many, err = _call(dest.lookup_many, uncertain)
            if err is not None:
                outcomes += [DeliveryOutcome(i.delivery_id, error=err) for i in uncertain]
                failed_lookup = True
                uncertain = []
            elif found_many is not None:  # one look-up answered for the whole batch
                outcomes += [DeliveryOutcome(i.delivery_id, external_id=str(found_many[i.delivery_id]))
                             for i in uncertain if found_many.get(i.delivery_id)]
                uncertain = []
        for item in uncertain:  # the destination looks up one item at a time
            if failed_lookup or time.monotonic() - started >= budget_s:
                untried.append(item)
                continue
            _extend(rt, [item.delivery_id], clock() + timeout + 5, attempt)
            take_slot()
            found, err = _call(dest.lookup, item)
            if err is not None:
                outcomes.append(DeliveryOutcome(item.delivery_id, error=err))
                failed_lookup = True
            elif found:
                outcomes.append(DeliveryOutcome(item.delivery_id, external_id=str(found)))
        settled = {o.delivery_id for o in outcomes}
        if failed_lookup or untried:  # do not wait out the others' timeouts, nor deliver
            untried += [i for i in items if not i.uncertain and i.delivery_id not in settled]
            _defer(rt, [i.delivery_id for i in untried], clock() + DEFER_S, clock(), attempt)
            stats.deferred += len(untried)
            settled |= {i.delivery_id for i in untried}
        todo = [i for i in items if i.delivery_id not in settled]
        if todo:
            _extend(rt, [i.delivery_id for i in todo], clock() + timeout + 5, attempt, sending=True)
            take_slot()  # after the commit above: the slot is taken when the request leaves
            result, err = _call(dest.deliver, todo)
            if err is not None:
                outcomes += [DeliveryOutcome(i.delivery_id, error=err) for i in todo]
            else:
                outcomes += _complete(todo, result)
        _record(rt, by_id, outcomes, clock(), stats, destination, attempt)
        limited = [o.error for o in outcomes if isinstance(o.error, RateLimited)]
        if limited:  # over the limit anyway (another client of the same account?): hold all
            hold = max((e.retry_after or 0.0) for e in limited)
            limiter.penalize(destination, min(max(hold, 1.0), 60.0))
        if outcomes and all(o.error is not None for o in outcomes):
            if note_failure(rt, destination) >= BREAKER_AFTER:
                open_breaker(rt, destination)
            else:
                stats.more = True  # give the worker back; the next drain tries again
            return
        if any(o.error is None for o in outcomes):
            note_success(rt, destination)
            running = slot.refresh()
            if spread is not None and len(rows) >= limits.batch_size and running < MAX_DRAINS:
                spread()
        else:
            slot.refresh()
    stats.more = True


def _complete(items: list[DeliveryItem], result: Any) -> list[DeliveryOutcome]:
    """One outcome per item; an item the plugin forgot is a retryable, uncertain failure."""
    got = {o.delivery_id: o for o in (result or []) if isinstance(o, DeliveryOutcome)}
    return [
        got.get(i.delivery_id)
        or DeliveryOutcome(i.delivery_id, error=RetryableError("no outcome reported", uncertain=True))
        for i in items
    ]


def _original_pending(rt: Runtime, original: str, destination: str) -> bool:
    with rt.reader.connect() as conn:
        status = conn.execute(
            select(t.deliveries.c.status).where(
                t.deliveries.c.lead_id == original, t.deliveries.c.destination == destination
            )
        ).scalar()
    return status in ("pending", "failed")
