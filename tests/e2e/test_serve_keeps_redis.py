"""``leadhub serve`` keeps the embedded Redis it started (``EmbeddedRedis.keep``): killed by
SIGKILL, the server is started again within a second, and the leads accepted while it was
gone are delivered. Before, every delivery stopped until serve itself was restarted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter
from tests.e2e.test_orphans import command, descendants, running

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="finds the processes in /proc (Linux)")


def test_embedded_redis_killed_under_serve_is_started_again_and_leads_are_delivered(
    write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str,
) -> None:
    config = write_config("""
        [hub]
        default_destinations = ["jsonl"]

        [sources.site_form]
        plugin = "webform"

        [destinations.jsonl]
        plugin = "file"
        path = "leads.jsonl"
    """)
    hub = make_cluster(config, database_url, redis_url="")  # serve owns its Redis
    hub.start_serve()
    wait_until(lambda: hub.client.get("/readyz").status_code == 200, 60, 0.2,
               "leadhub serve to be ready (workers running)")
    assert hub.api is not None

    def servers() -> set[tuple[int, str]]:
        return {p for p in descendants(hub.api.pid) if "redis-server" in command(p[0])}

    (old,) = servers()

    def post(i: int) -> str:
        r = hub.client.post("/hooks/site_form", data={"name": f"Lead {i}",
                                                       "phone": f"+7916{i:07d}"})
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    ids = [post(0)]
    os.kill(old[0], signal.SIGKILL)
    ids += [post(i) for i in range(1, 6)]  # accepted: the store is the record

    def delivered() -> bool:
        return {lead["id"] for lead in hub.leads() if lead["status"] == "delivered"} == set(ids)

    wait_until(delivered, 60, 0.5, "every lead delivered after the embedded Redis was killed")
    assert not running(old)
    assert len(servers()) == 1, "started again, once"
    wait_until(lambda: hub.client.get("/readyz").status_code == 200, 30, 0.2, "serve ready again")
    r = hub.client.post("/hooks/site_form", data={"name": "After", "phone": "+79160000099"})
    assert r.status_code == 200, r.text
    ids.append(str(r.json()["id"]))
    wait_until(delivered, 30, 0.2, "a lead posted after the restart delivered")
    assert hub.admin("GET", "/api/ledger").json()["balanced"]
