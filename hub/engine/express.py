"""Express delivery: an idle ``leadhub serve`` routes and delivers a lead from the api
process right after its commit, instead of through two RQ hops.

Measured at a steady 40 leads/s into the ``webhook`` destination (``bench/ingest.py
--steady``), a lead spent about two thirds of its webhook → receiver time between the
store and the queue: the wake-up (a Redis marker and an RQ enqueue), the worker picking
the process job up, a second wake-up and RQ job for the drain, each job with RQ's own
bookkeeping. Here the api's wake-up hands a small committed group to one thread of its
own, which runs the same two steps a worker would (``process_received``, then one
``drain`` of each destination that got work) at once.

Nothing about durability changes: the lead and its raw request were committed before
the webhook was answered; routing claims the lead with a lease and a delivery is leased
in the store before its request leaves, exactly as in a worker. An api killed mid-way
leaves those leases to expire, and the scheduler's sweep wakes a worker for them (with
a look-up first where the destination has one).

The queue stays the path for everything else. The api takes a group only when the hub
is idle by its own measure (``ExpressGate``): a small group, a low commit rate, the
express thread free and within its share of time. Under full load the api never takes
on this work. A destination whose rate limit is low (amoCRM's 7 requests/s) never goes
express either: a one-lead request would spend a slot a batch of 50 needs.

Under load the worker sends what its routing leased the same way (``RoutedSends``): the
process job asks routing to lease the new deliveries of the same fast, answering
destinations (up to a batch each) and hands them to threads of its own, then routes on.
A drain job per routed batch had been an RQ job, four Redis round trips, a lease
transaction on SQLite's one write lock and a second validation of every lead: under
``leadhub serve``'s full load into the file destination (``bench/ingest.py --serve``,
alternated runs) the server's CPU per accepted lead went 0.87 → 0.73-0.75 ms in two runs
of three (0.65-0.69 → 0.54-0.62 in another sitting), the accepted rate up 8-20 %. On
threads, a receiver that hangs until its timeout holds up one send, not the routing of
every other destination's leads; while ``PER_DESTINATION`` sends of a
destination are in the air, routing leaves its new deliveries to the drains.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hub.engine.drain import drain, send_leased
from hub.engine.drain_control import answered_key, breaker_key, breaker_open
from hub.engine.jobs import notify_finished, notify_received, wake_drain, wake_process
from hub.engine.process import Leased, process_received
from hub.runtime import SWITCHES_KEY, Runtime, new_switches_version

log = logging.getLogger("leadhub.express")

#: most leads a committed group may hold to go express (a webform's lead is one)
MAX_LEADS = 8
#: committed leads per second (decaying average) above which the api leaves all to the queue
MAX_RATE = 100.0
#: share of a core (CPU time) the express thread may use; beyond it, groups go to the queue
DUTY = 0.5
#: how far ahead of its share the express thread may run (CPU seconds)
SLACK_S = 0.05
#: a destination limited below this many requests/s is left to the worker's batches
MIN_DESTINATION_RATE = 50.0
#: one express drain's budget: the batch it leases, and any that follow right behind
DRAIN_BUDGET_S = 0.2
#: a worker's threads for sending what its routing leased (``RoutedSends``)
SEND_THREADS = 4
#: sends of one destination in the air at once from a worker; beyond, the drains send
PER_DESTINATION = 2
#: how long what ``express_destinations`` read is used again (``Recent``) before it is read
#: again after the work at hand, and how long before it is read before that work
RECENT_S = 0.25
RECENT_LATE_S = 1.0


@dataclass
class ExpressGate:
    """Whether the api takes a committed group itself: the hub's load as the api sees it.

    ``rate`` is an exponentially decaying count of committed leads (time constant 1 s),
    so it reads leads/s; ``debt`` is the express thread's CPU time beyond its ``duty``
    share (CPU, not wall time: most of a group's time is spent waiting on the store and
    the receiver, which costs the api's requests nothing).
    Pure: the caller passes the time, so tests drive it.
    """

    max_leads: int = MAX_LEADS
    max_rate: float = MAX_RATE
    duty: float = DUTY
    slack_s: float = SLACK_S
    rate: float = 0.0
    debt: float = 0.0
    last: float = -math.inf

    def _decay(self, now: float) -> None:
        elapsed = max(0.0, now - self.last)
        if math.isfinite(elapsed):
            self.rate *= math.exp(-elapsed)
            self.debt = max(0.0, self.debt - elapsed * self.duty)
        else:
            self.rate, self.debt = 0.0, 0.0
        self.last = now

    def admit(self, leads: int, waiting: int, now: float) -> bool:
        """Count a committed group of ``leads``; True when the express thread takes it,
        with ``waiting`` leads handed to it already and not yet taken up."""
        self._decay(now)
        self.rate += leads
        if leads < 1 or waiting + leads > self.max_leads:
            return False
        return self.rate <= self.max_rate and self.debt <= self.slack_s

    def done(self, worked_s: float, now: float) -> None:
        """The express thread finished a group, which took ``worked_s`` of its CPU time."""
        self._decay(now)
        self.debt += worked_s


def _fast(rt: Runtime, destination: str) -> bool:
    """Configured, with no rate limit low enough for a one-lead request to cost a batch
    its slot."""
    dest = rt.destination(destination)
    if dest is None:
        return False
    rate = dest.effective_limits().requests_per_second
    return rate is None or rate >= MIN_DESTINATION_RATE


def goes_express(rt: Runtime, destination: str) -> bool:
    """A destination an express drain may send to now: fast, and its breaker closed
    (``drain`` itself skips a disabled one)."""
    return _fast(rt, destination) and not breaker_open(rt, destination)


def express_destinations(rt: Runtime) -> set[str]:
    """The destinations whose new deliveries routing may lease for the express thread to
    send at once: fast, switched on, breaker closed, and answering lately (one never heard
    from, or failing, is left to a drain, which sends it one call at a time). One Redis
    round trip."""
    fast = [name for name in rt.config.destinations if _fast(rt, name)]
    if not fast:
        return set()
    pipe = rt.redis.pipeline(transaction=False)
    pipe.get(SWITCHES_KEY)
    for name in fast:
        pipe.exists(breaker_key(name))
        pipe.exists(answered_key(name))
    version, *states = pipe.execute()
    if version is None:  # none since Redis started: this one's (as ``drain_start`` does)
        rt.redis.set(SWITCHES_KEY, new_switches_version(), nx=True)
        version = rt.redis.get(SWITCHES_KEY)
        if version is None:
            return set()
    switches = rt.switches_at(version)
    return {name for n, name in enumerate(fast)
            if not states[2 * n] and states[2 * n + 1] and rt.is_enabled(name, switches)}


class Recent:
    """``express_destinations``, read again at most every ``RECENT_S``, or at once after
    this process flipped an admin switch (``Runtime.note_switch``). The Redis round trip
    was 0.4 ms of an express lead's 5 ms (steady 40/s, timing marks at p50), and 5 % of a
    worker's CPU under load, once per routed batch. What it costs: for a quarter of a second a
    breaker that just opened, or a switch flipped by another process, is not seen, and a
    request or two goes out as a running drain's next batch would (a failure is recorded
    and retried as any other)."""

    def __init__(self, rt: Runtime, fresh_s: float = RECENT_S,
                 late_s: float = RECENT_LATE_S) -> None:
        self.rt = rt
        self.fresh_s = fresh_s
        self.late_s = late_s
        self._read: tuple[float, int, frozenset[str]] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> frozenset[str]:
        """What was read last, unless it is ``late_s`` old or this process flipped a
        switch since: then read now."""
        now = time.monotonic()
        with self._lock:
            read = self._read
            if read is not None and now - read[0] < self.late_s and read[1] == self.rt.switch_notes:
                return read[2]
        return self._read_now()

    def refresh(self) -> None:
        """Read again if what was read is ``fresh_s`` old: called once the work that
        used it is done, so the round trip is off a lead's path (at a steady 40 leads/s,
        read before the work, it was 0.25 ms of an express lead's time at p90). Under
        steady traffic what is used is then at most ``fresh_s`` and one group's work old."""
        with self._lock:
            read = self._read
        if read is None or time.monotonic() - read[0] >= self.fresh_s:
            self._read_now()

    def _read_now(self) -> frozenset[str]:
        now = time.monotonic()
        notes = self.rt.switch_notes
        found = frozenset(express_destinations(self.rt))
        with self._lock:
            self._read = (now, notes, found)
        return found


