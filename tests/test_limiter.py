"""The shared rate limiter on a real Redis: reservations never overlap, across clients."""

from __future__ import annotations

import threading
import time

import redis

from hub.engine.limiter import SAFETY, RateLimiter


def test_reservations_space_requests_at_the_rate(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    waits = [limiter.reserve("amo", 10) for _ in range(20)]
    step = 1 / (10 * SAFETY)
    for i, w in enumerate(waits):
        assert abs(w - i * step) < 0.05, (i, w)


def test_many_clients_never_exceed_the_rate(redis_url: str) -> None:
    sent: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        limiter = RateLimiter(redis.Redis.from_url(redis_url))
        for _ in range(6):
            limiter.acquire("crm", 20)
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=client) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    sent.sort()
    # in any one-second window, at most 20 requests (24 were sent over > 1 s)
    for i, start in enumerate(sent):
        in_window = [s for s in sent[i:] if s - start < 1.0]
        assert len(in_window) <= 20
    assert sent[-1] - sent[0] >= 23 / 20 * 0.9


def test_burst_allows_that_many_at_once(redis_url: str) -> None:
    limiter = RateLimiter(redis.Redis.from_url(redis_url))
    waits = [limiter.reserve("file", 5, burst=3) for _ in range(4)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3] > 0.1
