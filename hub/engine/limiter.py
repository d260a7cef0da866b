"""A requests-per-second limiter shared by every worker process, kept in Redis.

An API such as amoCRM's counts the requests that *arrive* within any one second and
answers 429 to the eighth. We cannot see arrivals, only when a request left and when its
answer came back: the arrival lies between the two. So the limiter keeps, per
destination, a log of the requests of the last window (a sorted set on Redis's clock,
updated by Lua scripts, atomic across processes): a request counts for one window from
its answer, or from ``ARRIVAL_BOUND_S`` after it left if it is still unanswered then (a
request that hangs until its timeout reached the API long before; counting it until its
answer cost four request slots per hanging request, a fifth of amoCRM's budget at 20 %
faults). A new request may leave only while fewer than ``limit`` requests are in that
log, which holds whatever the answer latency: the request it replaces arrived a full
window before this one can.

The window is one second with ``limit = ⌊rate⌋`` (smaller rates get a longer window, one
request each), and grants are spaced at 0.97 / rate so a window's requests do not leave
in one burst; the cost against the documented ceiling is that spacing or one round trip
per window, whichever is more: on loopback about 97 % of it. The spacing runs on a
schedule: a grant that came late (the sender leased its batch, built the request, was
descheduled) moves the next one up by as much, up to half a spacing. Spaced from when
each request left, the 10-15 ms of every sender's own work came on top of each 139 ms:
a backlog drained at 88-92 % of amoCRM's ceiling. The earlier GCRA limiter spaced grants by
1 / (rate × 0.92) and still met a 429 now and then when a loaded machine bunched
arrivals; it could never get past 92 %.

``penalize`` holds every sender back after the API said 429 anyway. A slot whose holder
died (a killed worker) frees itself like an unanswered request.
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis

# KEYS[1] = request log (sorted set: token → µs it arrived at the latest), KEYS[2] = hold
# (µs), KEYS[3] = the earliest µs the next request may leave (spacing)
# ARGV[1] = limit, ARGV[2] = window (µs), ARGV[3] = token, ARGV[4] = arrival bound (µs),
# ARGV[5] = spacing (µs)
# → 0 when the request may leave now (it is logged as in flight), else µs to wait
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
if hold > now then return hold - now end
local next_at = tonumber(redis.call('GET', KEYS[3]) or '0')
if next_at > now then return next_at - now end
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  local until_us = now + tonumber(ARGV[4])
  redis.call('ZADD', KEYS[1], until_us, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil((until_us + window - now) / 1000) + 1000)
  local spacing = tonumber(ARGV[5])
  if spacing > 0 then
    -- the next one is due a spacing after this one was due, not after it left, making up
    -- at most half a spacing of lateness (never a burst); after an idle spell, from now
    local due = now
    if next_at > 0 then due = math.max(next_at, now - math.floor(spacing / 2)) end
    redis.call('SET', KEYS[3], string.format('%d', due + spacing), 'PX', math.ceil(spacing / 1000) + 1000)
  end
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1000 then wait = 1000 end
return wait
"""

# How long until a request could leave (nothing is booked). KEYS, ARGV[1..2] as _BEGIN.
_READY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(redis.call('GET', KEYS[2]) or '0')
local wait = 0
if hold > now then wait = hold - now end
local next_at = tonumber(redis.call('GET', KEYS[3]) or '0')
if next_at - now > wait then wait = next_at - now end
local window = tonumber(ARGV[2])
local inlog = redis.call('ZRANGEBYSCORE', KEYS[1], now - window, '+inf', 'WITHSCORES')
local count = #inlog / 2
if count >= tonumber(ARGV[1]) then
  local oldest = tonumber(inlog[2]) + window - now
  if oldest > wait then wait = oldest end
end
return wait
"""

# No fixed rate: only a hold applies. → µs to wait
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold > now then return hold - now end
return 0
"""

