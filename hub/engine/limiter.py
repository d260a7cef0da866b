"""A requests-per-second limiter shared by every worker process, kept in Redis.

GCRA ("leaky bucket as a meter"): one key per destination holds the theoretical arrival
time of the next request, on Redis's own clock (Lua scripts, atomic).

``acquire`` is what senders use: it is granted only when a request may leave *now*, and
the grant is recorded at that moment; a caller that must wait sleeps and asks again. A
sender that wakes late (a busy CPU, a slow commit) therefore pushes every later request
back with it. Booking future slots instead (``reserve``) lets a late request and the
on-time ones after it reach the API bunched: measured with 4 workers on 2 cores, 8
requests arrived within 0.92 s at a 7/s "limit" and amoCRM's window answered 429.

``penalize`` holds every sender back after the API said 429 anyway, so one refusal does
not become a burst of them.
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

# Grant now or say how long to wait; nothing is booked when the answer is "wait".
_TRY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local start = tat - tolerance
if start > now then return start - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""

# Nothing may leave for ARGV[1] µs from now (on top of what is already booked).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local hold = now + tonumber(ARGV[1])
if hold > tat then
  redis.call('SET', KEYS[1], string.format('%d', hold), 'PX', math.ceil((hold - now) / 1000) + 1000)
end
return 0
"""

#: Aim under the documented rate: requests granted on schedule still reach the API
#: bunched by however late each one leaves (CPU contention on our side, the network, the
#: API's own queue), and the API counts arrivals. At 0.92, ``rate`` + 1 requests span at
#: least 1.087 s: 87 ms of such lateness is absorbed (0.96 gave 42 ms, and a loaded
#: 2-core machine exceeded it: one 429 per few thousand requests).
SAFETY = 0.92


class RateLimiter:
    def __init__(self, conn: redis.Redis[bytes]) -> None:
        self.conn = conn
        self._script = conn.register_script(_RESERVE)
        self._try = conn.register_script(_TRY)
        self._penalize = conn.register_script(_PENALIZE)

    @staticmethod
    def _args(rate_per_s: float, burst: int) -> list[int]:
        interval_us = int(1_000_000 / (rate_per_s * SAFETY))
        return [interval_us, interval_us * max(0, burst - 1)]

    def reserve(self, key: str, rate_per_s: float, burst: int = 1) -> float:
        """Book one request slot; return the seconds to wait before sending it."""
        wait_us = int(self._script(keys=[f"leadhub:rate:{key}"], args=self._args(rate_per_s, burst)))
        return wait_us / 1_000_000

    def try_acquire(self, key: str, rate_per_s: float, burst: int = 1) -> float:
        """0.0 when one request may go now (it is counted); else the seconds to wait first."""
        wait_us = int(self._try(keys=[f"leadhub:rate:{key}"], args=self._args(rate_per_s, burst)))
        return wait_us / 1_000_000

    def acquire(self, key: str, rate_per_s: float, burst: int = 1) -> None:
        """Block until this process may send one request to ``key``, counted when it goes."""
        while True:
            wait = self.try_acquire(key, rate_per_s, burst)
            if wait <= 0:
                return
            time.sleep(wait)

    def penalize(self, key: str, seconds: float) -> None:
        """Send nothing to ``key`` for ``seconds`` (the API refused a request as over its limit)."""
        self._penalize(keys=[f"leadhub:rate:{key}"], args=[int(seconds * 1_000_000)])
