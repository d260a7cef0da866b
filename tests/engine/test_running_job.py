"""A running job takes its queue's wake-ups instead of one RQ job each (``RunningJob``).

Under ``leadhub serve`` at full load the api's commits and the routing woke ~38 short jobs
a second, and RQ's bookkeeping of them was 28 % of the workers' CPU. Real Redis (the
embedded server), real RQ queues; the last two tests run the real jobs on a real store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq import Queue

from hub import hookimpl
from hub.engine import jobs
from hub.engine.drain import drain
from hub.engine.process import process_received
from hub.models import Lead
from hub.queue import PROCESS_QUEUE, RunningJob, connect, destination_queue, wake
from hub.runtime import Runtime, set_current
from tests.conftest import RuntimeFactory
from tests.engine.test_engine import CONFIG, form, ingest

FUNC = "hub.engine.jobs.process_job"


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    client = connect(redis_url)
    yield client
    client.close()


def queued(conn: redis.Redis[bytes], name: str = PROCESS_QUEUE) -> int:
    return Queue(name, connection=conn).count


def test_a_wake_up_while_a_job_runs_makes_it_look_again_instead_of_queueing_a_job(
    conn: redis.Redis[bytes],
) -> None:
    job = RunningJob(conn, PROCESS_QUEUE)
    job.start()
    assert not job.more(), "nothing woke it: it may end"
    assert wake(conn, PROCESS_QUEUE, FUNC) and wake(conn, PROCESS_QUEUE, FUNC)
    assert queued(conn) == 0
    assert job.more(), "two wake-ups came: it looks once more"
    assert not job.more()
    assert not job.finish(), "nothing came that it did not look for"
    assert wake(conn, PROCESS_QUEUE, FUNC)
    assert queued(conn) == 1, "once it ended, a wake-up queues a job again"


def test_a_job_with_nothing_left_waits_a_moment_for_the_next_wake_up(conn: redis.Redis[bytes]) -> None:
    job = RunningJob(conn, PROCESS_QUEUE)
    job.start()
    timer = threading.Timer(0.05, lambda: wake(conn, PROCESS_QUEUE, FUNC))
    timer.start()
    started = time.monotonic()
    assert job.more(linger_s=5.0), "the wake-up came while it waited"
    assert time.monotonic() - started < 4.0, "it looked as soon as the wake-up came"
    timer.join()
    assert queued(conn) == 0
    assert not job.more(linger_s=0.05) and not job.finish()


def test_a_wake_up_the_job_did_not_look_for_is_queued_when_it_ends(conn: redis.Redis[bytes]) -> None:
    job = RunningJob(conn, PROCESS_QUEUE)
    job.start()
    wake(conn, PROCESS_QUEUE, FUNC)
    assert job.finish(), "the caller must wake the queue"
    assert not job.finish()


def test_it_does_not_look_again_while_another_queue_has_a_job_waiting(conn: redis.Redis[bytes]) -> None:
    job = RunningJob(conn, PROCESS_QUEUE)
    job.start()
    assert wake(conn, destination_queue("crm"), "hub.engine.jobs.drain_job", "crm")
    wake(conn, PROCESS_QUEUE, FUNC)
    assert not job.more(), "a drain waits for a worker: this one ends"
    assert job.finish(), "and its wake-up is queued behind that drain"
    assert queued(conn, destination_queue("crm")) == 1


def test_only_the_first_job_of_a_queue_takes_its_wake_ups(conn: redis.Redis[bytes]) -> None:
    first, second = RunningJob(conn, PROCESS_QUEUE), RunningJob(conn, PROCESS_QUEUE)
    first.start()
    second.start()
    wake(conn, PROCESS_QUEUE, FUNC)
    assert not second.more() and not second.finish(), "the flag is the first job's"
    assert first.more()


def test_a_killed_job_takes_wake_ups_only_until_its_mark_expires(conn: redis.Redis[bytes]) -> None:
    RunningJob(conn, PROCESS_QUEUE, ttl_s=0.3).start()  # and never heard from again
    wake(conn, PROCESS_QUEUE, FUNC)
    assert queued(conn) == 0
    time.sleep(0.4)
    assert wake(conn, PROCESS_QUEUE, FUNC)
    assert queued(conn) == 1


def test_a_helper_gets_a_job_of_its_own_beside_the_running_drain(conn: redis.Redis[bytes]) -> None:
    name = destination_queue("crm")
    RunningJob(conn, name, "crm").start()
    assert wake(conn, name, "hub.engine.jobs.drain_job", "crm")
    assert queued(conn, name) == 0
    assert wake(conn, name, "hub.engine.jobs.drain_job", "crm", taken=False)
    assert queued(conn, name) == 1


def test_a_lost_redis_is_a_job_that_simply_ends(tmp_path: Any) -> None:
    gone = redis.Redis(unix_socket_path=str(tmp_path / "no.sock"), socket_connect_timeout=0.2)
    job = RunningJob(gone, PROCESS_QUEUE)
    job.start()
    assert not job.more() and not job.finish()


@pytest.fixture
def rt(make_runtime: RuntimeFactory) -> Iterator[Runtime]:
    runtime = make_runtime(CONFIG)
    set_current(runtime)
    yield runtime
    set_current(None)


def test_the_process_job_routes_a_lead_committed_while_it_ran_with_no_job_queued(
    make_runtime: RuntimeFactory,
) -> None:
    # no destination: a drain waiting in its queue would (rightly) make the job end
    rt = make_runtime('''
        [hub]
        default_region = "RU"
        [sources.site_form]
        plugin = "webform"
    ''')

    class Arrives:
        """A second webform lead commits (and wakes the queue) while the job notifies."""

        came = False

        @hookimpl
        def leadhub_lead_received(self, lead: Lead, source: str) -> None:
            if not self.came:
                self.came = True
                ingest(rt, form("name=Second&phone=%2B79161234568"))
                jobs.wake_process(rt)

    rt.pm.register(Arrives())
    ingest(rt, form("name=First&phone=%2B79161234567"))
    set_current(rt)
    try:
        assert jobs.process_job() == 2
    finally:
        set_current(None)
    assert queued(rt.redis) == 0, "the running job took the wake-up"


def test_a_drain_that_finds_nothing_looks_again_when_it_was_woken_meanwhile(rt: Runtime) -> None:
    woken = []

    def again() -> bool:  # the first time, a lead was routed to jsonl since the lease
        if woken:
            return False
        ingest(rt, form("name=Late&phone=%2B79161234569"))
        process_received(rt)
        woken.append(True)
        return True

    assert drain(rt, "jsonl", again=again).delivered == 1
    assert drain(rt, "jsonl").delivered == 0


def test_a_drain_waiting_for_a_wake_up_lets_another_drain_send_meanwhile(rt: Runtime) -> None:
    """The api's express drain, while a worker's drain waits: it used to give way to that
    drain (the steady role), and its lead waited out the whole wait."""
    ingest(rt, form("name=First&phone=%2B79161234567"))
    process_received(rt)
    assert drain(rt, "jsonl").delivered == 1  # the destination has answered: drains may share it
    meanwhile: list[int] = []

    def again() -> bool:
        if not meanwhile:
            ingest(rt, form("name=Express&phone=%2B79161234568"))
            process_received(rt)
            meanwhile.append(drain(rt, "jsonl").delivered)
        return False

    drain(rt, "jsonl", again=again)
    assert meanwhile == [1]


def test_routing_lets_a_stream_gather_but_never_delays_a_lone_lead_or_a_backlog() -> None:
    pause = jobs.gather_pause
    assert pause(1, 0) == 0, "a lone lead (or a burst's first batch) is routed at once"
    assert pause(0, 5) == 0, "a look that found nothing goes back to waiting for a wake-up"
    assert pause(jobs.BATCH, 30) == 0, "a full batch means a backlog: route on at once"
    assert pause(12, 30) == jobs.GATHER_S, "leads keep coming: let them gather"
    assert 0 < jobs.GATHER_S < jobs.PROCESS_BUDGET_S
