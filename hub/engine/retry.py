"""When to try a failed delivery again, and when to give up. Pure, so a test drives the clock.

Exponential backoff with full-range jitter (±20 %), capped at two hours, for at least
``horizon_s`` (default 25 h: "at least 24 hours") counted from the first attempt; then
``dead``. A 429 or the API's own limit error waits what the API asked instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASE_S = 5.0
FACTOR = 3.0
CAP_S = 2 * 3600.0
JITTER = 0.2
DEFAULT_HORIZON_S = 25 * 3600.0


@dataclass(frozen=True)
class RetryDecision:
    dead: bool
    next_attempt_at: float


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Delay after the ``attempt``-th failed attempt (1-based): 5 s, 15 s, 45 s, ... ≤ 2 h, ±20 %."""
    raw = min(CAP_S, BASE_S * FACTOR ** max(0, attempt - 1))
    r = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return raw * r


def decide(
    *,
    attempt: int,
    first_attempt_at: float,
    now: float,
    retry_after: float | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Schedule the next attempt, or declare the delivery dead once the horizon has passed."""
    if now - first_attempt_at >= horizon_s:
        return RetryDecision(dead=True, next_attempt_at=now)
    delay = backoff_s(attempt, rng)
    if retry_after is not None:
        delay = max(retry_after, 0.5)  # the API said when; a little floor avoids a hot loop
    return RetryDecision(dead=False, next_attempt_at=now + delay)
