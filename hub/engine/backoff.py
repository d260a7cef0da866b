"""When to try a failed delivery again, and when to give up. Pure, so a test drives the clock.

Two schedules, chosen by what the failure says about the destination:

- **Quick tries** while the destination answers other requests (a flaky CRM that fails
  one request in five): the first ``QUICK_TRIES`` failures of a delivery wait 0.1 s, then
  0.2 s each, and the retry then waits for its request slot like any other: the rate
  limiter, not this delay, paces a flaky destination. A lead already waits out each failed
  request, up to its timeout; waits on top of that (0.5 s, then 1 s) put the unluckiest
  batch at 100 leads/s with 20 % faults 10–13 s behind, growing ones 16 s.
  Exponential backoff on every failure turned 20 % faults into minutes of delay
  (FIELD-NOTES, "Lessons we paid for"). Eight, because an uncertain batch costs two
  requests per try (a look-up, then the create), so at 20 % faults a try fails 36 % of the
  time: four quick tries left one batch in 60 on the long schedule (measured: 14 leads
  waiting 7 minutes at 100 leads/s); eight leave one in 3,500.
- **Steady tries** once the quick tries are spent while the destination still answers:
  ``STEADY_TRIES`` more, 5 s apart. An item that failed eight times in a row at a CRM
  that takes other requests is unlucky (or was leased by workers that were killed, each
  kill an attempt), not facing a down CRM; sent to the long schedule at once it waited
  twice its failing time, 185 s in ``bench/chaos.py``, past the contract's two minutes.
  A request that always fails costs one try in 5 s, 1 % of amoCRM's 7/s, for 40 s.
- **Exponential backoff** when the destination fails as a whole (nothing it answered
  lately), or once those tries are spent too: the wait is twice the time the delivery has
  been failing (at least 5 s, at most two hours), so the attempts fall at 5 s, 15 s, 45 s,
  135 s … after the first, whatever the quick tries before them. Growth by time rather
  than by attempt count keeps a delivery that spent its quick tries from jumping straight
  to an hour's wait.

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
QUICK_TRIES = 8  # failures of one delivery retried within seconds while its destination answers
QUICK_STEP_S = 0.1  # the first quick try waits this, the others twice this
STEADY_TRIES = 8  # then this many BASE_S apart while the destination still answers


@dataclass(frozen=True)
class RetryDecision:
    dead: bool
    next_attempt_at: float


def jitter_factor(rng: random.Random | None = None) -> float:
    """One draw from [1 − JITTER, 1 + JITTER]; draw it once for everything that failed together."""
    return (rng or random).uniform(1 - JITTER, 1 + JITTER)


def backoff_s(
    failing_for_s: float, rng: random.Random | None = None, *, factor: float | None = None,
) -> float:
    """The wait after a failure, for a delivery failing since ``failing_for_s`` seconds:
    twice that, at least 5 s, at most two hours, ±20 %."""
    raw = min(CAP_S, max(BASE_S, (FACTOR - 1) * max(0.0, failing_for_s)))
    return raw * (factor if factor is not None else jitter_factor(rng))


def quick_s(attempt: int, rng: random.Random | None = None, *, factor: float | None = None) -> float:
    """Delay of the ``attempt``-th quick try (1-based): 0.1 s, then 0.2 s, ±20 %."""
    return QUICK_STEP_S * min(attempt, 2) * (factor if factor is not None else jitter_factor(rng))


def decide(
    *,
    attempt: int,
    first_attempt_at: float,
    now: float,
    retry_after: float | None = None,
    horizon_s: float = DEFAULT_HORIZON_S,
    quick: bool = False,
    factor: float | None = None,
    quick_step: int | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Schedule the next attempt, or declare the delivery dead once the horizon has passed.

    ``quick``: the destination answers other requests, so a failure of this request is
    worth trying again within seconds (for the first ``QUICK_TRIES`` attempts; then
    ``STEADY_TRIES`` more every 5 s).
    ``factor``: the jitter drawn once for the whole batch (drawn here when not given).
    ``quick_step``: the attempt the quick delay is reckoned from, one for the whole batch
    (``attempt`` when not given): a batch holding a fresh lead (0.1 s) and a retried one
    (0.2 s) otherwise fell due in two parts, and a drain leasing in between looked the
    same earlier attempt up twice, each time exposed to the faults again.
    """
    if now - first_attempt_at >= horizon_s:
        return RetryDecision(dead=True, next_attempt_at=now)
    if retry_after is not None:
        delay = max(retry_after, 0.5)  # the API said when; a little floor avoids a hot loop
    elif quick and attempt <= QUICK_TRIES:
        delay = quick_s(quick_step or attempt, rng, factor=factor)
    elif quick and attempt <= QUICK_TRIES + STEADY_TRIES:
        delay = BASE_S * (factor if factor is not None else jitter_factor(rng))
    else:
        delay = backoff_s(now - first_attempt_at, rng, factor=factor)
    return RetryDecision(dead=False, next_attempt_at=now + delay)
