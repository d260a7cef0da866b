"""When to try a failed delivery again, and when to give up. Pure, so a test drives the clock.

Two schedules, chosen by what the failure says about the destination:

- **Quick tries** while the destination answers other requests (a flaky CRM that fails
  one request in five): the first ``QUICK_TRIES`` failures of a delivery wait 1, 2, 3,
  4 s. Exponential backoff on every failure turned 20 % faults into minutes of delay
  (FIELD-NOTES, "Lessons we paid for").
- **Exponential backoff** when the destination fails as a whole (nothing it answered
  lately), or once the quick tries are spent: 5 s × 3ⁿ⁻¹, capped at two hours.

Either way the delay carries jitter (±20 %), but one draw per *batch*: items that failed
together fall due together and go out together, instead of one by one in batches of 1,
each exposed to the fault rate again. Retries last at least ``horizon_s`` (default 25 h:
"at least 24 hours") counted from the first attempt; then ``dead``. A 429 or the API's own
limit error waits what the API asked instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

BASE_S = 5.0
FACTOR = 3.0
CAP_S = 2 * 3600.0
JITTER = 0.2
DEFAULT_HORIZON_S = 25 * 3600.0
QUICK_TRIES = 4  # failures of one delivery retried within seconds while its destination answers
QUICK_STEP_S = 1.0  # the n-th quick try waits n × this


@dataclass(frozen=True)
class RetryDecision:
    dead: bool
    next_attempt_at: float


def jitter_factor(rng: random.Random | None = None) -> float:
    """One draw from [1 − JITTER, 1 + JITTER]; draw it once for everything that failed together."""
    return (rng or random).uniform(1 - JITTER, 1 + JITTER)


def backoff_s(attempt: int, rng: random.Random | None = None, *, factor: float | None = None) -> float:
    """Delay after the ``attempt``-th failed attempt (1-based): 5 s, 15 s, 45 s, ... ≤ 2 h, ±20 %."""
    raw = min(CAP_S, BASE_S * FACTOR ** max(0, attempt - 1))
    return raw * (factor if factor is not None else jitter_factor(rng))


def quick_s(attempt: int, rng: random.Random | None = None, *, factor: float | None = None) -> float:
    """Delay of the ``attempt``-th quick try (1-based): 1, 2, 3, 4 s, ±20 %."""
    return QUICK_STEP_S * attempt * (factor if factor is not None else jitter_factor(rng))


def decide(
    *,
    attempt: int,
    first_attempt_at: float,
    now: float,
    retry_after: float | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
    quick: bool = False,
    factor: float | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Schedule the next attempt, or declare the delivery dead once the horizon has passed.

    ``quick``: the destination answers other requests, so a failure of this request is
    worth trying again within seconds (for the first ``QUICK_TRIES`` attempts).
    ``factor``: the jitter drawn once for the whole batch (drawn here when not given).
    """
    if now - first_attempt_at >= horizon_s:
        return RetryDecision(dead=True, next_attempt_at=now)
    if retry_after is not None:
        delay = max(retry_after, 0.5)  # the API said when; a little floor avoids a hot loop
    elif quick and attempt <= QUICK_TRIES:
        delay = quick_s(attempt, rng, factor=factor)
    else:
        delay = backoff_s(attempt, rng, factor=factor)
    return RetryDecision(dead=False, next_attempt_at=now + delay)
