"""``leadhub serve`` runs its workers at a lower CPU priority than its api (``--worker-nice``,
``hub/cli.py``): on a machine short of CPU, webhooks are answered and committed first."""

from __future__ import annotations

import os

import pytest

from hub.cli import WORKER_NICE
from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter
from tests.e2e.test_orphans import command, descendants

pytestmark = pytest.mark.skipif(not hasattr(os, "getpriority") or not os.path.exists("/proc/self/stat"),
                                reason="reads the processes' nice values (Linux /proc, os.getpriority)")


def test_serve_runs_its_workers_at_a_lower_priority_than_its_api(
    write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    config = write_config("""
        [sources.site_form]
        plugin = "webform"
    """)
    hub = make_cluster(config, redis_url="")  # serve's own embedded Redis, a child too
    hub.start_serve()
    wait_until(lambda: hub.client.get("/readyz").status_code == 200, 60, 0.2,
               "leadhub serve to be ready (workers running)")
    assert hub.api is not None
    api = os.getpriority(os.PRIO_PROCESS, hub.api.pid)
    children = {pid: command(pid) for pid, _ in descendants(hub.api.pid)}
    workers = [pid for pid, cmd in children.items() if " worker " in cmd]
    redis = [pid for pid, cmd in children.items() if "redis-server" in cmd]
    assert len(workers) == 2 and len(redis) == 1, children
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in workers] == [min(19, api + WORKER_NICE)] * 2
    # the embedded Redis answers the api's wake-ups: it keeps the api's priority
    assert os.getpriority(os.PRIO_PROCESS, redis[0]) == api
    # a killed worker comes back at the same priority
    os.kill(workers[0], 9)
    wait_until(lambda: len([p for p, c in ((p, command(p)) for p, _ in descendants(hub.api.pid))
                            if " worker " in c and p not in workers]) == 1, 30, 0.2,
               "the supervisor to start the worker again")
    again = [p for p, _ in descendants(hub.api.pid) if " worker " in command(p) and p not in workers]
    assert os.getpriority(os.PRIO_PROCESS, again[0]) == min(19, api + WORKER_NICE)
