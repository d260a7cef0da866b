"""The shared rate limiter on a real Redis: a request counts from when it leaves until one
window after it was answered, across clients, so the API never sees more than its limit
within any window whatever the latency."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from hub.engine import limiter as limiter_module
from hub.engine.limiter import RateLimiter, waiting_for_slot, window_of


def test_requests_are_spaced_at_the_rate(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    assert limiter.try_begin("crm", 7, "a") == 0
    assert 0.1 < limiter.try_begin("crm", 7, "b") <= 0.97 / 7


def test_a_late_request_moves_the_next_one_up_by_at_most_half_a_spacing(redis_url: str) -> None:
    """Spacing runs on a schedule: the sender's own delay before a request left is made up
    (up to half a spacing), instead of being added to every interval."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    spacing = 0.97 / 7
    assert limiter.try_begin("crm", 7, "a") == 0
    time.sleep(spacing + 0.07)  # "b" leaves at least 70 ms after it could have
    assert limiter.try_begin("crm", 7, "b") == 0
    wait = limiter.try_begin("crm", 7, "c")
    assert spacing / 2 - 0.01 <= wait <= spacing - 0.06


def test_window_of_a_rate() -> None:
    assert window_of(7) == (7, 1.0)
    assert window_of(2.5) == (2, 0.8)
    assert window_of(0.5) == (1, 2.0)


def test_many_clients_never_exceed_the_rate(redis_url: str) -> None:
    """4 clients × 6 requests at 10/s: no 1-second window holds more than 10 arrivals,
    even though every request takes 50 ms to answer."""
    arrived: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        limiter = RateLimiter(redis.Redis.from_url(redis_url))
        for _ in range(6):
            with limiter.slot("crm", 10):
                time.sleep(0.02)  # on its way
                with lock:
                    arrived.append(time.monotonic())
                time.sleep(0.03)  # the answer on its way back

    threads = [threading.Thread(target=client) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    arrived.sort()
    for i, start in enumerate(arrived):
        assert len([a for a in arrived[i:] if a - start < 1.0]) <= 10
    assert arrived[-1] - arrived[0] >= 1.0  # 24 requests cannot fit in two windows' first


def test_a_request_counts_until_a_window_after_its_answer(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    slow = limiter.begin("amo", 2)
    fast = limiter.begin("amo", 2)  # spaced: about 0.49 s after the first
    limiter.end("amo", fast)  # answered at once: its place frees 1 s from now
    time.sleep(0.5)
    limiter.end("amo", slow)  # answered 1 s after it left: its place frees 1 s from now
    wait = limiter.try_begin("amo", 2, "third")
    assert 0.4 < wait <= 0.55, wait  # the fast one's place, not a second after the slow one


def test_an_unanswered_request_counts_from_its_arrival_bound(redis_url: str) -> None:
    """A request still unanswered a second after it left (hanging until its timeout, or its
    worker killed) counts as if it had arrived then: its place frees a window later."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    limiter.begin("amo", 2)  # never answered
    limiter.begin("amo", 2)  # spaced, never answered
    time.sleep(0.6)
    wait = limiter.try_begin("amo", 2, "third")
    assert 0.8 < wait <= 0.95, wait  # the first one's place: 1 s bound + 1 s window − 1.09 s


def test_a_hold_stops_everyone_and_no_fixed_rate_waits_for_nothing_else(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    for i in range(100):
        assert limiter.try_begin("hook", None, f"t{i}") == 0
    limiter.penalize("hook", 0.5)
    assert 0.4 < limiter.try_begin("hook", None, "late") <= 0.5
    assert limiter.try_begin("other", None, "y") == 0  # other keys are not held


def test_a_request_waiting_for_its_slot_is_counted_until_it_leaves(redis_url: str) -> None:
    """The drain leases no further batch while a request of this process waits for a slot
    (``waiting_for_slot``): it would only queue behind it."""
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    assert limiter.try_begin("hook", 2, "first") == 0  # the next slot is ~0.49 s away
    left = threading.Event()
    sender = threading.Thread(target=lambda: (limiter.begin("hook", 2), left.set()))
    sender.start()
    time.sleep(0.1)
    assert (waiting_for_slot("hook"), waiting_for_slot("other")) == (1, 0)
    assert left.wait(2)
    sender.join()
    assert waiting_for_slot("hook") == 0
    limiter.begin("hook-free", 2)  # a request that leaves at once is never counted
    assert waiting_for_slot("hook-free") == 0



def test_with_no_fixed_rate_a_hold_is_read_after_a_request_and_before_one_once_late(
    redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hold another process placed: seen by the request after the one that found what
    this process knew stale (it reads Redis once answered), and before a request once
    what it knew is ``HOLD_LATE_S`` old."""
    conn = redis.Redis.from_url(redis_url)
    mine, other = RateLimiter(conn), RateLimiter(conn)
    with mine.slot("hook", None):
        pass
    other.penalize("hook", 30)
    time.sleep(limiter_module.HOLD_FRESH_S * 1.5)
    started = time.monotonic()
    with mine.slot("hook", None):  # stale, not late: it goes, and reads the hold once answered
        assert time.monotonic() - started < 5, "waited for a hold it had not read"
    assert mine._hold_wait("hook") > 20, "the hold was read after the request"

    monkeypatch.setattr(limiter_module, "HOLD_LATE_S", limiter_module.HOLD_FRESH_S * 2)
    with mine.slot("free", None):
        pass
    other.penalize("free", 30)
    time.sleep(limiter_module.HOLD_LATE_S * 1.5)
    assert mine._hold_wait("free") > 20, "late: read before the request"
