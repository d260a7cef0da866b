"""When reconcile runs happen: the cron ``schedule`` of each job, and the queue of runs.

The scheduler (``hub/worker.py``) ticks this; a worker runs what it queues
(``hub.engine.jobs.reconcile_job``). Like the rest of the hub, the truth is in the store: a
run is a ``queued`` row first and a Redis wake-up second, so a lost wake-up only delays a
run until the next tick, and a run whose worker died is queued again
(``hub/store/reconcile.py`` ``requeue_stalled``).

A cron firing is identified by the job and the fire time (the run's id derives from both),
so two schedulers running side by side queue it once. Cron expressions are read by
croniter in ``[hub] timezone``: "0 6 * * *" is six in the morning where the books are kept.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy.exc import IntegrityError

from hub.queue import RECONCILE_QUEUE, wake
from hub.runtime import Runtime
from hub.store import reconcile as store

log = logging.getLogger("leadhub.reconcile")

RECONCILE_JOB = "hub.engine.jobs.reconcile_job"
#: A run reads whole accounts page by page within their rate limits: hours, not minutes.
RUN_TIMEOUT_S = 6 * 3600
TICK_S = 10.0


def next_fire(expr: str, after: float, timezone: str) -> float:
    """The first time ``expr`` fires after ``after`` (epoch seconds), read in ``timezone``."""
    start = datetime.fromtimestamp(after, ZoneInfo(timezone))
    return float(croniter(expr, start).get_next(float))


def fire_id(job: str, fire: float) -> str:
    """The run id of one cron firing: the same in every scheduler process."""
    return "cron" + hashlib.sha256(f"{job}\0{fire:.0f}".encode()).hexdigest()[:28]


def wake_reconcile(rt: Runtime) -> bool:
    return wake(rt.redis, RECONCILE_QUEUE, RECONCILE_JOB, job_timeout=RUN_TIMEOUT_S)


class ReconcileSchedule:
    """Queues runs whose cron time came, requeues stalled ones, wakes a worker for them."""

    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.time) -> None:
        self.rt, self.clock = rt, clock
        self.started = clock()
        self.last_tick = 0.0

    def tick(self) -> list[str]:
        """Ids of the runs this tick queued for their schedule (tests read them)."""
        now = self.clock()
        if now - self.last_tick < TICK_S:
            return []
        self.last_tick = now
        fired: list[str] = []
        timezone = self.rt.config.hub.timezone
        with self.rt.db.begin() as conn:
            for name, job in sorted(self.rt.config.reconcile.items()):
                if not job.schedule:
                    continue
                base = store.last_run_created(conn, name) or self.started
                fire = next_fire(job.schedule, base, timezone)
                if fire > now:
                    continue
                run_id = fire_id(name, fire)
                try:
                    with conn.begin_nested():
                        store.create_run(conn, name, now=now, run_id=run_id)
                    fired.append(run_id)
                except IntegrityError:  # another scheduler queued this firing first
                    continue
            queued = store.requeue_stalled(conn, now)
        if queued:
            wake_reconcile(self.rt)
        if fired:
            log.info("reconcile runs queued by schedule", extra={"runs": fired})
        return fired
