"""``leadhub serve`` runs its workers at a lower CPU priority than its api (``--worker-nice``,
``hub/cli.py``): on a machine short of CPU, webhooks are answered and committed first."""

from __future__ import annotations

import os
import signal

import pytest

from hub.cli import WORKER_NICE
from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter
from tests.e2e.test_orphans import command, descendants, ready_serve

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority") or not os.path.exists("/proc/self/stat"),
                                reason="reads the processes' nice values (Linux /proc, os.getpriority)")


def test_serve_runs_its_workers_at_a_lower_priority_than_its_api(
    write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    serve = ready_serve(write_config, make_cluster)  # its embedded Redis is a child too
    api = os.getpriority(os.PRIO_PROCESS, serve.pid)
    children = {pid: command(pid) for pid, _ in descendants(serve.pid)}
    workers = worker_pids(serve.pid)
    redis = [pid for pid, cmd in children.items() if "redis-server" in cmd]
    assert len(workers) == 2 and len(redis) == 1, children
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in workers] == [min(19, api + WORKER_NICE)] * 2
    # the embedded Redis answers the api's wake-ups: it keeps the api's priority
    assert os.getpriority(os.PRIO_PROCESS, redis[0]) == api
    # a killed worker comes back at the same priority
    os.kill(workers[0], signal.SIGKILL)
    wait_until(lambda: len(set(worker_pids(serve.pid)) - set(workers)) == 1, 30, 0.2,
               "the supervisor to start the worker again")
    (again,) = set(worker_pids(serve.pid)) - set(workers)
    assert os.getpriority(os.PRIO_PROCESS, again) == min(19, api + WORKER_NICE)


def worker_pids(pid: int) -> list[int]:
    return [p for p, _ in descendants(pid) if " worker " in command(p)]
