"""The HTTP contract over real HTTP on loopback: what each request gets, JSON errors,
the admin API and its token, health and metrics."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hub.runtime import Runtime
from hub.sdk import sign_standard_webhook as sign
from hub.store import tables as t
from hub.testing.cluster import running_app
from tests.conftest import ConfigWriter

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
CONFIG = f"""
[hub]
admin_token = "adm"
max_body_bytes = 4096
default_destinations = ["jsonl"]

[sources.site_form]
plugin = "webform"

[sources.locked]
plugin = "webform"
token = "form-secret"

[sources.signed]
plugin = "webform"
signing_secret = "{SECRET}"

[sources.off]
plugin = "webform"
enabled = false

[sources.big]
plugin = "webform"
max_body_bytes = 16384

[destinations.jsonl]
plugin = "file"
"""
ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_app(write_config(CONFIG), data_dir=tmp_path / "data", redis_url=redis_url) as hub:
        yield hub


def count(rt: Runtime, table: Any) -> int:
    with rt.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def error_code(r: httpx.Response) -> str:
    code: str = r.json()["error"]["code"]
    return code


def test_form_post_is_accepted_and_stored_before_the_answer(hub: Any) -> None:
    rt, c = hub
    r = c.post("/hooks/site_form", data={"name": "Иван", "phone": "8 (916) 123-45-67",
                                         "utm_source": "yandex", "utm_campaign": "spring"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "accepted" and body["id"]
    assert count(rt, t.inbound_events) == 1 and count(rt, t.leads) == 1
    lead = c.get(f"/api/leads/{body['id']}", headers=ADMIN).json()
    assert lead["contact"]["phones"] == ["+79161234567"]
    assert lead["utm"]["source"] == "yandex" and lead["utm"]["campaign"] == "spring"


def test_unknown_and_disabled_sources_get_404(hub: Any) -> None:
    _, c = hub
    for name in ("nope", "off"):
        r = c.post(f"/hooks/{name}", data={"phone": "+79161234567"})
        assert r.status_code == 404 and error_code(r) == "unknown_source"


def test_token_source_rejects_without_token_and_accepts_with_it(hub: Any) -> None:
    rt, c = hub
    r = c.post("/hooks/locked", data={"phone": "+79161234567"})
    assert r.status_code == 401 and r.json()["error"]["message"]
    assert count(rt, t.leads) == 0
    assert c.post("/hooks/locked?token=wrong", data={"phone": "+79161234567"}).status_code == 401
    assert c.post("/hooks/locked?token=form-secret", data={"phone": "+79161234567"}).status_code == 200
    r = c.post("/hooks/locked", data={"phone": "+79161234568"},
               headers={"X-Leadhub-Token": "form-secret"})
    assert r.status_code == 200
    with rt.db.connect() as conn:
        stored = [q for (q,) in conn.execute(select(t.inbound_events.c.query))]
    assert all("form-secret" not in q for q in stored)


def test_standard_webhooks_signature(hub: Any) -> None:
    _, c = hub
    body = json.dumps({"name": "Анна", "phone": "+79161234567"}).encode()
    headers = sign(SECRET, "msg_1", datetime.now(UTC), body)
    headers["content-type"] = "application/json"
    r = c.post("/hooks/signed", content=body, headers=headers)
    assert r.status_code == 200, r.text
    lead_id = r.json()["id"]
    # the provider retries the same message: same lead
    again = c.post("/hooks/signed", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == lead_id
    bad = dict(headers, **{"webhook-signature": "v1,AAAA"})
    assert c.post("/hooks/signed", content=body, headers=bad).status_code == 401
    old = sign(SECRET, "msg_2", int(time.time()) - 3600, body)
    assert c.post("/hooks/signed", content=body, headers={**old, "content-type": "application/json"}
                  ).status_code == 401


def test_body_over_the_limit_gets_413(hub: Any) -> None:
    rt, c = hub
    r = c.post("/hooks/site_form", content=b"phone=1&x=" + b"a" * 5000,
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413 and error_code(r) == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(10):
            yield b"a" * 1000

    r = c.post("/hooks/site_form", content=chunks(),
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert count(rt, t.inbound_events) == 0
    # a source's own limit (e-mail with attachments) stands instead of the hub's
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = c.post("/hooks/big", content=b"phone=89161234567&x=" + b"a" * 10000, headers=form)
    assert r.status_code == 200, r.text
    r = c.post("/hooks/big", content=b"phone=89161234567&x=" + b"a" * 20000, headers=form)
    assert r.status_code == 413 and "16384" in r.text
    assert count(rt, t.inbound_events) == 1


def test_no_contact_is_quarantined_with_422(hub: Any) -> None:
    _, c = hub
    r = c.post("/hooks/site_form", data={"name": "Nobody", "comment": "call me"})
    assert r.status_code == 422
    assert "no contact" in r.json()["error"]["message"]
    q = c.get("/api/quarantine", headers=ADMIN).json()["items"]
    assert len(q) == 1 and q[0]["source"] == "site_form" and "comment=call+me" in q[0]["request"]["body"]


def test_a_quarantine_page_size_out_of_range_is_a_422(hub: Any) -> None:
    """Found by schemathesis: a huge negative ``limit`` reached the database and answered 500."""
    _, c = hub
    for limit in ("-8249806869462146613248", "0", "-1", "1001"):
        r = c.get("/api/quarantine", params={"limit": limit}, headers=ADMIN)
        assert r.status_code == 422, (limit, r.text)


def test_garbage_json_is_quarantined(hub: Any) -> None:
    rt, c = hub
    r = c.post("/hooks/site_form", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert count(rt, t.quarantine) == 1 and count(rt, t.inbound_events) == 1


def test_admin_api_needs_the_token(hub: Any) -> None:
    _, c = hub
    assert c.get("/api/leads").status_code == 401
    assert c.get("/api/leads", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = c.get("/api/leads", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}


def test_leads_pagination_and_filters(hub: Any) -> None:
    _, c = hub
    for i in range(5):
        # a space cannot be part of an id (a ULID) or a phone: "Guest 3" matches one lead only
        c.post("/hooks/site_form", data={"phone": f"+7916123450{i}", "name": f"Guest {i}"})
    page = c.get("/api/leads", params={"limit": 2}, headers=ADMIN).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen = [x["id"] for x in page["items"]]
    while page["next_cursor"]:
        page = c.get("/api/leads", params={"limit": 2, "cursor": page["next_cursor"]},
                     headers=ADMIN).json()
        seen += [x["id"] for x in page["items"]]
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)
    assert len(c.get("/api/leads", params={"q": "guest 3"}, headers=ADMIN).json()["items"]) == 1
    assert c.get("/api/leads", params={"source": "x"}, headers=ADMIN).json()["items"] == []
    r = c.get("/api/leads", params={"since": "yesterday"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "since"


def test_unknown_lead_is_json_404(hub: Any) -> None:
    _, c = hub
    r = c.get("/api/leads/nope", headers=ADMIN)
    assert r.status_code == 404 and error_code(r) == "not_found"


def test_health_ready_metrics_openapi(hub: Any) -> None:
    _, c = hub
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").status_code == 200
    c.post("/hooks/site_form", data={"phone": "+79161234567"})
    metrics = c.get("/metrics", headers=ADMIN).text
    assert 'leadhub_webhooks_total{outcome="lead",source="site_form"}' in metrics
    assert "leadhub_leads" in metrics
    paths = c.get("/openapi.json", headers=ADMIN).json()["paths"]
    assert "/api/leads" in paths and "/hooks/{source}" in paths


def test_connectors_enable_disable_persist(hub: Any) -> None:
    rt, c = hub
    r = c.post("/api/connectors/site_form/disable", headers=ADMIN)
    assert r.json() == {"name": "site_form", "enabled": False}
    assert c.post("/hooks/site_form", data={"phone": "+79161234567"}).status_code == 404
    assert rt.enabled_overrides() == {"site_form": False}
    c.post("/api/connectors/site_form/enable", headers=ADMIN)
    assert c.post("/hooks/site_form", data={"phone": "+79161234567"}).status_code == 200
    names = {x["name"]: x["enabled"] for x in c.get("/api/connectors", headers=ADMIN).json()["items"]}
    assert names["site_form"] is True and names["off"] is False


def test_plugins_listing_has_schemas(hub: Any) -> None:
    _, c = hub
    items = {p["id"]: p for p in c.get("/api/plugins", headers=ADMIN).json()["items"]}
    assert {"webform", "file", "webhook", "amocrm"} <= set(items)
    assert items["webform"]["kind"] == "source"
    assert "token" in items["webform"]["settings_schema"]["properties"]


def test_readyz_fails_when_a_queue_had_work_and_did_not_move(hub: Any) -> None:
    rt, c = hub
    assert c.post("/hooks/site_form", data={"phone": "+79161234567"}).status_code == 200
    old = time.time() - 600  # received ten minutes ago and never processed: no worker runs
    with rt.db.begin() as conn:
        conn.execute(t.leads.update().values(received_at=old))
    r = c.get("/readyz")
    assert r.status_code == 503 and "stalled: process" in r.json()["reasons"]
    with rt.db.begin() as conn:
        conn.execute(t.leads.update().values(status="routed"))
        conn.execute(t.deliveries.insert().values(
            id="d1", lead_id="x", destination="jsonl", status="pending", idempotency_key="x:jsonl",
            attempts=0, next_attempt_at=old, lease_until=0.0, uncertain=False, created_at=old,
            updated_at=old,
        ))
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["reasons"] == ["stalled: deliver:jsonl"]
    # a destination held on purpose (disabled) is not a stall
    assert c.post("/api/connectors/jsonl/disable", headers=ADMIN).status_code == 200
    assert c.get("/readyz").status_code == 200
    metrics = c.get("/metrics", headers=ADMIN).text
    assert 'leadhub_queue_due{destination="jsonl"} 1.0' in metrics
    assert 'leadhub_events_total{outcome="lead",source="site_form"} 1.0' in metrics


def test_ledger_cli_balances(hub: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    rt, c = hub
    c.post("/hooks/site_form", data={"phone": "+79161234567"})
    c.post("/hooks/site_form", data={"name": "no contact"})
    run = subprocess.run(
        [sys.executable, "-m", "hub.cli", "ledger", "--format", "json",
         "--config", str(rt.config.path)],
        capture_output=True, text=True, timeout=60,
        env={**__import__("os").environ, "LEADHUB_DATA_DIR": str(rt.data_dir)},
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["totals"]["events"] == 2 and doc["totals"]["leads"] == 1
    assert doc["totals"]["quarantined"] == 1 and doc["balanced"]


def test_web_admin_signs_in_with_the_token_and_uses_the_api(hub: Any) -> None:
    _, c = hub
    page = c.get("/admin/")
    assert page.status_code == 200 and 'name="token"' in page.text
    own = {"Origin": str(c.base_url).rstrip("/")}  # hub/api/csrf.py: sign-ins from the hub's own page
    assert c.post("/admin/login", data={"token": "nope"}, headers=own).status_code == 401
    r = c.post("/admin/login", data={"token": "adm"}, headers=own, follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    page = c.get("/admin/")
    assert "LeadHub admin" in page.text and 'name="csrf-token"' in page.text
    assert "/api" in c.get("/admin/admin.js").text
    assert c.get("/api/leads").status_code == 200  # the session cookie stands in for the bearer token
    c.cookies.clear()
    assert c.get("/api/leads").status_code == 401
