"""Worker step two: drain one destination's due deliveries in batches, at its rate.

A drain leases a batch (the lease is the record that an attempt is under way), looks up
items whose previous attempt may have landed, delivers the rest in one call (the plugin
may send one request per lead, concurrently), and records every result in one
transaction (``hub/store/deliveries.py``). A worker killed at any point leaves a lease
that expires; the next attempt then counts as uncertain and starts with a look-up, so a
crash between the CRM's answer and our commit creates nothing twice.

Failures are read for what they say about the destination (``drain_control``): while it
answers other requests, a failed batch is retried within seconds, together (one jitter
draw per batch), and a failed look-up costs one quick try; only a destination that fails
as a whole goes to the long exponential schedule and the circuit breaker. A 429 holds
every sender back; a ``DestinationPaused`` (amoCRM's 403 block) opens the breaker for as
long as the API blocks.

Several drains of one destination may run at once (in different workers), sharing its
rate limit: a drain that leased a full batch wakes a helper, up to ``MAX_DRAINS``, so the
database work of one batch overlaps the rate-limit wait and the HTTP call of another. A
destination that is not answering gets one drain, and a drain of it whose whole batch
failed gives its worker back at once: a destination that times out on every call holds
at most one worker, for one call at a time. One drain sends a healthy destination's
steady trickle (``become_waiter``, a key it renews every turn); any other gives its
worker back at once (helpers for a backlog excepted): under ``leadhub serve`` a second
drain sleeping for its slot beside the first left no worker to route.
A drain waits for a call only until the next request slot: a call still unanswered then
stays in the air (``IN_FLIGHT`` at most, in the drain's thread pool) while the drain
leases and sends the next batch, and is recorded when it ends.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import redis

from hub.capabilities import Capability
from hub.connectors import DeliveryItem, DeliveryOutcome, Destination
from hub.engine.backoff import decide, jitter_factor
from hub.engine.drain_control import (
    BREAKER_AFTER,
    DrainSlot,
    answering,
    become_waiter,
    breaker_open,
    drain_start,
    note_failure,
    note_success,
    offer_spread,
    open_breaker,
    rate_limit_hold,
    stop_waiting,
)
from hub.engine.limiter import RateLimiter, waiting_for_slot
from hub.errors import DestinationPaused, PermanentError, RateLimited, RetryableError
from hub.ids import new_id
from hub.models import Lead
from hub.runtime import Runtime
from hub.store.deliveries import (
    AttemptRecord,
    item_of,
    lease_batch,
    load_items,
    mark_sending,
    originals_pending,
    record_attempt,
)

log = logging.getLogger("leadhub.drain")
BUDGET_S = 20.0  # a drain job yields after this, so one destination never holds a worker
MAX_DRAINS = 3  # drains of one healthy destination at once (they share its rate limit)
#: drains of a healthy destination without a backlog: they take turns to lease right
#: before their rate slot (``claim_turn``), so a second one costs no latency, and a request
#: hanging until its timeout no longer stops the destination's other leads (measured at
#: 100 leads/s with 20 % faults: two requests hanging 3 s at once stalled a lone pair)
STEADY_DRAINS = 3
ORIGINAL_WAIT_S = 2.0  # a duplicate waits this long for its original's delivery
PREP_S = 0.02  # a first guess of how long leasing and loading a batch takes
PREP_MAX_S = 0.1  # leased at most this long before the request slot
HEDGE_MIN_S = 0.05  # a call is waited for at least this long before the next batch is leased
#: a steady drain that stops coming back for this long (a call in the air past every
#: slot, a stalled worker) lets another one take over
STEADY_KEEP_S = 1.0
STEADY_MOST_S = 3.0  # the role is renewed for at most this long at a time (a long hold, a killed drain)
IN_FLIGHT = 3  # a drain's calls in the air at once (a hanging one and those sent past it)
_PREP_S: dict[str, float] = {}  # destination → how long leasing a batch takes (EWMA), this process
_POOLS: dict[str, ThreadPoolExecutor] = {}  # destination → the threads its calls run on, this process
_POOLS_LOCK = threading.Lock()


def _calls_pool(destination: str) -> ThreadPoolExecutor:
    """The threads a destination's calls run on in this process, kept between drains: a
    pool per drain job started a thread for every job, about a tenth of a worker's CPU
    under load (``leadhub serve``, the file destination). At most ``IN_FLIGHT`` calls;
    each drain keeps to its own limit of calls in the air."""
    with _POOLS_LOCK:
        pool = _POOLS.get(destination)
        if pool is None:
            pool = _POOLS[destination] = ThreadPoolExecutor(IN_FLIGHT, f"drain-{destination}")
        return pool


def _forget_pools() -> None:
    """In a forked child: the parent's pool threads do not exist there."""
    global _POOLS_LOCK
    _POOLS.clear()
    _POOLS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