# The request was answered: it counts for one window from now, or from its arrival bound
# if that came first.
_END = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[1], 'XX', 'LT', now, ARGV[1])
return 0
"""

# Nothing may leave for ARGV[1] µs from now (a longer hold already set stays).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if hold > current then
  redis.call('SET', KEYS[1], string.format('%d', hold), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""

ARRIVAL_BOUND_S = 1.0
#: A hold (``penalize``) is read from Redis once the cached one is ``HOLD_FRESH_S`` old,
#: after a request has gone (off the lead's path), or before it once ``HOLD_LATE_S`` old.
HOLD_FRESH_S = 0.05
HOLD_LATE_S = 1.0
#: Requests are also spaced at 0.97 / rate: the log alone lets a window's requests leave
#: in one burst and then none for a second, which put up to a second of waiting on a lead
#: that came just after a burst (webhook → deal p99 1.9 s at 100 leads/s into amoCRM).
#: Spaced, a batch leaves every 1/rate; the log still guarantees the limit.
SPACING = 0.97

_WAITING: Counter[str] = Counter()  # key → requests of this process waiting for a slot
_WAITING_LOCK = threading.Lock()


def waiting_for_slot(key: str) -> int:
    """How many requests to ``key`` in this process are waiting for a rate slot now. A
    drain leases no further batch while one is: a plugin that sends one request per lead
    (the webhook, 5 req/s, batches of 2) got a batch leased on every free slot, three
    batches in the air asked for twice the rate, and the last of them ran out of time
    unsent (the webhook kit's limit check failed one run in three)."""
    return _WAITING[key]


def _forget_waiting() -> None:
    """In a forked child: the parent's waiting threads do not exist there."""
    global _WAITING_LOCK
    _WAITING.clear()
    _WAITING_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_waiting)


def window_of(rate_per_s: float, burst: int = 1) -> tuple[int, float]:
    """``(limit, window seconds)``: at most ``limit`` requests per window, which is one
    second for rates of one per second and more."""
    limit = max(1, burst, math.floor(rate_per_s))
    return limit, limit / rate_per_s


