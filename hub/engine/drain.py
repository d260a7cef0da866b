"""Worker step two: drain one destination's due deliveries in batches, at its rate.

A drain leases a batch (the lease is the record that an attempt is under way), takes a
rate-limit slot shared by all workers, looks up items whose previous attempt may have
landed, delivers the rest in one call, and records each result. A worker killed at any
point leaves a lease that expires; the next attempt then counts as uncertain and starts
with a lookup, so a crash between the CRM's answer and our commit creates nothing twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from hub.connectors import DeliveryItem, DeliveryOutcome, Destination
from hub.engine.limiter import RateLimiter
from hub.engine.retry import decide
from hub.engine.status import refresh_lead_status
from hub.errors import PermanentError, RateLimited, RetryableError
from hub.models import Lead
from hub.runtime import Runtime
from hub.store import tables as t

log = logging.getLogger("leadhub.drain")
BUDGET_S = 20.0  # a drain job yields after this, so one destination never holds a worker
BREAKER_AFTER = 3  # consecutive whole-batch failures that open the circuit
BREAKER_COOLDOWN_S = 15.0


@dataclass
class DrainStats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    finished: list[tuple[str, str, str, str | None, str | None]] = field(default_factory=list)
    more: bool = False


def request_timeout(dest: Destination[Any]) -> float:
    return float(getattr(dest.config, "timeout_s", 30.0) or 30.0)


def lease_batch(
    conn: Connection, destination: str, size: int, now: float, lease_s: float
) -> list[Any]:
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
            .values(lease_until=now + lease_s, updated_at=now)
        )
    return rows


def _extend(rt: Runtime, ids: list[str], until: float) -> None:
    with rt.db.begin() as conn:
        conn.execute(
            update(t.deliveries)
            .where(t.deliveries.c.id.in_(ids))
            .values(lease_until=until)
        )


def _items(rt: Runtime, rows: list[Any]) -> list[DeliveryItem]:
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
            )
        )
    return items


def _record(
    rt: Runtime, rows: dict[str, Any], outcomes: list[DeliveryOutcome], now: float,
    stats: DrainStats, destination: str,
) -> None:
    horizon = rt.config.hub.retry_horizon_hours * 3600.0
    with rt.db.begin() as conn:
        for out in outcomes:
            row = rows[out.delivery_id]
            attempts = row.attempts + 1
            first = row.first_attempt_at or now
            common = dict(attempts=attempts, first_attempt_at=first, lease_until=0.0, updated_at=now)
            if out.error is None:
                conn.execute(
                    update(t.deliveries).where(t.deliveries.c.id == row.id).values(
                        status="delivered", external_id=out.external_id, uncertain=False,
                        last_error=None, delivered_at=now, **common,
                    )
                )
                stats.delivered += 1
                stats.finished.append((row.lead_id, destination, "delivered", out.external_id, None))
                continue
            err = out.error
            message = f"{type(err).__name__}: {err}"[:2000]
            if isinstance(err, PermanentError):
                status, next_at, uncertain = "dead", now, False
            else:
                retry_after = err.retry_after if isinstance(err, RateLimited) else None
                d = decide(attempt=attempts, first_attempt_at=first, now=now,
                           retry_after=retry_after, horizon_s=horizon)
                status = "dead" if d.dead else "failed"
                next_at = d.next_attempt_at
                uncertain = bool(getattr(err, "uncertain", True)) or bool(row.uncertain)
            conn.execute(
                update(t.deliveries).where(t.deliveries.c.id == row.id).values(
                    status=status, next_attempt_at=next_at, uncertain=uncertain,
                    last_error=message, **common,
                )
            )
            if status == "dead":
                stats.dead += 1
                stats.finished.append((row.lead_id, destination, "dead", None, message))
            else:
                stats.failed += 1
        for lead_id in {rows[o.delivery_id].lead_id for o in outcomes}:
            refresh_lead_status(conn, lead_id, now)


def _defer(rt: Runtime, ids: list[str], until: float, now: float) -> None:
    """Give leased items back untouched (not an attempt): disabled, breaker open, or the
    duplicate's original is not delivered yet."""
    with rt.db.begin() as conn:
        conn.execute(
            update(t.deliveries).where(t.deliveries.c.id.in_(ids))
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
    rt: Runtime, destination: str, budget_s: float = BUDGET_S, clock: Callable[[], float] = time.time
) -> DrainStats:
    """Deliver due deliveries of ``destination`` until none are due or the budget is spent.

    ``clock`` gives the store's notion of now (tests drive the retry schedule with it).
    """
    stats = DrainStats()
    dest = rt.destination(destination)
    if dest is None or not rt.is_enabled(destination):
        return stats
    limits = dest.effective_limits()
    limiter = RateLimiter(rt.redis)

    def slot() -> None:  # one request slot per call, unless the plugin counts its own
        if not dest.counts_own_requests:
            limiter.acquire(destination, limits.requests_per_second, limits.burst)
    timeout = request_timeout(dest)
    started = time.monotonic()
    failures_in_row = 0
    while time.monotonic() - started < budget_s:
        now = clock()
        with rt.db.begin() as conn:
            rows = lease_batch(conn, destination, limits.batch_size, now, timeout * 2 + 10)
        if not rows:
            return stats
        by_id = {r.id: r for r in rows}
        items = _items(rt, rows)
        waiting = [
            i for i in items
            if i.lead.duplicate_of and i.duplicate_of_external_id is None
            and _original_pending(rt, i.lead.duplicate_of, destination)
        ]
        if waiting:
            _defer(rt, [i.delivery_id for i in waiting], now + 5, now)
            stats.deferred += len(waiting)
            items = [i for i in items if i not in waiting]
        # a duplicate whose original never reached this destination has nothing to annotate
        outcomes: list[DeliveryOutcome] = [
            DeliveryOutcome(i.delivery_id, external_id=None)
            for i in items if i.lead.duplicate_of and i.duplicate_of_external_id is None
        ]
        items = [i for i in items if not (i.lead.duplicate_of and i.duplicate_of_external_id is None)]
        for item in [i for i in items if i.uncertain]:
            slot()
            _extend(rt, [item.delivery_id], clock() + timeout + 5)
            found, err = _call(dest.lookup, item)
            if err is not None:
                outcomes.append(DeliveryOutcome(item.delivery_id, error=err))
            elif found:
                outcomes.append(DeliveryOutcome(item.delivery_id, external_id=str(found)))
        settled = {o.delivery_id for o in outcomes}
        todo = [i for i in items if i.delivery_id not in settled]
        if todo:
            slot()
            _extend(rt, [i.delivery_id for i in todo], clock() + timeout + 5)
            result, err = _call(dest.deliver, todo)
            if err is not None:
                outcomes += [DeliveryOutcome(i.delivery_id, error=err) for i in todo]
            else:
                outcomes += _complete(todo, result)
        _record(rt, by_id, outcomes, clock(), stats, destination)
        if outcomes and all(o.error is not None for o in outcomes):
            failures_in_row += 1
            if failures_in_row >= BREAKER_AFTER:
                open_breaker(rt, destination)
                return stats
        else:
            failures_in_row = 0
    stats.more = True
    return stats


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


def breaker_key(destination: str) -> str:
    return f"leadhub:breaker:{destination}"


def open_breaker(rt: Runtime, destination: str) -> None:
    """Stop waking this destination for a while; its items keep their own backoff."""
    cooldown = BREAKER_COOLDOWN_S * random.uniform(0.8, 1.2)
    rt.redis.set(breaker_key(destination), b"open", px=int(cooldown * 1000))


def breaker_open(rt: Runtime, destination: str) -> bool:
    return bool(rt.redis.exists(breaker_key(destination)))