@dataclass
class _Flight:
    """A batch's call, running in the drain's thread pool until it is recorded."""

    future: Future[tuple[list[DeliveryOutcome], list[DeliveryItem], set[str]]]
    rows: list[Any]
    attempt: str


@dataclass
class DrainStats:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    deferred: int = 0
    finished: list[tuple[str, str, str, str | None, str | None]] = field(default_factory=list)
    more: bool = False
    refused: bool = False  # enough drains of this destination were running already


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
    spread: Callable[[], object] | None = None, again: Callable[[], bool] | None = None,
    idle: Callable[[], bool] | None = None,
) -> DrainStats:
    """Deliver due deliveries of ``destination`` until none are due or the budget is spent.

    ``clock`` gives the store's notion of now (tests drive the retry schedule with it).
    ``spread`` wakes one more drain of this destination (another worker); it is called
    while full batches keep coming and the destination is healthy. ``again`` says whether
    wake-ups came for this destination since it was last asked (``RunningJob.more``): a
    drain that finds nothing due looks once more instead of ending. ``idle`` does other
    work of this worker while the drain only waits for its calls in the air (routing
    that waits for a worker: ``jobs.route_waiting``); True when it did some.
    """
    stats = DrainStats()
    dest = rt.destination(destination)
    if dest is None:
        return stats
    # Several drains, and several calls in the air, only for a destination that answered
    # lately: one never heard from (a fresh start, a webhook that times out) took three
    # workers with three calls each until its first failures came back, and routing
    # waited for a worker (isolation bench: route p99 22 -> 272 ms)
    start = drain_start(rt, destination)
    ok, helper = start.answering, start.helper
    if not rt.is_enabled(destination, rt.switches_at(start.switches)):
        if helper:  # the offer was for a drain that sends
            offer_spread(rt, destination)
        return stats
    timeout = dest.request_timeout_s
    slot = DrainSlot(rt.redis, destination, timeout * 2 + 10)
    most = (MAX_DRAINS if helper else STEADY_DRAINS) if ok else 1
    if not slot.acquire(most):
        stats.refused = True  # the running drain is told to look again when it ends
        return stats
    run = Drain(rt, dest, destination, clock, stats, helper=helper, healthy=ok, again=again,
                idle=idle)
    try:
        run.run(budget_s, spread, slot)
    finally:
        try:
            if slot.release():  # a wake-up was refused meanwhile: work may be waiting
                stats.more = True
            if run.yielded:  # the steady drain looks again when it ends (it may be ending)
                slot.ask_again()
        except redis.RedisError:  # the slot expires on its own
            stats.more = True
    return stats


def send_leased(
    rt: Runtime, destination: str, attempt: str, rows: list[Any], leads: dict[str, Lead],
) -> DrainStats:
    """Send deliveries that routing leased for ``attempt`` (the api's express path,
    ``process_received(send_now=...)``) and record the outcomes, as a drain records its
    batch: the same request, the same record and retry schedule, the same health notes.

    What a drain adds before its request is left out: its slot among the destination's
    drains, the steady role, the rate turn (the express path only takes destinations with
    no rate limit to speak of, healthy, breaker closed and switched on), the lease and the
    read of the leads (done, or in hand). A 429's hold still applies: the plugin's
    request slot waits it out. Should the process die, the lease runs out as a drain's would.
    """
    stats = DrainStats()
    dest = rt.destination(destination)
    if dest is None:
        return stats
    run = Drain(rt, dest, destination, time.time, stats)
    items = [item_of(row, leads[row.lead_id], attempt) for row in rows]
    run.record(rows, attempt, *run.attempt(items, set(), attempt))
    return stats