def deliver_now(rt: Runtime, leads: int,
                fast: Callable[[], Collection[str]] | None = None) -> None:
    """Route up to ``leads`` received leads, send what routing leased for the express
    thread (``express_destinations``, or as ``fast`` read them lately: ``Recent``), and
    drain each destination that has more; where the express
    path does not deliver, wake the queue as a worker would. Raises nothing: whatever
    fails is left to a worker (leases expire; the sweep wakes it).

    At a steady 40 leads/s into the ``webhook`` destination a lead spent ~2 ms between
    its routing and its request in a drain: its start (a Redis round trip), its slot,
    steady role and rate turn (three more), the lease (a write transaction) and the read
    of the lead just routed. Leased in the routing transaction and sent from memory, the
    same request is recorded the same way (``send_leased``).
    """
    # One more than handed over: a full claim means older leads wait too (routed oldest
    # first), and the worker routes the rest. A claim of exactly ``leads`` woke a process
    # job for every express lead (measured: 1.3 ms of its time, and a job for nothing).
    limit = max(1, leads) + 1
    try:
        send_now = express_destinations(rt) if fast is None else fast()
        done = process_received(rt, limit=limit, send_now=send_now)
    except Exception:
        log.exception("express routing failed; the queue takes over")
        wake_process(rt)
        return
    if len(done.leads) >= limit:
        wake_process(rt)
    for dest, leased in sorted(done.leased.items()):
        if not send_routed(rt, dest, leased):
            done.unleased.add(dest)
    for dest in sorted(done.for_drains()):
        try:
            if not goes_express(rt, dest):
                wake_drain(rt, dest)
                continue
            stats = drain(rt, dest, budget_s=DRAIN_BUDGET_S, spread=_waker(rt, dest))
            if stats.more:
                wake_drain(rt, dest)
            if stats.finished:
                notify_finished(rt, stats.finished)
        except Exception:
            log.exception("express delivery to %s failed; the queue takes over", dest)
            wake_drain(rt, dest)
    notify_received(rt, done.leads)


