"""The api's group commit (``IngestBatcher``, hub/engine/ingest.py): on SQLite the event
loop commits a turn's requests itself while the write lock is free, and the writer thread
takes a group that finds it taken; on PostgreSQL the writer thread commits every group.
Either way every request gets its own result, and a worker waiting for the lock gets it."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest
from sqlalchemy import event, func, select, text

from hub.connectors import InboundRequest
from hub.engine.ingest import IngestBatcher, IngestItem, IngestResult, build_item
from hub.runtime import Runtime
from hub.store import tables as t
from hub.store.dialect import is_sqlite
from tests.conftest import RuntimeFactory
from tests.engine.test_process_batch import CONFIG  # a webform and the file destination


@pytest.fixture
def rt(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(CONFIG)


def items(rt: Runtime, first: int, n: int) -> list[IngestItem]:
    src = rt.source("site_form")
    assert src is not None
    made = []
    for i in range(first, first + n):
        req = InboundRequest(method="POST", source="site_form", path="", query=(),
                             headers={"content-type": "application/x-www-form-urlencoded"},
                             body=f"phone=8916{1_000_000 + i}&name=L{i}".encode())
        made.append(build_item(req, src.parse(req), None, default_region="RU",
                               dedup_window_s=1800, received_at=time.time()))
    return made


def stored_leads(rt: Runtime) -> int:
    with rt.reader.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.leads)).scalar_one())


async def submit(batcher: IngestBatcher, group: list[IngestItem]) -> list[IngestResult]:
    return list(await asyncio.gather(*(batcher.submit(item) for item in group)))


def test_a_group_that_finds_the_lock_taken_waits_for_it(rt: Runtime) -> None:
    """A worker's transaction holds SQLite's write lock: the requests of that moment are
    committed once it ends (by the writer thread), none lost, none failed, and the event
    loop goes on meanwhile."""
    rung: list[IngestResult] = []
    batcher = IngestBatcher(rt.db, rung.extend)
    holding, released = threading.Event(), []

    def worker() -> None:  # a worker's write transaction of 0.3 s
        with rt.db.begin() as conn:
            conn.execute(text("UPDATE leads SET status = status WHERE id = 'none'"))
            holding.set()
            time.sleep(0.3)
            released.append(time.monotonic())

    ticks: list[float] = []

    async def tick() -> None:  # the loop's other work: it goes on while the group waits
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def run() -> tuple[list[IngestResult], list[IngestResult], float]:
        free = await submit(batcher, items(rt, 0, 20))  # the lock is free
        thread = threading.Thread(target=worker)
        thread.start()
        await asyncio.to_thread(holding.wait, 10)
        ticker = asyncio.create_task(tick())
        held = await submit(batcher, items(rt, 100, 20))
        done = time.monotonic()
        ticker.cancel()
        await asyncio.to_thread(thread.join, 10)
        await batcher.close()
        return free, held, done

    free, held, done = asyncio.run(run())
    assert all(len(r.lead_ids) == 1 and r.quarantined is None for r in free + held)
    assert len({r.lead_ids[0] for r in free + held}) == 40
    if is_sqlite(rt.db):  # one write lock (PostgreSQL's row locks let them through)
        assert done >= released[0]  # they waited for the worker's commit, not around it
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(ticks) > 10 and max(gaps) < 0.2, "the event loop waited for the lock"
    assert stored_leads(rt) == 40
    assert sorted(r.lead_ids[0] for r in rung) == sorted(r.lead_ids[0] for r in free + held)


def test_a_waiting_worker_is_not_starved_by_the_loops_commits(rt: Runtime) -> None:
    """The loop commits back to back under load; a worker that asks for the lock meanwhile
    waits about one group, not until the load ends."""
    batcher = IngestBatcher(rt.db)
    stop = threading.Event()
    waits: list[float] = []

    def worker() -> None:
        while not stop.is_set() and len(waits) < 20:
            t0 = time.monotonic()
            with rt.db.begin() as conn:
                waits.append(time.monotonic() - t0)
                conn.execute(text("UPDATE leads SET status = status WHERE id = 'none'"))
            time.sleep(0.005)

    async def run() -> int:
        thread = threading.Thread(target=worker)
        thread.start()
        sent = 0
        try:
            while thread.is_alive() and sent < 20_000:
                results = await submit(batcher, items(rt, sent, 32))
                assert all(r.lead_ids for r in results)
                sent += 32
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, 10)
            await batcher.close()
        return sent

    sent = asyncio.run(run())
    assert len(waits) == 20, f"the worker got the lock {len(waits)} times while {sent} leads went in"
    assert stored_leads(rt) == sent
    # measured: about one group's commit (a few ms); generous bounds for a loaded machine
    assert sum(waits) / len(waits) < 0.1 and max(waits) < 1.0


def test_the_loop_commits_on_sqlite_and_never_on_postgresql(rt: Runtime) -> None:
    """Where the group was committed: the event loop's own thread on SQLite (the write
    lock was free), the writer thread on PostgreSQL (a round trip would stall the loop)."""
    batcher = IngestBatcher(rt.db)
    committed_on: list[str] = []

    def on_commit(_conn: object) -> None:
        committed_on.append(threading.current_thread().name)

    event.listen(rt.db, "commit", on_commit)

    async def run() -> str:
        await submit(batcher, items(rt, 0, 5))
        loop_thread = threading.current_thread().name
        await batcher.close()
        return loop_thread

    try:
        loop_thread = asyncio.run(run())
    finally:
        event.remove(rt.db, "commit", on_commit)
    assert committed_on == ([loop_thread] if is_sqlite(rt.db) else ["leadhub-ingest"])
    assert stored_leads(rt) == 5


def test_a_group_the_hand_off_takes_gets_no_wake_up_and_one_it_declines_does(rt: Runtime) -> None:
    """``hand_off`` (the express thread's ``offer``) is asked first, on the thread that
    committed, with the group's committed results; only what it declines, or what it
    failed on, reaches the wake-up (``after_commit``). Nothing is rung twice or lost."""
    rung: list[IngestResult] = []
    offered: list[list[IngestResult]] = []
    answers = iter([True, False, "fail"])

    def hand_off(results: list[IngestResult]) -> bool:
        offered.append(results)
        answer = next(answers)
        if answer == "fail":
            raise RuntimeError("a broken hand-off")
        return bool(answer)

    batcher = IngestBatcher(rt.db, rung.extend, hand_off=hand_off)

    async def run() -> list[list[IngestResult]]:
        groups = [await submit(batcher, items(rt, 10 * n, 3)) for n in range(3)]
        await batcher.close()
        return groups

    taken, declined, failed = asyncio.run(run())
    assert [len(o) for o in offered] == [3, 3, 3]
    assert {r.lead_ids[0] for r in offered[0]} == {r.lead_ids[0] for r in taken}
    assert sorted(r.lead_ids[0] for r in rung) == sorted(r.lead_ids[0] for r in declined + failed)
    assert stored_leads(rt) == 9
