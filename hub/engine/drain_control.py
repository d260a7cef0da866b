"""How many drains a destination gets, and when it gets none: the circuit breaker, the
count of whole-batch failures in a row, when it last answered, and the drain slots, all
in Redis so that every worker process sees the same state (and a killed worker's share
simply expires).

"Flaky" and "down" are told apart by time, not by a count alone: a destination that
delivered anything within ``ANSWERING_WINDOW_S`` is answering, so a failed batch is
retried within seconds and keeps several drains; only one that has failed whole batches
``BREAKER_AFTER`` times in a row *and* delivered nothing for that long is down: the
breaker opens and its items follow the long exponential schedule. At 20 % faults three
whole-batch failures in a row happen every ~125 batches; counted alone they stalled a
healthy CRM for the breaker's 15 s each time.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import redis

from hub.runtime import SWITCHES_KEY, Runtime, new_switches_version
from hub.store import queues

BREAKER_COOLDOWN_S = 15.0
BREAKER_AFTER = 3  # whole-batch failures in a row that, with nothing delivered lately, mean "down"
ANSWERING_WINDOW_S = 30.0  # delivered anything this recently: the destination is answering
HEALTH_TTL_S = 600  # how long a destination's record of failures in a row is kept


def breaker_key(destination: str) -> str:
    return f"leadhub:breaker:{destination}"


def open_breaker(rt: Runtime, destination: str, seconds: float | None = None) -> None:
    """Stop waking this destination for ``seconds`` (default: a jittered 15 s); its items
    keep their own schedule. An open breaker is never shortened by a later, shorter one."""
    cooldown = seconds if seconds is not None else BREAKER_COOLDOWN_S * random.uniform(0.8, 1.2)
    ms = max(1, int(cooldown * 1000))
    key = breaker_key(destination)
    if rt.redis.set(key, b"open", px=ms, nx=True) is None:
        remaining = rt.redis.pttl(key)
        if remaining is not None and 0 <= remaining < ms:
            rt.redis.pexpire(key, ms)


def breaker_open(rt: Runtime, destination: str) -> bool:
    return bool(rt.redis.exists(breaker_key(destination)))


def failures_key(destination: str) -> str:
    return f"leadhub:failures:{destination}"


def answered_key(destination: str) -> str:
    return f"leadhub:answered:{destination}"


def note_success(rt: Runtime, destination: str) -> None:
    """Something was delivered: the failures in a row start again, and it is answering."""
    pipe = rt.redis.pipeline()
    pipe.set(failures_key(destination), b"0", ex=HEALTH_TTL_S)
    pipe.set(answered_key(destination), b"1", px=int(ANSWERING_WINDOW_S * 1000))
    pipe.delete(limited_key(destination))
    pipe.execute()


def health(rt: Runtime, destination: str) -> tuple[bool, int | None]:
    """``(answering, failures in a row)`` in one round trip."""
    pipe = rt.redis.pipeline()
    pipe.exists(answered_key(destination))
    pipe.get(failures_key(destination))
    ok, failures = pipe.execute()
    return bool(ok), None if failures is None else int(failures)


def answering(rt: Runtime, destination: str, now: float) -> bool:
    """Whether the destination delivered anything within ``ANSWERING_WINDOW_S``: Redis's
    record, or the store's when Redis holds none (it restarted, or the destination was
    quiet for ``HEALTH_TTL_S``); what the store finds is written back to Redis.
    Reading Redis alone, a restart made a flaky CRM look down: the next failed batch
    waited twice its failing time instead of a quick try (51 s in ``bench/chaos.py``)."""
    ok, failures = health(rt, destination)
    if ok or failures is not None:
        return ok
    with rt.reader.connect() as conn:
        last = queues.delivered_since(conn, destination, now - ANSWERING_WINDOW_S)
    if last is None:
        return False
    left_ms = int((ANSWERING_WINDOW_S - max(0.0, now - last)) * 1000)
    rt.redis.set(answered_key(destination), b"1", px=max(1, left_ms), nx=True)
    return True


LIMITED_MEMORY_S = 10  # a 429 further apart than this from the last one starts again at 0.25 s


def limited_key(destination: str) -> str:
    return f"leadhub:limited:{destination}"


def rate_limit_hold(
    rt: Runtime, destination: str, retry_after: float | None, base_s: float = 0.25,
) -> float:
    """How long every sender holds back after a 429: what the API asked; without
    ``Retry-After``, ``base_s`` doubling with each 429 that follows within
    ``LIMITED_MEMORY_S`` (up to 60 s), until something is delivered. A fixed 1 s hold
    turned each of amoCRM's occasional 429s into a second of silence for the whole 7/s
    budget. A destination with a fixed rate passes its request interval: the first 429
    then costs the API one empty slot (0.14 s at amoCRM's 7/s; 0.25 s left 6 % of the
    budget unused at 20 % faults)."""
    if retry_after is not None:
        return min(max(retry_after, 0.1), 60.0)
    pipe = rt.redis.pipeline()
    pipe.incr(limited_key(destination))
    pipe.expire(limited_key(destination), LIMITED_MEMORY_S)
    count, _ = pipe.execute()
    return float(min(60.0, base_s * 2 ** (int(count) - 1)))


def note_failure(rt: Runtime, destination: str) -> int:
    pipe = rt.redis.pipeline()
    pipe.incr(failures_key(destination))
    pipe.expire(failures_key(destination), HEALTH_TTL_S)
    count, _ = pipe.execute()
    return int(count)


def spread_key(destination: str) -> str:
    return f"leadhub:drains-spread:{destination}"


def offer_spread(rt: Runtime, destination: str) -> None:
    """A running drain with a full backlog asks for a helper: the next drain that starts may
    run beside it. Other wake-ups (a lead routed, the sweep) never start a second drain, so
    a steady trickle is sent by one drain that leases right before its slot, instead of
    several drains each holding a leased batch while they queue for the rate limit."""
    pipe = rt.redis.pipeline()
    pipe.incr(spread_key(destination))
    pipe.expire(spread_key(destination), 30)
    pipe.execute()


@dataclass(frozen=True)
class DrainStart:
    """What a drain reads from Redis as it starts, in one round trip (``drain_start``)."""

    answering: bool  # delivered something within ``ANSWERING_WINDOW_S``
    failures: int | None  # whole-batch failures in a row (None: no record)
    helper: bool  # asked for as a helper beside a drain with a backlog (the offer is taken)
    switches: bytes  # the admin switches' version (``hub/runtime.py``, ``SWITCHES_KEY``)


def drain_start(rt: Runtime, destination: str) -> DrainStart:
    """``health``; whether this drain was asked for as a helper (``offer_spread``; the offer
    is taken only for a destination answering or without failures: one never heard from
    gets one drain); and the switches' version, in one round trip.
    Separately they were four, one of them a store read (the enabled switches), of the
    ~2 ms an express drain spent before its lease."""
    keys = [answered_key(destination), failures_key(destination), spread_key(destination),
            SWITCHES_KEY]
    ok, failures, helper, switches = rt.redis.register_script(_DRAIN_START)(
        keys=keys, args=[new_switches_version()])
    return DrainStart(bool(ok), None if failures is None else int(failures), bool(helper),
                      switches)


_DRAIN_START = """
local ok = redis.call('EXISTS', KEYS[1])
local failures = redis.call('GET', KEYS[2])
local helper = 0
if (ok == 1 or not failures or tonumber(failures) == 0)
    and tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
  redis.call('DECR', KEYS[3])
  helper = 1