def send_routed(rt: Runtime, destination: str, leased: Leased) -> bool:
    """Send what routing leased to ``destination`` and record it (``send_leased``); a
    failed request's retry, due in a moment, is a drain's: woken here. False when the send
    itself broke (logged): its leases run out and a drain takes them up."""
    try:
        stats = send_leased(rt, destination, leased.attempt, leased.rows, leased.leads)
        if stats.more:
            wake_drain(rt, destination)
        if stats.finished:
            notify_finished(rt, stats.finished)
        return True
    except Exception:
        log.exception("sending what routing leased to %s failed; the queue takes over", destination)
        return False


class RoutedSends:
    """A worker's sends of what its routing leased (module doc): on ``threads`` threads of
    this process, at most ``per_destination`` of one destination at a time."""

    def __init__(self, rt: Runtime, threads: int = SEND_THREADS,
                 per_destination: int = PER_DESTINATION) -> None:
        self.rt = rt
        self.per_destination = per_destination
        self.fast = Recent(rt, late_s=RECENT_S)  # read before the routing that uses it
        self._pool = ThreadPoolExecutor(threads, "leadhub-send")
        self._cond = threading.Condition()
        self._busy: Counter[str] = Counter()  # sends in the air, by destination

    def destinations(self) -> set[str]:
        """Where routing may lease new deliveries for these threads to send now: the
        express destinations (``express_destinations``, as read lately: ``Recent``), less
        those with all their sends in the air."""
        fast = self.fast()
        with self._cond:
            return {d for d in fast if self._busy[d] < self.per_destination}

    def submit(self, leased: dict[str, Leased]) -> None:
        """Send each destination's leased deliveries on a thread; returns at once."""
        for dest, batch in sorted(leased.items()):
            with self._cond:
                self._busy[dest] += 1
            try:
                self._pool.submit(self._send, dest, batch)
            except RuntimeError:  # shut down (the process exits): send it here
                self._send(dest, batch)

    def _send(self, destination: str, batch: Leased) -> None:
        try:
            if not send_routed(self.rt, destination, batch):
                wake_drain(self.rt, destination)
        except Exception:  # the wake-up (Redis): the sweep wakes the drain when leases run out
            log.exception("waking the drain of %s failed", destination)
        finally:
            with self._cond:
                self._busy[destination] -= 1
                self._cond.notify_all()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the sends in the air; True when none is left."""
        with self._cond:
            return self._cond.wait_for(lambda: not any(self._busy.values()), timeout_s)


_SENDS: RoutedSends | None = None
_SENDS_LOCK = threading.Lock()


def routed_sends(rt: Runtime) -> RoutedSends:
    """This process's ``RoutedSends`` for ``rt`` (the worker's runtime, ``current()``)."""
    global _SENDS
    with _SENDS_LOCK:
        if _SENDS is None or _SENDS.rt is not rt:
            _SENDS = RoutedSends(rt)
        return _SENDS


def _waker(rt: Runtime, destination: str) -> Callable[[], bool]:
    return lambda: wake_drain(rt, destination, helper=True)


class Express:
    """The api's express thread: takes small committed groups (``offer``) while the hub is idle."""

    def __init__(self, rt: Runtime, gate: ExpressGate | None = None) -> None:
        self.rt = rt
        self.gate = gate or ExpressGate()
        self.fast = Recent(rt)
        self._cond = threading.Condition()
        self._waiting = 0  # leads of the groups handed over, not yet taken up
        self._closing = False
        self._thread: threading.Thread | None = None

    def offer(self, leads: int) -> bool:
        """Hand a committed group of ``leads`` leads to the express thread; False when the
        hub is not idle (or the thread is closing): the caller wakes the queue. Groups that
        come while the thread works are taken up together when it is done."""
        with self._cond:
            if self._closing or not self.gate.admit(leads, self._waiting, time.monotonic()):
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="leadhub-express", daemon=True)
                self._thread.start()
            self._waiting += leads
            self._cond.notify()
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if not self._waiting:
                    return
                leads, self._waiting = self._waiting, 0
            started = time.thread_time()
            try:
                deliver_now(self.rt, leads, self.fast)
            except Exception:  # a plugin's hook: the thread must live on (the sweep repairs)
                log.exception("express delivery failed")
            try:
                self.fast.refresh()
            except Exception as exc:  # Redis: the next group reads it before its work
                log.warning("reading the express destinations failed: %s", type(exc).__name__)
            finally:
                with self._cond:
                    self.gate.done(time.thread_time() - started, time.monotonic())

    def close(self, timeout_s: float = 15.0) -> None:
        """Finish the group in hand (its leases would otherwise wait to expire), then stop."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify()
        if thread is not None:
            thread.join(timeout_s)
