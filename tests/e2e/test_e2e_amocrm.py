"""End to end over real HTTP and real processes: the webform payloads, posted to the
hub's api, come out of a worker into the fake amoCRM as one deal each, with contact,
phone, email, UTM tags and the responsible user, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from hub.testing.cluster import HubCluster, wait_until
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import ClusterFactory, ConfigWriter
from tests.payload_loader import load_meta, payload_path

PAYLOADS = ["urlencoded_ru", "multipart_chrome", "json_fetch", "tilda_cookies"]
TOKEN = "long-lived-token"


def config(amo: FakeAmoCRM) -> str:
    return f"""
[hub]
default_region = "RU"

[sources.site_form]
plugin = "webform"

[destinations.amo_main]
plugin = "amocrm"
base_url = "{amo.base_url}"
access_token = "{TOKEN}"
pipeline_id = 7000001
timeout_s = 5

[[routes]]
name = "everything"
match = {{ source = "site_*" }}
destinations = ["amo_main"]
assign = {{ strategy = "round_robin", managers = ["1001", "1002"] }}
"""


@pytest.fixture
def amo() -> Iterator[FakeAmoCRM]:
    with FakeAmoCRM(token=TOKEN) as fake:
        yield fake
        fake.assert_clean()


def post_payload(hub: HubCluster, name: str) -> dict[str, Any]:
    meta = load_meta("webform", name)
    headers = {"content-type": meta["content_type"], **meta.get("headers", {})}
    r = hub.client.post("/hooks/site_form", content=payload_path("webform", name).read_bytes(),
                        headers=headers)
    assert r.status_code == 200, (name, r.text)
    body: dict[str, Any] = r.json()
    return body


def custom(entity: dict[str, Any], code: str) -> list[str]:
    return [v["value"] for f in entity.get("custom_fields_values") or [] if f.get("field_code") == code
            for v in f["values"]]


def test_webform_payloads_become_one_deal_each(
    amo: FakeAmoCRM, write_config: ConfigWriter, make_cluster: ClusterFactory, database_url: str
) -> None:
    hub = make_cluster(write_config(config(amo)), database_url).start()
    ids = [post_payload(hub, name)["id"] for name in PAYLOADS]

    def all_delivered() -> bool:
        leads = hub.leads()
        return len(leads) == len(ids) and all(x["status"] == "delivered" for x in leads)

    wait_until(all_delivered, 60, 0.2, "every lead delivered to amoCRM")
    leads = {x["id"]: x for x in hub.leads()}
    by_tag = amo.leads_by_marker("lh:")
    assert sorted(by_tag) == sorted(f"lh:{i}:amo_main" for i in ids)
    assert all(len(deals) == 1 for deals in by_tag.values())
    deals = {d["id"]: d for d in amo.leads}
    managers = set()
    for lead_id in ids:
        lead = leads[lead_id]
        [delivery] = lead["deliveries"]
        deal = deals[int(delivery["external_id"])]
        assert deal["pipeline_id"] == 7000001
        assert deal["responsible_user_id"] == int(lead["assigned_to"])
        managers.add(lead["assigned_to"])
        [contact] = amo.contacts_of(deal["id"])
        assert custom(contact, "PHONE")[:1] == lead["contact"]["phones"][:1]
        assert custom(contact, "EMAIL") == lead["contact"]["emails"][: len(custom(contact, "EMAIL"))]
        if lead["utm"]["source"]:
            assert custom(deal, "UTM_SOURCE") == [lead["utm"]["source"]]
        if lead["utm"]["campaign"]:
            assert custom(deal, "UTM_CAMPAIGN") == [lead["utm"]["campaign"]]
    assert managers == {"1001", "1002"}

    ivan = next(x for x in leads.values() if x["contact"]["phones"] == ["+79161234567"])
    assert ivan["contact"]["emails"] == ["ivan.petrov@example.ru"]
    assert ivan["utm"]["source"] == "yandex" and ivan["utm"]["campaign"] == "spring"
    deal = deals[int(ivan["deliveries"][0]["external_id"])]
    assert custom(deal, "UTM_SOURCE") == ["yandex"] and custom(deal, "UTM_MEDIUM") == ["cpc"]
    maria = next(x for x in leads.values() if x["contact"]["phones"] == ["+79162223344"])
    assert maria["utm"]["source"] == "yandex" and maria["click_ids"]["gclid"]  # from Tilda cookies
    assert amo.count_429 == 0
    ledger = hub.admin("GET", "/api/ledger").json()
    assert ledger["totals"]["delivered"] == len(ids) and ledger["balanced"]
