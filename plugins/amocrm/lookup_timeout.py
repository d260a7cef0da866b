"""How long a look-up may wait for amoCRM's answer.

A look-up is a ``GET``: it changes nothing (RFC 9110 §9.2.1), so giving up on it early
is always safe; the cost of giving up too early is one more quick try. A create is not
cut short that way: a ``POST`` abandoned while amoCRM still works on it may land after
our look-up found nothing, and that would be a duplicate deal. So look-ups get a timeout
of their own: four times the slowest of the last 20 look-ups answered (at least
``FLOOR_S``, at most the connector's ``timeout_s``), and the whole ``timeout_s`` again
right after one ran out, so an account whose searches are slow still gets its answers.
At 20 % faults one look-up in fifteen hung until the fake dropped it (3 s); the batch
behind it waited that long before its next try.
"""

from __future__ import annotations

import threading
from collections import deque

FLOOR_S = 1.0  # never less: a busy account answering in 250 ms still has room
FACTOR = 4.0  # times the slowest recent answer
KEEP = 20  # answers remembered


class LookupTimeout:
    """The current look-up timeout of one connector in this process (thread-safe)."""

    def __init__(self, ceiling_s: float) -> None:
        self.ceiling_s = ceiling_s
        self._answers: deque[float] = deque(maxlen=KEEP)
        self._ran_out = False
        self._lock = threading.Lock()

    def current(self) -> float:
        """Seconds the next look-up may wait: the whole timeout until one was answered,
        and again right after one ran out."""
        with self._lock:
            if self._ran_out or not self._answers:
                return self.ceiling_s
            return min(self.ceiling_s, max(FLOOR_S, FACTOR * max(self._answers)))

    def answered(self, seconds: float) -> None:
        with self._lock:
            self._answers.append(seconds)
            self._ran_out = False

    def ran_out(self) -> None:
        with self._lock:
            self._ran_out = True
