"""Crash tests on real processes: a worker SIGKILLed mid-delivery, and Redis stopped
while webhooks arrive, then started empty. Every accepted lead must end up in the fake
amoCRM exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hub.testing.cluster import HubCluster, wait_until
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import ClusterFactory, ConfigWriter

TOKEN = "long-lived-token"
COMPLEX = "/api/v4/leads/complex"


def config(amo: FakeAmoCRM) -> str:
    return f"""
[hub]
default_destinations = ["amo_main"]
dedup_window_minutes = 0

[sources.site_form]
plugin = "webform"

[destinations.amo_main]
plugin = "amocrm"
base_url = "{amo.base_url}"
access_token = "{TOKEN}"
timeout_s = 2
"""


@pytest.fixture
def amo() -> Iterator[FakeAmoCRM]:
    with FakeAmoCRM(token=TOKEN) as fake:
        yield fake


def post_leads(hub: HubCluster, start: int, n: int) -> list[str]:
    ids = []
    for i in range(start, start + n):
        r = hub.client.post("/hooks/site_form", data={"name": f"Lead {i}", "phone": f"+7916{i:07d}"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    return ids


def assert_exactly_once(hub: HubCluster, amo: FakeAmoCRM, ids: list[str]) -> None:
    def done() -> bool:
        leads = hub.leads()
        return len(leads) == len(ids) and all(x["status"] == "delivered" for x in leads)

    wait_until(done, 120, 0.5, "every accepted lead delivered")
    by_tag = amo.leads_by_marker("lh:")
    assert sorted(by_tag) == sorted(f"lh:{i}:amo_main" for i in ids)
    doubles = {tag: deals for tag, deals in by_tag.items() if len(deals) != 1}
    assert not doubles, f"leads delivered more than once: {doubles}"
    assert len(amo.leads) == len(ids)
    assert hub.admin("GET", "/api/ledger").json()["balanced"]


def test_worker_killed_mid_delivery_then_restarted(
    amo: FakeAmoCRM, write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str
) -> None:
    hub = make_cluster(write_config(config(amo)), database_url).start(workers=0)
    ids = post_leads(hub, 0, 40)
    # every create lands in amoCRM and then hangs: the worker dies waiting for the answer
    amo.faults(1.0, ("timeout",), after_ratio=1.0, hang_s=30, paths=(COMPLEX,))
    worker = hub.start_worker()
    wait_until(lambda: amo.requests_to("POST", COMPLEX), 30, 0.05, "a delivery in flight")
    time.sleep(0.2)
    hub.kill(worker)
    landed = len(amo.leads)
    assert landed > 0  # the CRM has deals the hub never heard back about
    amo.no_faults()
    ids += post_leads(hub, 40, 10)
    hub.start_worker()
    assert_exactly_once(hub, amo, ids)
    lookups = [r for r in amo.requests if r.method == "GET" and r.path == "/api/v4/leads"]
    assert lookups, "the uncertain deliveries were looked up before any create"


def test_redis_stopped_while_webhooks_arrive_then_started_empty(
    amo: FakeAmoCRM, write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str
) -> None:
    hub = make_cluster(write_config(config(amo)), database_url).start(workers=1)
    ids = post_leads(hub, 0, 20)
    hub.stop_redis()
    ids += post_leads(hub, 20, 30)  # accepted: the store is the record, Redis only wakes
    assert hub.client.get("/readyz").status_code == 503
    hub.start_redis(wipe=True)
    ids += post_leads(hub, 50, 10)
    assert_exactly_once(hub, amo, ids)
    assert hub.client.get("/readyz").status_code == 200