class RateLimiter:
    def __init__(self, conn: redis.Redis[bytes]) -> None:
        self.conn = conn
        self._begin = conn.register_script(_BEGIN)
        self._end = conn.register_script(_END)
        self._penalize = conn.register_script(_PENALIZE)
        self._hold = conn.register_script(_HOLD)
        self._ready = conn.register_script(_READY)
        self._holds: dict[str, tuple[float, float]] = {}  # key → (asked at, held until), monotonic

    @staticmethod
    def _keys(key: str) -> list[str]:
        return [f"leadhub:rate:{key}", f"leadhub:hold:{key}", f"leadhub:next:{key}"]

    def try_begin(
        self, key: str, rate_per_s: float | None, token: str, burst: int = 1,
    ) -> float:
        """0.0 when request ``token`` may leave now (it is logged as in flight); else the
        seconds to wait first. ``rate_per_s`` None: no fixed rate, only a hold applies."""
        if rate_per_s is None or math.isinf(rate_per_s):
            return int(self._hold(keys=self._keys(key)[1:])) / 1_000_000
        limit, window = window_of(rate_per_s, burst)
        spacing = window / limit * SPACING if burst <= 1 else 0.0
        wait_us = int(self._begin(keys=self._keys(key), args=[
            limit, int(window * 1_000_000), token, int(ARRIVAL_BOUND_S * 1_000_000),
            int(spacing * 1_000_000)]))
        return wait_us / 1_000_000

    def ready_in(self, key: str, rate_per_s: float | None, burst: int = 1) -> float:
        """Seconds until one request to ``key`` could leave; nothing is booked. A sender
        waits this out *before* it takes its work, so what it sends is as fresh as can be."""
        if rate_per_s is None or math.isinf(rate_per_s):
            return int(self._hold(keys=self._keys(key)[1:])) / 1_000_000
        limit, window = window_of(rate_per_s, burst)
        return int(self._ready(keys=self._keys(key), args=[limit, int(window * 1_000_000)])) / 1_000_000

    def claim_turn(self, key: str, rate_per_s: float | None, burst: int = 1) -> bool:
        """Of the senders that found ``ready_in`` at 0, let one go first: it holds the turn
        for one spacing interval (or until it begins its request). The others wait for the
        next slot *before* taking work, instead of each holding a leased batch in line."""
        if rate_per_s is None or math.isinf(rate_per_s):
            return True
        limit, window = window_of(rate_per_s, burst)
        ms = max(1, int(window / limit * SPACING * 1000))
        return bool(self.conn.set(f"leadhub:turn:{key}", b"1", nx=True, px=ms))

    def begin(self, key: str, rate_per_s: float | None, burst: int = 1) -> str:
        """Block until one request to ``key`` may leave; the token to ``end`` it with."""
        token = uuid.uuid4().hex
        wait = self.try_begin(key, rate_per_s, token, burst)
        if wait <= 0:
            return token
        with _WAITING_LOCK:
            _WAITING[key] += 1
        try:
            while wait > 0:
                time.sleep(wait)
                wait = self.try_begin(key, rate_per_s, token, burst)
        finally:
            with _WAITING_LOCK:
                _WAITING[key] -= 1
        return token

    def end(self, key: str, token: str) -> None:
        """The request was answered (or failed): it counts for one more window."""
        self._end(keys=self._keys(key)[:1], args=[token])

    def _hold_wait(self, key: str) -> float:
        """The hold on ``key`` as this process knows it, asked of Redis first only when
        that is ``HOLD_LATE_S`` old (``slot`` asks again after its request): with no fixed
        rate a hold is all there is to wait for, and one round trip per request was most of
        a webhook drain's time."""
        now = time.monotonic()
        cached = self._holds.get(key)
        if cached is None or now - cached[0] >= HOLD_LATE_S:
            cached = self._read_hold(key)
        return max(0.0, cached[1] - now)

    def _read_hold(self, key: str) -> tuple[float, float]:
        now = time.monotonic()
        until = now + int(self._hold(keys=self._keys(key)[1:])) / 1_000_000
        self._holds[key] = cached = (now, until)
        return cached

    @contextmanager
    def slot(self, key: str, rate_per_s: float | None, burst: int = 1) -> Iterator[None]:
        """``with limiter.slot(...): send()``: waits for a slot, frees it when answered.

        With no fixed rate only a hold is waited for. Once the hold this process knows is
        ``HOLD_FRESH_S`` old it is read again after the request, not before: at a steady
        40 leads/s into the ``webhook`` destination the read before it (a Redis round
        trip, every other lead) was 0.5 ms of a lead's ~2.5 ms from webhook to receiver at
        p90. Under steady traffic a hold another process placed is seen within a request
        or two, as before; after ``HOLD_LATE_S`` of quiet it is read before the request."""
        if rate_per_s is None or math.isinf(rate_per_s):
            while (wait := self._hold_wait(key)) > 0:
                time.sleep(wait)
            try:
                yield
            finally:
                cached = self._holds.get(key)
                if cached is None or time.monotonic() - cached[0] >= HOLD_FRESH_S:
                    with suppress(redis.RedisError):  # the next request reads it again
                        self._read_hold(key)
            return
        token = self.begin(key, rate_per_s, burst)
        try:
            yield
        finally:
            with suppress(redis.RedisError):  # else it counts from its arrival bound
                self.end(key, token)

    def acquire(self, key: str, rate_per_s: float | None, burst: int = 1) -> None:
        """A slot for a caller that cannot say when its request is answered: counted from
        now, as if answered at once (less safe against latency than ``slot``)."""
        self.end(key, self.begin(key, rate_per_s, burst))

    def penalize(self, key: str, seconds: float) -> None:
        """Send nothing to ``key`` for ``seconds`` (the API refused a request as over its limit)."""
        self._holds.pop(key, None)
        self._penalize(keys=self._keys(key)[1:], args=[int(seconds * 1_000_000)])
