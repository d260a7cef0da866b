"""Record ids: ULIDs, sortable by time, so an id doubles as a cursor for "newest first".

Every row the hub creates (raw requests, leads, deliveries, quarantine entries, attempts,
reconcile runs and flags) takes its id from ``new_id``; it is here, apart from any one of
them, so the store and the engine both use it without depending on each other.
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: a random byte -> one Crockford character from its low 5 bits (256 = 8 x 32: uniform)
_RANDOM_CHAR = bytes.maketrans(bytes(range(256)), (_CROCKFORD * 8).encode())
_POOL_IDS = 256  # ids per os.urandom call


class _UlidFactory:
    """ULIDs (48-bit millisecond time + 80 random bits, Crockford base32) at a fraction
    of python-ulid's cost (about 3 µs an id, a syscall and a Python-level encoder each):
    the 10 time characters are encoded once per millisecond, and the 16 random ones (5
    random bits each) come from one ``os.urandom`` chunk per 256 ids, translated to the
    alphabet in C. A child process refills the chunk after a fork, so no two processes
    share randomness; ids stay sortable by time and unique across processes."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._at = "", 0
        self._ms, self._prefix = -1, ""

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        with self._lock:
            if ms != self._ms:
                self._ms, self._prefix = ms, _encode_time(ms)
            prefix = self._prefix
            if self._at >= len(self._pool):
                self._pool = os.urandom(16 * _POOL_IDS).translate(_RANDOM_CHAR).decode()
                self._at = 0
            at = self._at
            self._at = at + 16
            return prefix + self._pool[at:at + 16]


def _encode_time(ms: int) -> str:
    chars = []
    for _ in range(10):
        ms, digit = divmod(ms, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


_ulids = _UlidFactory()
os.register_at_fork(after_in_child=_ulids.reset)


def new_id() -> str:
    """A ULID: sortable by time, so ids double as a cursor for "newest first"."""
    return _ulids()