class Drain:
    """One drain's loop over batches of one destination."""

    def __init__(
        self, rt: Runtime, dest: Destination[Any], name: str, clock: Callable[[], float],
        stats: DrainStats, *, helper: bool = False, healthy: bool = True,
        again: Callable[[], bool] | None = None, idle: Callable[[], bool] | None = None,
    ) -> None:
        self.rt, self.dest, self.name, self.clock, self.stats = rt, dest, name, clock, stats
        self.idle = idle
        #: asked for by a drain with a full backlog: it waits its turn beside the others
        self.helper = helper
        self.again = again
        self.token = new_id()
        self.backlog = helper  # the last lease was a full batch
        #: calls of this drain in the air at once: several only while the destination
        #: answers (one that times out on every call gets one at a time, as before)
        self.in_flight = IN_FLIGHT if healthy else 1
        self.flights: list[_Flight] = []
        self.sent_ok = False  # the last call recorded delivered something
        self.yielded = False  # gave way to the drain sending the steady trickle
        self.limits = dest.effective_limits()
        self.limiter = RateLimiter(rt.redis)
        self.timeout = dest.request_timeout_s
        self.horizon = rt.config.hub.retry_horizon_hours * 3600.0

    def slot(self) -> AbstractContextManager[None]:
        """One request slot around a call, unless the plugin counts its own requests."""
        if self.dest.has(Capability.COUNTS_OWN_REQUESTS):
            return nullcontext()
        return self.dest.context.request_slot()

    def run(self, budget_s: float, spread: Callable[[], object] | None, slot: DrainSlot) -> None:
        """Batches until none is due, the budget is spent or the destination says stop.
        Calls still in the air when it ends are waited for and recorded."""
        try:
            self.loop(budget_s, spread, slot, _calls_pool(self.name))
        finally:
            if not self.helper:  # another drain may take over while these end
                stop_waiting(self.rt, self.name, self.token)
            while self.flights:
                self.settle(self.flights.pop(0))

    def limit(self, budget_s: float) -> float:
        """How long the drain may run: its budget, or while calls of its are in the air, up
        to one request timeout more. It must wait for them before it ends anyway; ending at
        once let another drain take over the steady trickle while this one sat out its
        calls, and under ``leadhub serve`` that was both workers, with routing waiting up to
        3 s (webhook → deal, 20 % faults: route p99 2.8 s)."""
        return budget_s + (self.timeout if self.flights else 0.0)

    def work_meanwhile(self) -> bool:
        """Do the worker's other work (``idle``) while this drain has only its calls in the
        air to wait for; True when some was done (the drain then looks again at once)."""
        return self.idle is not None and not all(f.future.done() for f in self.flights) \
            and self.idle()

    def steady(self, seconds: float) -> bool:
        """Whether this drain is (still) the one sending the destination's steady trickle,
        for at least ``seconds`` more; helpers for a backlog always may. One that is not
        gives its worker back, asking the steady one to look again when it ends (it may be
        ending right now, with this drain's work not leased)."""
        held = min(seconds, STEADY_MOST_S)  # a killed drain's role outlives it this long at most
        if self.helper or become_waiter(self.rt, self.name, self.token, held):
            return True
        self.yielded = True
        return False

    def loop(
        self, budget_s: float, spread: Callable[[], object] | None, slot: DrainSlot,
        pool: ThreadPoolExecutor,
    ) -> None:
        started = time.monotonic()
        first = True
        rate, burst = self.limits.requests_per_second, self.limits.burst
        hedge = max(1 / rate, HEDGE_MIN_S) if rate and math.isfinite(rate) else self.timeout
        while time.monotonic() - started < self.limit(budget_s):
            for flight in [f for f in self.flights if f.future.done()]:
                self.flights.remove(flight)
                if not self.settle(flight):
                    return
            if not self.steady(STEADY_KEEP_S):
                return  # another drain sends this destination's trickle
            if len(self.flights) >= self.in_flight:
                if not self.work_meanwhile():
                    wait([f.future for f in self.flights], return_when=FIRST_COMPLETED)
                continue
            # the job looked before it started; later, another drain may have opened it
            if not first and breaker_open(self.rt, self.name):
                return
            if self.flights and waiting_for_slot(self.name):
                # a call in the air still waits for rate slots (one request per lead): a
                # further batch would only queue behind it, past its time
                wait([f.future for f in self.flights], timeout=hedge, return_when=FIRST_COMPLETED)
                continue
            # Lease right before the request may leave: items leased early would wait out
            # the rate limit (and other drains' turns) already taken from the queue. With a
            # backlog, lease as long before the slot as leasing takes: the request then
            # leaves on its slot instead of one lease later (a lease of 15-50 ms after each
            # 143 ms slot was 10-25 % of amoCRM's budget left unused).
            ready = self.limiter.ready_in(self.name, rate, burst)
            early = _PREP_S.get(self.name, PREP_S) if self.backlog else 0.0
            if ready > early or not self.limiter.claim_turn(self.name, rate, burst):
                pause = max(ready - early, 0.005)
                if time.monotonic() - started + pause >= self.limit(budget_s):
                    break
                if not self.steady(pause + STEADY_KEEP_S):
                    return
                time.sleep(min(pause, STEADY_MOST_S))
                continue
            first = False
            leasing = time.monotonic()
            now = self.clock()
            attempt = new_id()
            with self.rt.db.begin() as conn:
                rows = lease_batch(conn, self.name, self.limits.batch_size, now,
                                   self.timeout * 2 + 10, attempt)
            if not rows:
                if not self.flights:
                    if self.again is None:
                        return
                    # While it waits for a wake-up (``RunningJob.more``), another drain (the
                    # api's express drain) may send the trickle: holding the role, this one
                    # made that drain give way, and its lead waited out the whole wait.
                    if not self.helper:
                        stop_waiting(self.rt, self.name, self.token)
                    if self.again():  # routed since this lease: look again, not a new job
                        continue
                    return
                if not self.work_meanwhile():
                    wait([f.future for f in self.flights], timeout=hedge,
                         return_when=FIRST_COMPLETED)
                continue  # it waits for them anyway: meanwhile, whatever comes is sent
            self.backlog = len(rows) >= self.limits.batch_size
            with self.rt.reader.connect() as conn:
                items = load_items(conn, rows, attempt)
                waiting = originals_pending(
                    conn, {i.lead.duplicate_of for i in items
                           if i.lead.duplicate_of and i.duplicate_of_external_id is None},
                    self.name)
            took = time.monotonic() - leasing
            _PREP_S[self.name] = min(PREP_MAX_S, 0.7 * _PREP_S.get(self.name, PREP_S) + 0.3 * took)
            flight = _Flight(pool.submit(self.attempt, items, waiting, attempt), rows, attempt)
            # Normally answered well before the next slot, and recorded at once; a call
            # still unanswered then (a request hanging until its timeout) stays in the air
            # while this drain sends the next batch, instead of stopping the destination
            # (at 20 % faults one request in fifteen hung for 3 s).
            if wait([flight.future], timeout=hedge).not_done:
                self.flights.append(flight)
                continue
            if not self.settle(flight):
                return
            running = slot.refresh()
            if len(rows) < self.limits.batch_size and running > 1 and not self.flights:
                # No backlog, and another drain of this destination runs: it sends the
                # trickle; this one gives its worker back (routing and other destinations
                # need it more than a drain waiting for its turn). Three drains each
                # holding a worker to sleep between slots doubled another destination's
                # p99 while a third one timed out (bench/delivery.py, isolation).
                return
            if (self.sent_ok and spread is not None and len(rows) >= self.limits.batch_size
                    and running < MAX_DRAINS):
                offer_spread(self.rt, self.name)
                spread()
        self.stats.more = True

    def settle(self, flight: _Flight) -> bool:
        """Record a call's outcomes; False when the drain should give its worker back."""
        return self.record(flight.rows, flight.attempt, *flight.future.result())

    def record(self, rows: list[Any], attempt: str, outcomes: list[DeliveryOutcome],
               deferred: list[DeliveryItem], unsent: set[str]) -> bool:
        """Record what ``attempt`` did with ``rows`` (leased as they were), and tell the
        shared state; False when the drain should give its worker back."""
        self.sent_ok = any(o.error is None for o in outcomes)
        answered_before = answering(self.rt, self.name, self.clock())
        record = self.build_record(
            {r.id: r for r in rows}, outcomes, deferred, unsent,
            quick=answered_before or self.sent_ok, now=self.clock())
        record_attempt(self.rt.db, record, attempt, self.clock())
        _log_failures(self.name, record, len(outcomes), self.clock())
        return self.after(outcomes, answered_before)

    # ------------------------------------------------------------ one attempt

    def attempt(
        self, items: list[DeliveryItem], waiting: set[str], attempt: str,
    ) -> tuple[list[DeliveryOutcome], list[DeliveryItem], set[str]]:
        """Look up, deliver: the outcomes, the items given back untried, and the uncertain
        items whose look-up failed (nothing was sent for them)."""
        deferred = [i for i in items if i.lead.duplicate_of in waiting]
        items = [i for i in items if i not in deferred]
        # a duplicate whose original never reached this destination has nothing to annotate
        orphans = [i for i in items if i.lead.duplicate_of and i.duplicate_of_external_id is None]
        outcomes = [DeliveryOutcome(i.delivery_id, external_id=None) for i in orphans]
        items = [i for i in items if i not in orphans]
        found, unresolved = self.look_up([i for i in items if i.uncertain])
        outcomes += [DeliveryOutcome(i.delivery_id, external_id=found[i.delivery_id])
                     for i in items if i.delivery_id in found]
        # Nothing is sent for an uncertain item whose fate is still unknown: it fails (one
        # quick try, not a backoff step); the rest of the batch goes on.
        outcomes += [DeliveryOutcome(i, error=err) for i, err in unresolved.items()]
        unsent = set(unresolved)
        todo = [i for i in items if i.delivery_id not in found and i.delivery_id not in unsent]
        if not todo:
            return outcomes, deferred, unsent
        mark_sending(self.rt.db, [i.delivery_id for i in todo if i.uncertain],
                     self.clock() + self.timeout * 2 + 10, attempt)
        with self.slot():  # after the commit above: the slot is taken when the request leaves
            result, err = _call(self.dest.deliver, todo)
        if err is not None:
            outcomes += [DeliveryOutcome(i.delivery_id, error=err) for i in todo]
        else:
            outcomes += _complete(todo, result)
        return outcomes, deferred, unsent

    def look_up(
        self, uncertain: list[DeliveryItem],
    ) -> tuple[dict[str, str], dict[str, Exception]]:
        """External ids of the uncertain items that did land, and the items whose look-up
        failed with its error (both by delivery id). Items are looked up by the attempt that may have created
        them, one ``lookup_many`` call per attempt (amoCRM: one request finds what an
        interrupted batch of 50 made), so one failed look-up leaves the others' answers
        standing. A destination declaring ``LOOKUP`` alone is asked item by item; one
        declaring neither cannot find anything, and its items are sent again (the receiver
        deduplicates on the idempotency key)."""
        found: dict[str, str] = {}
        failed: dict[str, Exception] = {}
        singles = uncertain
        if uncertain and self.dest.has(Capability.BATCH_LOOKUP):
            singles = []
            groups: dict[str | None, list[DeliveryItem]] = {}
            for item in uncertain:
                groups.setdefault(item.previous_attempt_id, []).append(item)
            for group in groups.values():
                with self.slot():
                    many, err = _call(self.dest.lookup_many, group)
                if err is not None:
                    failed.update((i.delivery_id, err) for i in group)
                elif many is None:  # no cheaper way after all
                    singles += group
                else:
                    found.update((k, str(v)) for k, v in many.items() if v)
        if not self.dest.has(Capability.LOOKUP):
            singles = []
        for item in singles:
            with self.slot():
                ext, err = _call(self.dest.lookup, item)
            if err is not None:
                failed[item.delivery_id] = err
            elif ext:
                found[item.delivery_id] = str(ext)
        return found, failed

    # ------------------------------------------------------------ what it means

    def build_record(
        self, rows: dict[str, Any], outcomes: list[DeliveryOutcome], deferred: list[DeliveryItem],
        unsent: set[str], *, quick: bool, now: float,
    ) -> AttemptRecord:
        """Outcomes into store changes. Items that failed together share one jitter draw
        and one quick delay, so they fall due together and stay one batch (unless some
        have spent their quick tries: those wait the long schedule)."""
        record = AttemptRecord()
        factor = jitter_factor()
        # one quick delay for the batch too: the step of its most tried item
        step = max((rows[o.delivery_id].attempts + 1 for o in outcomes if o.error is not None),
                   default=1)
        paused = max((o.error.pause_s for o in outcomes if isinstance(o.error, DestinationPaused)),
                     default=None)
        for out in outcomes:
            row = rows[out.delivery_id]
            record.lead_ids.add(row.lead_id)
            attempts, first = row.attempts + 1, row.first_attempt_at or now
            common = {"b_id": row.id, "b_attempts": attempts, "b_first": first}
            if out.error is None:
                record.delivered.append({**common, "b_ext": out.external_id})
                self.stats.delivered += 1
                self.stats.finished.append((row.lead_id, self.name, "delivered", out.external_id, None))
                continue
            err = out.error
            message = f"{type(err).__name__}: {err}"[:2000]
            if isinstance(err, PermanentError):
                status, next_at = "dead", now
            else:
                retry_after = err.retry_after if isinstance(err, RateLimited) else paused
                decision = decide(attempt=attempts, first_attempt_at=first, now=now,
                                  retry_after=retry_after, horizon_s=self.horizon,
                                  quick=quick, factor=factor, quick_step=step)
                status = "dead" if decision.dead else "failed"
                next_at = decision.next_attempt_at
            # Sent in this attempt: the error says whether it may have landed. A failed
            # look-up sent nothing, and the earlier attempt may still have landed.
            unsure = True if out.delivery_id in unsent else bool(getattr(err, "uncertain", True))
            record.failed.append({**common, "b_status": status, "b_next": next_at,
                                  "b_uncertain": unsure, "b_error": message})
            if status == "dead":
                self.stats.dead += 1
                self.stats.finished.append((row.lead_id, self.name, "dead", None, message))
            else:
                self.stats.failed += 1
        for item in deferred:  # waiting for their original's delivery: not an attempt
            record.deferred[item.delivery_id] = (now + ORIGINAL_WAIT_S, item.uncertain)
            self.stats.deferred += 1
        return record

    def after(self, outcomes: list[DeliveryOutcome], answered_before: bool) -> bool:
        """Tell the shared state what this batch said about the destination; False when the
        drain should give its worker back."""
        errors = [o.error for o in outcomes if o.error is not None]
        paused = [e for e in errors if isinstance(e, DestinationPaused)]
        if paused:
            hold = max(e.pause_s for e in paused)
            log.warning("%s refuses every request for %.0f s: %s", self.name, hold, paused[0])
            open_breaker(self.rt, self.name, hold)
            self.stats.more = False  # the sweeper wakes it when the breaker closes
            return False
        limited = [e for e in errors if isinstance(e, RateLimited)]
        if limited:  # over the limit anyway (another client of the same account?): hold all
            asked = [e.retry_after for e in limited if e.retry_after is not None]
            rate = self.limits.requests_per_second
            base = 1 / rate if rate and math.isfinite(rate) else 0.25
            hold = rate_limit_hold(self.rt, self.name, max(asked, default=None), base_s=base)
            self.limiter.penalize(self.name, hold)
        if not outcomes:
            return True
        if any(o.error is None for o in outcomes):
            note_success(self.rt, self.name)
            return True
        if answered_before:  # flaky, not down: its quick tries come in a few slots
            note_failure(self.rt, self.name)
            return True
        if note_failure(self.rt, self.name) >= BREAKER_AFTER:
            open_breaker(self.rt, self.name)  # down as a whole, not flaky
        else:
            self.stats.more = True  # give the worker back; the next drain tries again
        return False


