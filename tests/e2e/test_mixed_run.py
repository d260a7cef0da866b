"""One person, three doors: a Tilda form, then a call through Mango, then a Telegram
message sharing the same phone. Real processes, real HTTP, the providers' own payloads:
one lead and two duplicates pointing at it."""

from __future__ import annotations

from typing import Any

from hub.testing.cluster import HubCluster, wait_until
from tests.conftest import ClusterFactory, ConfigWriter
from tests.payload_loader import load_meta, payload_path

MANGO_KEY, MANGO_SALT = "k2nq7d1w0e8r5t9y3u6i4o2p1a7s5d3f", "s8d7f6g5h4j3k2l1z9x8c7v6b5n4m3q2"
TG_SECRET = "tg-secret_123"
CONFIG = f"""
[hub]
dedup_window_minutes = 30
default_destinations = ["jsonl"]

[sources.landing]
plugin = "tilda"

[sources.calls]
plugin = "mango"
api_key = "{MANGO_KEY}"
api_salt = "{MANGO_SALT}"

[sources.bot]
plugin = "telegram"
secret_token = "{TG_SECRET}"

[destinations.jsonl]
plugin = "file"
"""


def send(hub: HubCluster, source: str, plugin: str, name: str, **headers: str) -> Any:
    meta = load_meta(plugin, name)
    path = meta.get("path", "")
    r = hub.client.post(
        f"/hooks/{source}" + (f"/{path}" if path else ""),
        content=payload_path(plugin, name).read_bytes(),
        headers={"content-type": meta["content_type"], **meta.get("headers", {}), **headers},
    )
    assert r.status_code == 200, (plugin, r.status_code, r.text)
    return r


def settled(hub: HubCluster, n: int) -> list[dict[str, Any]] | None:
    leads = hub.leads()
    done = [x for x in leads if x["status"] not in ("received",)]
    return leads if len(leads) == n and len(done) == n else None


def test_form_then_call_then_telegram_make_one_lead_and_two_duplicates(
    write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    hub = make_cluster(write_config(CONFIG)).start(workers=1)
    r = hub.client.post("/hooks/landing", data={
        "Name": "Иван Петров", "Phone": "+7 (916) 123-45-67", "Email": "ivan@example.ru",
        "tranid": "1234567:1", "formid": "form1", "utm_source": "yandex",
    })
    assert r.status_code == 200 and r.text == "ok"
    wait_until(lambda: settled(hub, 1), 30, 0.2, "the form's lead processed")
    send(hub, "calls", "mango", "call_appeared")  # the caller is +79161234567
    wait_until(lambda: settled(hub, 2), 30, 0.2, "the call's lead processed")
    send(hub, "bot", "telegram", "contact_shared",
         **{"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    leads = wait_until(lambda: settled(hub, 3), 30, 0.2, "the chat's lead processed")

    by_channel = {x["channel"]: x for x in leads}
    assert set(by_channel) == {"form", "call", "messenger"}
    original = by_channel["form"]
    assert original["duplicate_of"] is None and original["contact"]["phones"] == ["+79161234567"]
    for channel in ("call", "messenger"):
        dup = by_channel[channel]
        assert dup["status"] == "duplicate" and dup["duplicate_of"] == original["id"], dup
        assert dup["contact"]["phones"] == ["+79161234567"]
    wait_until(lambda: hub.leads(status="delivered"), 30, 0.2, "the original delivered")
    ledger = hub.admin("GET", "/api/ledger").json()
    assert ledger["totals"]["leads"] == 1 and ledger["totals"]["duplicates"] == 2
    assert ledger["balanced"]