end
local switches = redis.call('GET', KEYS[4])
if not switches then  -- none since Redis started: this one's
  redis.call('SET', KEYS[4], ARGV[1])
  switches = ARGV[1]
end
return {ok, failures, helper, switches}
"""


def waiter_key(destination: str) -> str:
    return f"leadhub:drain-waiter:{destination}"


def become_waiter(rt: Runtime, destination: str, token: str, seconds: float) -> bool:
    """Whether this drain is the one that sends the destination's steady trickle for the
    next ``seconds``: yes unless another drain holds that role (it leases whatever is due
    at each slot). One such drain is enough; two each held a worker to sleep for their
    turns, and under ``leadhub serve`` (two workers) routing then waited for a worker
    (webhook → deal p50 196 ms there against 109 ms with four workers)."""
    ms = max(1, int(seconds * 1000) + 50)
    claimed = rt.redis.register_script(_BECOME_WAITER)(keys=[waiter_key(destination)],
                                                       args=[token, ms])
    return bool(claimed)


# Taken when free, renewed when this drain's own: one atomic step (a GET then a PEXPIRE
# could renew a role that had just passed to another drain)
_BECOME_WAITER = """
local holder = redis.call('GET', KEYS[1])
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""

_STOP_WAITING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def stop_waiting(rt: Runtime, destination: str, token: str) -> None:
    """This drain is ending: a newcomer may take the role."""
    rt.redis.register_script(_STOP_WAITING)(keys=[waiter_key(destination)], args=[token])


# KEYS[1] = running drains (sorted set, score = expiry ms), KEYS[2] = "asked again" flag
# ARGV[1] = token, ARGV[2] = ttl (ms), ARGV[3] = most drains at once
_SLOT_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], '1', 'PX', tonumber(ARGV[2]))
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""
_SLOT_REFRESH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""
_SLOT_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
"""


class DrainSlot:
    """One of the few drains of a destination allowed at once, held in Redis with a TTL
    (a killed worker's slot expires; a live drain refreshes it every batch). A drain that
    finds none free leaves a flag, so the running one looks again when it ends."""

    def __init__(self, conn: redis.Redis[bytes], destination: str, ttl_s: float) -> None:
        self.conn = conn
        self.keys = [f"leadhub:drains:{destination}", f"leadhub:drains-again:{destination}"]
        self.token = uuid.uuid4().hex
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = conn.register_script(_SLOT_ACQUIRE)
        self._refresh = conn.register_script(_SLOT_REFRESH)
        self._release = conn.register_script(_SLOT_RELEASE)

    def acquire(self, most: int) -> bool:
        return bool(self._acquire(keys=self.keys, args=[self.token, self.ttl_ms, most]))

    def refresh(self) -> int:
        """Keep the slot; the number of drains of this destination running now."""
        return int(self._refresh(keys=self.keys, args=[self.token, self.ttl_ms]))

    def ask_again(self) -> None:
        """Have the running drains look again when they end (as a refused one does)."""
        self.conn.set(self.keys[1], b"1", px=self.ttl_ms)

    def release(self) -> bool:
        """Give the slot back; True when a drain was refused while this one ran."""
        return bool(self._release(keys=self.keys, args=[self.token]))