def _complete(items: list[DeliveryItem], result: Any) -> list[DeliveryOutcome]:
    """One outcome per item; an item the plugin forgot is a retryable, uncertain failure."""
    got = {o.delivery_id: o for o in (result or []) if isinstance(o, DeliveryOutcome)}
    return [
        got.get(i.delivery_id)
        or DeliveryOutcome(i.delivery_id, error=RetryableError("no outcome reported", uncertain=True))
        for i in items
    ]


def _log_failures(destination: str, record: AttemptRecord, tried: int, now: float) -> None:
    """One line per failed batch attempt (not per lead): how many failed, the first error
    (as stored in ``last_error``: a request's method and path, never its query or
    credentials) and when they are tried again; an error line for those given up. The
    logging chain masks any phone or address a receiver echoed into its error."""
    if not record.failed:
        return
    dead = [f for f in record.failed if f["b_status"] == "dead"]
    retried = [f for f in record.failed if f["b_status"] != "dead"]
    if retried:
        wait = max(0.0, min(f["b_next"] for f in retried) - now)
        log.warning("delivery to %s failed for %d of %d item(s), retried in %.1f s: %s",
                    destination, len(retried), tried, wait, retried[0]["b_error"][:300])
    if dead:
        log.error("delivery to %s gave up on %d item(s) (dead): %s",
                  destination, len(dead), dead[0]["b_error"][:300])
