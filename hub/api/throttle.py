"""Failed sign-ins per client address, counted in Redis (shared by every api process).

After ``FAILURE_LIMIT`` wrong tokens from one address within ``FAILURE_WINDOW_S``, that
address gets 429 with ``Retry-After`` until the window ends, even with the right token: a
guesser learns nothing while locked out. The web sign-in and wrong bearer tokens share one
count, since both try the same secret. The window is fixed (it starts at the first
failure): ten guesses per five minutes puts a 16-character random token far out of reach.
"""

from __future__ import annotations

import logging

import redis

FAILURE_LIMIT = 10
FAILURE_WINDOW_S = 300
_PREFIX = "leadhub:admin-failures:"
log = logging.getLogger("leadhub.api")


class FailedSignIns:
    """Counts wrong admin tokens per client address. A Redis outage lets attempts through
    (logged): the bearer API then keeps working on the store alone."""

    def __init__(self, conn: redis.Redis[bytes], limit: int = FAILURE_LIMIT,
                 window_s: int = FAILURE_WINDOW_S) -> None:
        self.conn = conn
        self.limit = limit
        self.window_s = window_s

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        key = _PREFIX + client
        try:
            count = self.conn.get(key)
            if count is None or int(count) < self.limit:
                return None
            ttl = int(self.conn.ttl(key))
        except redis.RedisError as exc:
            log.warning("sign-in limit not checked: redis %s", type(exc).__name__)
            return None
        return max(ttl, 1)

    def record(self, client: str) -> None:
        """One more wrong token from ``client``."""
        key = _PREFIX + client
        try:
            pipe = self.conn.pipeline()
            pipe.set(key, 0, ex=self.window_s, nx=True)  # the window starts at the first failure
            pipe.incr(key)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("failed sign-in not counted: redis %s", type(exc).__name__)
