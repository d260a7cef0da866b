"""``leadhub api --processes N``: N api processes on one port, as real processes. Every
request is stored once whichever process takes it, ``/metrics`` counts the requests of
all of them, one SIGKILLed is started again with no request lost, and all of them end
with the parent."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hub.testing.cluster import HubCluster, wait_until
from tests.conftest import ClusterFactory, ConfigWriter

CONFIG = """
[hub]
dedup_window_minutes = 0
public_metrics = true

[sources.site_form]
plugin = "webform"
"""


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(out)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def post_many(hub: HubCluster, start: int, n: int) -> list[int]:
    """``n`` leads, each on a connection of its own, eight at a time: the kernel hands the
    connections to whichever process accepts first."""
    def one(i: int) -> int:
        with httpx.Client(base_url=hub.base_url, timeout=30) as client:
            r = client.post("/hooks/site_form", data={"name": f"L{i}", "phone": f"+7916{i:07d}"})
            return r.status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(start, start + n)))


def webhooks_counted(hub: HubCluster) -> float:
    text = hub.client.get("/metrics").text
    line = next(x for x in text.splitlines()
                if x.startswith('leadhub_webhooks_total{outcome="lead",source="site_form"}'))
    return float(line.rsplit(" ", 1)[1])


def test_processes_share_the_port_the_counts_and_the_parents_fate(
    write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str,
) -> None:
    hub = make_cluster(write_config(CONFIG), database_url)
    hub.env["LEADHUB_API_PROCESSES"] = "2"
    hub.start_redis()
    hub.start_api()
    assert hub.api is not None
    wait_until(lambda: len(children(hub.api.pid)) == 2, 30, 0.1, "two api processes")
    first = children(hub.api.pid)
    metrics_dir = dict(
        kv.split("=", 1) for kv in Path(f"/proc/{first[0]}/environ").read_text().split("\0") if "=" in kv
    )["PROMETHEUS_MULTIPROC_DIR"]

    assert post_many(hub, 0, 60) == [200] * 60
    assert webhooks_counted(hub) == 60  # summed over both processes

    os.kill(first[0], signal.SIGKILL)
    assert post_many(hub, 60, 40) == [200] * 40  # the other one answers meanwhile
    wait_until(lambda: len(children(hub.api.pid)) == 2 and first[0] not in children(hub.api.pid),
               30, 0.1, "the killed api process started again")
    assert post_many(hub, 100, 20) == [200] * 20
    assert len(hub.leads()) == 120
    assert webhooks_counted(hub) == 120  # the killed one's count is kept

    now = children(hub.api.pid)
    hub.stop()
    wait_until(lambda: not any(alive(p) for p in now), 30, 0.1, "the api processes ending")
    assert not Path(metrics_dir).exists()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="sets the CPUs a process may use")
@pytest.mark.parametrize("cpus", [1, 2])
def test_the_api_runs_one_process_per_usable_core_up_to_two_when_not_told(
    write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str, cpus: int,
) -> None:
    """No ``--processes`` and no ``LEADHUB_API_PROCESSES``: as many api processes as the
    cores the command may use (its CPU affinity, inherited), at most two
    (``hub.cli.default_api_processes``)."""
    mine = os.sched_getaffinity(0)
    if len(mine) < cpus:
        pytest.skip(f"needs {cpus} usable CPUs, this process has {len(mine)}")
    hub = make_cluster(write_config(CONFIG), database_url)
    del hub.env["LEADHUB_API_PROCESSES"]  # HubCluster pins one unless told
    hub.start_redis()
    os.sched_setaffinity(0, sorted(mine)[:cpus])  # the api inherits it
    try:
        hub.start_api()
    finally:
        os.sched_setaffinity(0, mine)
    assert hub.api is not None
    if cpus == 1:  # the command serves itself
        assert children(hub.api.pid) == []
    else:
        wait_until(lambda: len(children(hub.api.pid)) == 2, 30, 0.1, "two api processes")
    assert post_many(hub, 0, 20) == [200] * 20
    assert len(hub.leads()) == 20
