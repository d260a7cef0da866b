"""One drain waits for a destination's next request slot; another one gives its worker back.

Under ``leadhub serve`` (two workers) a second drain of a healthy destination that slept
for its turn beside the first left no worker to route new leads. Real store, real Redis,
the fake amoCRM on loopback."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.engine.drain import drain
from hub.engine.drain_control import become_waiter, stop_waiting
from hub.engine.limiter import RateLimiter
from hub.engine.process import process_received
from hub.runtime import Runtime
from hub.store import tables as t
from plugins.amocrm.testing import FakeAmoCRM
from tests.engine.test_engine import form, ingest

DEST = "amo_main"


@pytest.fixture
def rt(amo_runtime: Runtime) -> Runtime:
    return amo_runtime


def statuses(rt: Runtime) -> list[str]:
    with rt.reader.connect() as conn:
        return list(conn.execute(select(t.deliveries.c.status)).scalars())


def test_a_drain_that_would_wait_beside_a_waiting_one_leaves_the_slot_to_it(
    rt: Runtime, amo: FakeAmoCRM,
) -> None:
    ingest(rt, form("name=Lead&phone=%2B79161234567"))
    process_received(rt)
    RateLimiter(rt.redis).penalize(DEST, 0.5)  # the next slot is half a second away
    assert become_waiter(rt, DEST, "another-drain", 5.0)

    stats = drain(rt, DEST)
    assert stats.delivered == 0 and not stats.more
    assert amo.requests == [] and statuses(rt) == ["pending"]

    stop_waiting(rt, DEST, "another-drain")  # that drain took its slot (or ended)
    assert drain(rt, DEST).delivered == 1
    assert statuses(rt) == ["delivered"]


def test_only_one_drain_is_the_waiter_and_only_its_own_token_ends_it(rt: Runtime) -> None:
    assert become_waiter(rt, DEST, "a", 5.0)
    assert become_waiter(rt, DEST, "a", 5.0), "the waiter waits again for the next slot"
    assert not become_waiter(rt, DEST, "b", 5.0)
    stop_waiting(rt, DEST, "b")
    assert not become_waiter(rt, DEST, "b", 5.0)
    stop_waiting(rt, DEST, "a")
    assert become_waiter(rt, DEST, "b", 5.0)
