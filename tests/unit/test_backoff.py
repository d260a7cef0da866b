"""The retry schedule, with a controlled clock and a seeded random source."""

from __future__ import annotations

import random

from hub.engine.backoff import (
    CAP_S,
    DEFAULT_HORIZON_S,
    JITTER,
    QUICK_STEP_S,
    QUICK_TRIES,
    STEADY_TRIES,
    backoff_s,
    decide,
)


def test_intervals_grow_exponentially_within_jitter_bounds() -> None:
    """Twice the time already spent failing (≥ 5 s, ≤ 2 h): without jitter the attempts fall
    at 5 s, 15 s, 45 s, 135 s … after the first."""
    assert [backoff_s(t, factor=1.0) for t in (0, 5, 15, 45, 135)] == [5, 10, 30, 90, 270]
    assert backoff_s(10 * 3600, factor=1.0) == CAP_S
    rng = random.Random(7)
    for failing_for in (0, 3, 40, 1000, 5000, 50_000):
        base = min(CAP_S, max(5.0, 2 * failing_for))
        for _ in range(200):
            d = backoff_s(failing_for, rng)
            assert base * (1 - JITTER) <= d <= base * (1 + JITTER)


def test_quick_tries_while_the_destination_answers() -> None:
    for attempt in range(1, QUICK_TRIES + 1):
        d = decide(attempt=attempt, first_attempt_at=0, now=20, quick=True, factor=1.0)
        assert d.next_attempt_at == 20 + min(attempt, 2) * QUICK_STEP_S
    # spent, while it still answers: steady tries 5 s apart, then the long schedule
    for attempt in range(QUICK_TRIES + 1, QUICK_TRIES + STEADY_TRIES + 1):
        d = decide(attempt=attempt, first_attempt_at=0, now=36, quick=True, factor=1.0)
        assert d.next_attempt_at == 36 + 5
    d = decide(attempt=QUICK_TRIES + STEADY_TRIES + 1, first_attempt_at=0, now=76, quick=True,
               factor=1.0)
    assert d.next_attempt_at == 76 + 152
    # an unlucky lead at a flaky CRM: every try it gets within two minutes
    t, tries = 0.0, 0
    while t < 120:
        tries += 1
        t = decide(attempt=tries, first_attempt_at=0, now=t, quick=True, factor=1.2).next_attempt_at
    assert tries == QUICK_TRIES + STEADY_TRIES + 1
    # one quick delay for a batch: a fresh item failing beside a retried one waits as long
    d = decide(attempt=1, first_attempt_at=20, now=20, quick=True, factor=1.0, quick_step=3)
    assert d.next_attempt_at == 20 + 2 * QUICK_STEP_S
    # a destination that is down gets no quick tries
    assert decide(attempt=1, first_attempt_at=0, now=0, quick=False, factor=1.0).next_attempt_at == 5


def test_jitter_spreads_retries() -> None:
    rng = random.Random(1)
    values = {round(backoff_s(45, rng), 3) for _ in range(50)}
    assert len(values) > 40


def test_retries_last_at_least_24_hours_then_dead() -> None:
    rng = random.Random(3)
    t0 = now = 1_000_000.0
    attempts = 0
    while True:
        attempts += 1
        d = decide(attempt=attempts, first_attempt_at=t0, now=now, rng=rng)
        if d.dead:
            break
        assert d.next_attempt_at > now
        now = d.next_attempt_at
    assert now - t0 >= 24 * 3600
    assert now - t0 < DEFAULT_HORIZON_S + CAP_S * (1 + JITTER)
    assert 10 <= attempts <= 30


def test_retry_after_wins_over_backoff() -> None:
    d = decide(attempt=1, first_attempt_at=0, now=100, retry_after=42)
    assert d.next_attempt_at == 142
    assert not d.dead


def test_horizon_is_configurable() -> None:
    assert decide(attempt=1, first_attempt_at=0, now=61, horizon_s=60).dead
    assert not decide(attempt=1, first_attempt_at=0, now=59, horizon_s=60).dead
