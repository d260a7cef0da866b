"""Polling sources (a mailbox): the scheduler wakes ``poll_job(source)`` every
``poll_interval_s``, and each polled message goes through the same door as a webhook.

A polled message becomes a raw request (``method="POLL"``, its body and content type),
is parsed and normalized by the accept path (``hub/engine/accept.py``) and committed by
``ingest_batch`` exactly as ``/hooks/{source}`` does; only then does the source ``ack`` it (mark it
taken). Exactly once across crashes and restarts rests on two things: ``ack`` after the
commit, and the message's stable ``event_id`` as the event key, so a message fetched
again because the hub died between commit and ack is a provider retry, not a new lead.

A failing source (login refused, server down) is not a crash loop: the job records the
error as the source's poll state (``poll_status``), logs it once per attempt, and the
scheduler waits ``poll_interval_s`` doubled per failure in a row, up to 15 minutes.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from hub.config import HubConfig
from hub.connectors import InboundRequest, PolledMessage, PollError, PollingSource
from hub.engine.accept import accept, rules_for
from hub.engine.ingest import IngestResult, ingest_batch
from hub.engine.jobs import POLL_JOB, wake_process
from hub.queue import wake
from hub.runtime import Runtime

log = logging.getLogger("leadhub.poll")

POLL_QUEUE = "leadhub.poll"
BATCH = 50  # messages per commit; each batch is acknowledged before the next is fetched
LOCK_TTL_S = 300  # one poll of a source at a time; a killed job frees the source after this
MAX_BACKOFF_S = 900.0


@dataclass
class PollOutcome:
    """What one poll job did."""

    source: str
    lead_ids: list[str] = field(default_factory=list)
    messages: int = 0  # messages committed (leads, non-leads, quarantined, retries)
    retries: int = 0  # messages the store already had: fetched again after a crash before ack
    skipped: bool = False  # another poll of this source was running
    error: str | None = None


def polling_source_names(config: HubConfig) -> list[str]:
    """The configured sources whose plugin polls (enabled or not)."""
    return sorted(
        name for name, spec in config.sources.items()
        if issubclass(spec.plugin.connector, PollingSource)
    )


def poll_source(rt: Runtime, name: str, *, clock: Callable[[], float] = time.time) -> PollOutcome:
    """Poll the source ``name`` until it has nothing new; never raises for the source's
    failures (they go to the log and ``poll_status``)."""
    src = rt.source(name)
    if not isinstance(src, PollingSource):
        raise ValueError(f"{name!r} is not a polling source")
    outcome = PollOutcome(name)
    token = _lock(rt, name)
    if token is None:
        outcome.skipped = True
        return outcome
    try:
        _poll(rt, src, outcome, clock)
    except Exception as exc:
        outcome.error = str(exc) if isinstance(exc, PollError) else f"{type(exc).__name__}: {exc}"
        failures = _record(rt, name, clock(), outcome)
        wait = next_delay(src.poll_interval_s, failures)
        if isinstance(exc, PollError):
            log.error("poll of source %r failed (%d in a row; next try in %.0f s): %s",
                      name, failures, wait, outcome.error)
        else:
            log.exception("poll of source %r failed (%d in a row; next try in %.0f s)",
                          name, failures, wait)
    else:
        _record(rt, name, clock(), outcome)
    finally:
        with contextlib.suppress(Exception):  # logging out of a dead connection may fail
            src.finish_poll()
        _unlock(rt, name, token)
    return outcome


def _poll(rt: Runtime, src: PollingSource[Any], outcome: PollOutcome,
          clock: Callable[[], float]) -> None:
    taken: set[str] = set()
    while True:
        batch = src.poll(BATCH, src.body_limit(rt.config.hub.max_body_bytes))
        # a source whose marks do not stick would hand us the same messages forever
        fresh = [m for m in batch if m.event_id not in taken]
        if not fresh:
            return
        results = ingest_polled(rt, src, fresh, received_at=clock())
        src.ack(fresh)
        taken.update(m.event_id for m in fresh)
        outcome.messages += len(fresh)
        for res in results:
            outcome.lead_ids += [] if res.retry else res.lead_ids
            outcome.retries += res.retry
        if len(batch) < BATCH:
            return


def ingest_polled(rt: Runtime, src: PollingSource[Any], messages: list[PolledMessage],
                  *, received_at: float | None = None) -> list[IngestResult]:
    """Commit polled messages as webhooks are committed, and wake routing; no ``ack``.

    Each message is one raw request through the accept path webhooks take
    (``hub/engine/accept.py``); every event its ``parse`` returns takes the message's
    ``event_id`` (suffixed ``#n`` after the first), so fetching it again is a retry. A
    message that cannot be parsed goes to quarantine under that key too, and one that
    holds no event is a non-lead under it.
    """
    now = time.time() if received_at is None else received_at
    rules = rules_for(rt.config.hub, src)
    items = [accept(src, polled_request(src.name, msg), "poll", rules, received_at=now,
                    event_id=msg.event_id) for msg in messages]
    results = ingest_batch(rt.db, items)
    with contextlib.suppress(Exception):  # a lost wake-up is repaired by the sweeper
        wake_process(rt)
    return results


def polled_request(source: str, msg: PolledMessage) -> InboundRequest:
    """The raw request a polled message stands for (``method="POLL"``): what is stored,
    parsed, and parsed again if the message is reprocessed from quarantine."""
    return InboundRequest(method="POLL", source=source, path="", query=(("ref", msg.ref),),
                          headers={"content-type": msg.content_type}, body=msg.body)


# ---------------------------------------------------------------- state and schedule


def _state_key(name: str) -> str:
    return f"leadhub:poll:{name}"


def poll_status(rt: Runtime, name: str) -> dict[str, Any]:
    """The source's last poll as the admin should see it: ``state`` (``ok``/``error``/
    ``never``), ``error``, ``failures`` in a row, ``last_attempt_at``, ``last_ok_at``,
    ``last_messages``; times are epoch seconds. Empty fields are absent."""
    try:
        raw = rt.redis.hgetall(_state_key(name))
    except redis.RedisError:
        return {"state": "unknown"}
    data: dict[str, Any] = {k.decode(): v.decode() for k, v in raw.items()}
    if not data:
        return {"state": "never"}
    for key in ("last_attempt_at", "last_ok_at"):
        if key in data:
            data[key] = float(data[key])
    for key in ("failures", "last_messages"):
        if key in data:
            data[key] = int(data[key])
    return data


def _record(rt: Runtime, name: str, now: float, outcome: PollOutcome) -> int:
    """Store the outcome as the poll state; the failures in a row, this one included."""
    key = _state_key(name)
    try:
        if outcome.error is None:
            rt.redis.hset(key, mapping={"state": "ok", "last_attempt_at": now, "last_ok_at": now,
                                        "failures": 0, "last_messages": outcome.messages})
            rt.redis.hdel(key, "error")
            return 0
        failures = int(rt.redis.hincrby(key, "failures", 1))
        rt.redis.hset(key, mapping={"state": "error", "error": outcome.error[:500],
                                    "last_attempt_at": now})
        return failures
    except redis.RedisError:
        return 1


def next_delay(interval_s: float, failures: int) -> float:
    """The wait before the next poll: the interval, doubled per failure in a row, capped."""
    if failures <= 0:
        return interval_s
    return min(interval_s * 2.0 ** min(failures, 16), max(MAX_BACKOFF_S, interval_s))


def _lock(rt: Runtime, name: str) -> str | None:
    token = secrets.token_hex(8)
    try:
        if not rt.redis.set(f"leadhub:poll-lock:{name}", token, nx=True, ex=LOCK_TTL_S):
            return None
    except redis.RedisError:
        pass  # polling without the lock is safe: a double fetch is a retry in the store
    return token


def _unlock(rt: Runtime, name: str, token: str) -> None:
    key = f"leadhub:poll-lock:{name}"
    with contextlib.suppress(redis.RedisError):
        if rt.redis.get(key) == token.encode():
            rt.redis.delete(key)


class PollSchedule:
    """Wakes ``poll_job`` for each enabled polling source when it is due (scheduler tick)."""

    def __init__(self, rt: Runtime, clock: Callable[[], float] = time.time) -> None:
        self.rt = rt
        self.clock = clock
        self.names = polling_source_names(rt.config)
        self.next_due: dict[str, float] = {}

    def tick(self) -> list[str]:
        """Enqueue the polls that are due; the names woken."""
        now = self.clock()
        due = [n for n in self.names if now >= self.next_due.get(n, 0.0)]
        if not due:
            return []
        overrides = self.rt.enabled_overrides()
        woken = []
        for name in due:
            src = self.rt.source(name)
            if not isinstance(src, PollingSource) or not self.rt.is_enabled(name, overrides):
                self.next_due[name] = now + 5.0  # look again soon: it may be enabled
                continue
            if wake(self.rt.redis, POLL_QUEUE, POLL_JOB, name):
                failures = int(poll_status(self.rt, name).get("failures", 0) or 0)
                self.next_due[name] = now + next_delay(src.poll_interval_s, failures)
                woken.append(name)
        return woken
