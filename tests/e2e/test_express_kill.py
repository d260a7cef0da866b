"""Express delivery (hub/engine/express.py) interrupted by SIGKILL: ``leadhub serve``'s api
process, idle, routes a lead and sends it to a webhook receiver itself; it is killed while
the receiver holds that request. Started again, the hub delivers the lead: at least once
to the receiver (every request with the same idempotency key, which the receiver
deduplicates on), recorded as delivered once in the store."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import psutil

from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter
from tests.plugins.test_webhook_destination import Answer, Receiver


def senders(port: int) -> set[int]:
    """The processes with a connection open to the receiver's port."""
    return {c.pid for c in psutil.net_connections(kind="tcp")
            if c.pid and c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED}


def test_serve_killed_during_an_express_delivery_delivers_the_lead_after_restart(
    write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str
) -> None:
    arrived, hold = threading.Event(), threading.Event()

    def policy(lead: dict[str, Any], headers: dict[str, str]) -> Answer:
        if not arrived.is_set():
            arrived.set()
            hold.wait(30)  # the first request is never answered before the kill
        return Answer(body={"id": f"ext-{lead['id']}"})

    with Receiver(policy) as receiver:
        config = write_config(f"""
            [hub]
            default_destinations = ["hook"]
            dedup_window_minutes = 0

            [sources.site_form]
            plugin = "webform"

            [destinations.hook]
            plugin = "webhook"
            url = "{receiver.url}"
            timeout_s = 1
        """)
        hub = make_cluster(config, database_url, redis_url="")  # serve owns its Redis
        hub.start_serve()
        wait_until(lambda: hub.client.get("/readyz").status_code == 200, 60, 0.2,
                   "leadhub serve to be ready (workers running)")
        assert hub.api is not None
        serve = hub.api
        r = hub.client.post("/hooks/site_form", data={"name": "Ivan", "phone": "+79161234567"})
        assert r.status_code == 200, r.text
        lead_id = r.json()["id"]
        assert arrived.wait(30), "the lead never reached the receiver"
        port = int(receiver.url.split(":")[2].split("/")[0])
        # the api process sent it (express), not one of serve's workers
        assert senders(port) == {serve.pid}
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(10)
        hold.set()
        hub.start_serve()

        def delivered() -> bool:
            leads = hub.leads()
            return len(leads) == 1 and leads[0]["status"] == "delivered"

        wait_until(delivered, 90, 0.5, "the lead delivered after the restart")
        with receiver.lock:
            got = [(h["idempotency-key"], lead["id"]) for h, lead, _ in receiver.received]
        assert len(got) >= 2, "the interrupted request was sent again"
        assert {key for key, _ in got} == {f"{lead_id}:hook"}
        assert {lid for _, lid in got} == {lead_id}
        assert hub.admin("GET", "/api/ledger").json()["balanced"]
