"""RQ job entry points: module-level functions taking names, not objects (JSON serializer).

Each job clears its wake-up marker first, so work that arrives while it runs wakes it
again; each is idempotent, so a duplicate execution (RQ's known failure mode) is harmless.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from rq import Queue

from hub.engine.drain import STEADY_KEEP_S, drain
from hub.engine.drain_control import breaker_open
from hub.engine.process import BATCH, process_received
from hub.models import Lead
from hub.plugins import notify
from hub.queue import (
    PROCESS_QUEUE,
    RECONCILE_QUEUE,
    RunningJob,
    clear_wake,
    destination_queue,
    wake,
)
from hub.runtime import Runtime, current

if TYPE_CHECKING:
    from hub.engine.express import RoutedSends

log = logging.getLogger("leadhub.jobs")

PROCESS_JOB = "hub.engine.jobs.process_job"
DRAIN_JOB = "hub.engine.jobs.drain_job"
POLL_JOB = "hub.engine.jobs.poll_job"


def wake_process(rt: Runtime) -> bool:
    return wake(rt.redis, PROCESS_QUEUE, PROCESS_JOB)


def wake_drain(rt: Runtime, destination: str, *, helper: bool = False) -> bool:
    """``helper``: a drain of its own even while one runs (a backlog's helper, which a
    running drain taking the wake-up would never start)."""
    return wake(rt.redis, destination_queue(destination), DRAIN_JOB, destination, taken=not helper)


PROCESS_BUDGET_S = 0.5  # a process job yields after this, so drains get the worker too
#: while leads keep coming, how long a process job lets them gather between two routing
#: transactions (``gather_pause``)
GATHER_S = 0.01


def gather_pause(routed: int, before: int, full: int = BATCH) -> float:
    """How long ``process_job`` waits before its next look, having just routed ``routed``
    leads after a look that found ``before``.

    Under a sustained stream every look finds the few leads committed while the last
    batch was routed, so routing ran as many small transactions as it could: under
    ``leadhub serve``'s full load into the file destination (``bench/ingest.py --serve``,
    two cores) ~19 leads each, the workers holding SQLite's one write lock for two thirds
    of the run and the api's group commits waiting their turn. Most of a routing
    transaction's cost is per transaction (the claim, the dedup and destination reads,
    three writes, the lock itself), so letting 10 ms of leads gather first halved the
    transactions (~1,030 -> ~530 per 20,000 leads) and, in three alternated pairs, took
    the accepted rate 1,189-1,450 -> 1,318-1,547 leads/s and the server's CPU per lead
    down 9-11 %. A lone lead, or the first batch of a burst, is routed at once: the pause
    starts only once two looks in a row found leads; a full batch (a backlog) goes on at
    once too."""
    if routed == 0 or before == 0 or routed >= full:
        return 0.0
    return GATHER_S


def process_job() -> int:
    """Route received leads, batch by batch, for at most ``PROCESS_BUDGET_S``; send what
    routing leased to fast destinations on threads of this process (``RoutedSends``) and
    wake the drains of the rest. Under a steady load there is always another lead to route: a
    job that looped until none was left kept ``leadhub serve``'s one worker from ever
    running a drain (on PostgreSQL nothing was delivered while the load lasted). With work
    left it wakes its own queue again, behind the drains it woke. While it runs it takes
    the queue's wake-ups (``RunningJob``): a commit meanwhile makes it look once more
    rather than start a job of its own."""
    from hub.engine.express import routed_sends  # express imports this module

    rt = current()
    sends = routed_sends(rt)
    run = RunningJob(rt.redis, PROCESS_QUEUE)
    run.start()
    total = 0
    started = time.monotonic()
    left = False
    before = 0  # leads the previous look found
    try:
        while True:
            if time.monotonic() - started >= PROCESS_BUDGET_S:
                left = True
                return total
            routed = route_once(rt, sends)
            if not routed:
                before = 0
                if run.more():
                    continue
                return total
            total += routed
            pause = gather_pause(routed, before)
            before = routed
            if pause:
                time.sleep(pause)
    finally:
        if run.finish() or left:
            wake_process(rt)


def route_once(rt: Runtime, sends: RoutedSends) -> int:
    """One routing transaction (up to a batch of received leads); what it leased for fast
    destinations goes to ``sends``, the other destinations' drains are woken. How many
    leads it routed."""
    done = process_received(rt, read_first=True, send_now=sends.destinations())
    if not done.leads:
        return 0
    sends.submit(done.leased)
    for dest in sorted(done.for_drains()):
        wake_drain(rt, dest)
    notify_received(rt, done.leads)
    return len(done.leads)


def route_waiting(rt: Runtime) -> bool:
    """Route one batch when a routing job is queued for a worker (all of them busy); True
    when it routed any. For a drain whose calls are still in the air and that has nothing
    to lease: it only waits for them, up to a request timeout (a CRM that hangs). Under
    ``leadhub serve``'s two workers, with 20 % amoCRM faults at 100 leads/s, both could
    wait so while the leads they would carry waited to be routed (route p99 3.4 s)."""
    from hub.engine.express import routed_sends  # express imports this module

    try:
        if not rt.redis.llen(_process_queue_key(rt)):
            return False
        return route_once(rt, routed_sends(rt)) > 0
    except Exception:  # the store or Redis: the queued routing job takes it up
        log.exception("routing while a drain waited failed")
        return False


def _process_queue_key(rt: Runtime) -> str:
    return str(Queue(PROCESS_QUEUE, connection=rt.redis).key)


def notify_received(rt: Runtime, leads: list[Lead]) -> None:
    """``leadhub_lead_received`` for routed leads; each plugin's exception is logged, never
    stops routing."""
    for lead in leads:
        notify(rt.pm, "leadhub_lead_received", lead=lead, source=lead.source)


def reconcile_job() -> int:
    """Run queued reconcile runs, oldest first, until none is left; a run another worker
    took first is skipped. A failed run is recorded as failed (and logged), not retried:
    the admin or the next firing starts another."""
    from hub.reconcile.run import RunTaken, run_job
    from hub.store import reconcile as runs

    rt = current()
    clear_wake(rt.redis, RECONCILE_QUEUE)
    done = 0
    while True:
        with rt.reader.connect() as conn:
            queued = runs.next_queued(conn)
        if queued is None:
            return done
        run_id, job = queued
        try:
            run_job(rt, job, run_id=run_id)
            done += 1
        except RunTaken:
            continue  # another worker took it
        except Exception:  # recorded on the run by run_job
            log.exception("reconcile run %s of %s failed", run_id, job)


def drain_job(destination: str) -> int:
    """Drain one destination; while it runs, wake-ups of it make it look again (``RunningJob``)
    instead of each starting a job that would only give way to it."""
    rt = current()
    # Its mark lasts as long as the steady role without renewal: a drain held up by calls
    # in the air past their slots (a CRM that hangs) stops taking wake-ups as soon as
    # another drain may take the trickle over, so the wake-up starts that drain
    run = RunningJob(rt.redis, destination_queue(destination), destination, ttl_s=STEADY_KEEP_S)
    run.start()
    more = False
    try:
        if breaker_open(rt, destination):  # the sweeper wakes it again when the breaker closes
            return 0
        stats = drain(rt, destination, spread=lambda: wake_drain(rt, destination, helper=True),
                      again=run.more, idle=lambda: route_waiting(rt))
        more = stats.more
        if stats.finished:
            notify_finished(rt, stats.finished)
        return stats.delivered
    finally:
        if run.finish() or more:
            wake_drain(rt, destination)


def notify_finished(rt: Runtime, finished: list[tuple[str, str, str, str | None, str | None]]) -> None:
    """``leadhub_delivery_finished`` for a drain's finished deliveries; the leads are read
    in one query, and only when some plugin listens."""
    from hub.engine.leads import get_leads

    if not rt.pm.hook.leadhub_delivery_finished.get_hookimpls():
        return
    leads = get_leads(rt, list({lead_id for lead_id, *_ in finished}))
    for lead_id, dest, status, ext, err in finished:
        lead = leads.get(lead_id)
        if lead is None:
            continue
        notify(rt.pm, "leadhub_delivery_finished",
               lead=lead, destination=dest, status=status, external_id=ext, error=err)


def poll_job(source: str) -> int:
    """Poll one polling source (a mailbox) until it has nothing new; the leads it took."""
    from hub.engine.poll import POLL_QUEUE, poll_source  # poll imports this module

    rt = current()
    clear_wake(rt.redis, POLL_QUEUE, source)
    return len(poll_source(rt, source).lead_ids)
