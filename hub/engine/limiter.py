"""A requests-per-second limiter shared by every worker process, kept in Redis.

GCRA ("leaky bucket as a meter"): one key per destination holds the theoretical arrival
time of the next request. ``reserve`` books the next free slot atomically (a Lua script,
Redis's own clock) and returns how long to sleep until it. Reservations never overlap, so
however many workers run, requests leave at most ``rate`` per second.
"""

from __future__ import annotations

import time

import redis

# KEYS[1] = bucket; ARGV[1] = interval (µs), ARGV[2] = burst tolerance (µs)
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat - tolerance
local wait = 0
if start > now then wait = start - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return wait
"""

#: Aim a little under the documented rate: requests sent on schedule can still arrive
#: bunched by network jitter, and the destination counts arrivals.
SAFETY = 0.96


class RateLimiter:
    def __init__(self, conn: redis.Redis[bytes]) -> None:
        self.conn = conn
        self._script = conn.register_script(_RESERVE)

    def reserve(self, key: str, rate_per_s: float, burst: int = 1) -> float:
        """Book one request slot; return the seconds to wait before sending it."""
        interval_us = int(1_000_000 / (rate_per_s * SAFETY))
        tolerance_us = interval_us * max(0, burst - 1)
        wait_us = int(self._script(keys=[f"leadhub:rate:{key}"], args=[interval_us, tolerance_us]))
        return wait_us / 1_000_000

    def acquire(self, key: str, rate_per_s: float, burst: int = 1) -> None:
        """Block until this process may send one request to ``key``."""
        wait = self.reserve(key, rate_per_s, burst)
        if wait > 0:
            time.sleep(wait)
