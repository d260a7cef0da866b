"""The amoCRM look-up timeout: the connector's whole timeout until a look-up was answered
and right after one ran out, else four times the slowest recent answer (at least 1 s)."""

from __future__ import annotations

from plugins.amocrm.lookup_timeout import FLOOR_S, KEEP, LookupTimeout


def test_the_whole_timeout_until_a_look_up_was_answered() -> None:
    assert LookupTimeout(10).current() == 10


def test_four_times_the_slowest_recent_answer_within_floor_and_ceiling() -> None:
    t = LookupTimeout(10)
    t.answered(0.05)
    assert t.current() == FLOOR_S
    t.answered(0.5)
    t.answered(0.1)
    assert t.current() == 2.0
    capped = LookupTimeout(1.5)
    capped.answered(0.5)
    assert capped.current() == 1.5


def test_one_that_ran_out_gives_the_next_the_whole_timeout() -> None:
    t = LookupTimeout(10)
    t.answered(0.5)
    t.ran_out()
    assert t.current() == 10
    t.answered(0.1)
    assert t.current() == 2.0  # the 0.5 s answer is still among the recent ones


def test_only_recent_answers_count() -> None:
    t = LookupTimeout(10)
    t.answered(2.0)
    for _ in range(KEEP):
        t.answered(0.1)
    assert t.current() == FLOOR_S
