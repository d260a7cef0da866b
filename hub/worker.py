"""Running workers and the scheduler: RQ ``SimpleWorker``s (optionally a ``WorkerPool``)
on the process queue and every destination's queue, and the sweep loop.

``SimpleWorker`` runs jobs in the worker process itself: a fork per job would cap a
worker at ~50 jobs/s (FIELD-NOTES). Crash safety does not depend on RQ: a job killed
mid-way leaves leases in the store, and the scheduler's sweep re-enqueues the work.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer
from rq.worker_pool import WorkerPool

from hub.config import HubConfig
from hub.engine.poll import POLL_QUEUE, PollSchedule, polling_source_names
from hub.engine.retention import RetentionSchedule
from hub.engine.sweeper import sweep
from hub.queue import PROCESS_QUEUE, RECONCILE_QUEUE, connect, destination_queue
from hub.runtime import Runtime, current

log = logging.getLogger("leadhub.worker")


def queue_names(config: HubConfig) -> list[str]:
    """Routing first, then each destination's own queue, taken in turn; polls last."""
    polls = [POLL_QUEUE] if polling_source_names(config) else []
    reconcile = [RECONCILE_QUEUE] if config.reconcile else []
    return [PROCESS_QUEUE, *(destination_queue(d) for d in sorted(config.destinations)), *polls,
            *reconcile]


class HubWorker(SimpleWorker):
    """A SimpleWorker that builds this process's runtime before its first job."""

    def work(self, *args: Any, **kwargs: Any) -> bool:
        current()
        # the runtime lives as long as the process: keep it out of every full collection
        # (as the api does; a 35-40 ms pause per gen-2 collection otherwise)
        gc.collect()
        gc.freeze()
        return bool(super().work(*args, **kwargs))


def run_worker(redis_url: str, config: HubConfig, processes: int = 1, burst: bool = False) -> None:
    """Work until stopped; on a Redis outage wait and reconnect instead of dying."""
    names = queue_names(config)
    if processes > 1:
        pool = WorkerPool(
            names, connection=connect(redis_url), num_workers=processes,
            worker_class=HubWorker, serializer=JSONSerializer,
        )
        pool.start()
        return
    while True:
        conn = connect(redis_url)
        try:
            queues = [Queue(n, connection=conn, serializer=JSONSerializer) for n in names]
            worker = HubWorker(queues, connection=conn, serializer=JSONSerializer)
            worker.work(burst=burst, dequeue_strategy="round_robin", logging_level="WARNING")
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("redis unavailable (%s); reconnecting", type(exc).__name__)
            time.sleep(1)


class Scheduler:
    """The sweep loop, the polls of polling sources, the retention purge and the reconcile
    jobs' cron schedules, in a thread or a process of its own."""

    def __init__(self, rt: Runtime, interval_s: float = 1.0) -> None:
        self.rt = rt
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.last_sweep = 0.0
        self.polls = PollSchedule(rt)
        self.retention = RetentionSchedule(rt.db, rt.config.hub)
        self.reconcile: Any = None
        if rt.config.reconcile:  # imported only where jobs exist: it brings in polars
            from hub.reconcile.schedule import ReconcileSchedule

            self.reconcile = ReconcileSchedule(rt)

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                sweep(self.rt)
                self.last_sweep = time.time()
            except Exception:  # the store may be restarting; the next sweep tries again
                log.exception("sweep failed")
            try:
                self.polls.tick()
            except Exception:  # Redis or the store may be restarting; the next tick tries again
                log.exception("scheduling polls failed")
            try:
                self.retention.tick()
            except Exception:  # the store may be restarting; the next tick tries again
                log.exception("retention purge failed")
            try:
                if self.reconcile is not None:
                    self.reconcile.tick()
            except Exception:  # the store or Redis may be restarting; the next tick tries again
                log.exception("scheduling reconcile runs failed")
            self.stopped.wait(self.interval_s)

    def stop(self, *_: object) -> None:
        self.stopped.set()


def run_scheduler(rt: Runtime, interval_s: float = 1.0) -> None:
    sched = Scheduler(rt, interval_s)

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        sched.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sched.run()
