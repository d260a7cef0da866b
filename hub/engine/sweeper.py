"""The scheduler's sweep: whatever the store says is due gets a wake-up.

This is what makes Redis a transport and not the record: a wiped Redis, a killed worker
or an API that died between its commit and its enqueue all leave rows in the store, and
the next sweep (every second) enqueues them again. Wake-ups are deduplicated in Redis, so
sweeping often costs one query per table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from hub.engine.drain_control import breaker_open
from hub.engine.jobs import wake_drain, wake_process
from hub.runtime import Runtime
from hub.store import queues


@dataclass
class SweepResult:
    process: bool = False
    drains: list[str] = field(default_factory=list)
    redis_ok: bool = True


def due_destinations(rt: Runtime, now: float) -> list[str]:
    with rt.reader.connect() as conn:
        return queues.due_destinations(conn, now)


def received_waiting(rt: Runtime, now: float) -> int:
    with rt.reader.connect() as conn:
        return queues.received_waiting(conn, now)


def sweep(rt: Runtime) -> SweepResult:
    now = time.time()
    res = SweepResult()
    try:
        if received_waiting(rt, now):
            res.process = True
            res.redis_ok &= wake_process(rt)
        overrides = rt.enabled_overrides()
        for dest in due_destinations(rt, now):
            if dest not in rt.config.destinations or not rt.is_enabled(dest, overrides):
                continue
            if breaker_open(rt, dest):
                continue
            res.drains.append(dest)
            res.redis_ok &= wake_drain(rt, dest)
    except redis.RedisError:
        res.redis_ok = False
    return res
