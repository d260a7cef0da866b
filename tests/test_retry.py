"""The retry schedule, with a controlled clock and a seeded random source."""

from __future__ import annotations

import random

from hub.engine.retry import CAP_S, DEFAULT_HORIZON_S, JITTER, backoff_s, decide


def test_intervals_grow_exponentially_within_jitter_bounds() -> None:
    rng = random.Random(7)
    expected = [5, 15, 45, 135, 405, 1215, 3645, CAP_S, CAP_S]
    for attempt, base in enumerate(expected, start=1):
        for _ in range(200):
            d = backoff_s(attempt, rng)
            assert base * (1 - JITTER) <= d <= base * (1 + JITTER)


def test_jitter_spreads_retries() -> None:
    rng = random.Random(1)
    values = {round(backoff_s(3, rng), 3) for _ in range(50)}
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
