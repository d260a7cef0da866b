"""The ``facebook_leadads`` source: leadgen webhooks over real HTTP, and the lead's answers
fetched from a strict fake Graph API (``hub.testing.FakeGraph``) by the worker's ``enrich``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import ConnectorContext
from hub.engine.process import process_received
from hub.errors import AuthError, ParseError, PermanentError, RateLimited, RetryableError
from hub.models import Lead
from hub.runtime import Runtime
from hub.sdk.meta import sign
from hub.testing import FakeGraph, serving
from plugins.facebook_leadads import (
    FacebookLeadAdsConfig,
    FacebookLeadAdsSource,
    leadhub_register_connectors,
)
from tests.messenger_hub import ADMIN, leads, ledger, quarantined, running_hub, send
from tests.payload_loader import load_meta, load_request, payload_names, payload_path

APP_SECRET = "fb-app-secret"
VERIFY = "fb-verify-token"
TOKEN = "EAAGm0PX4ZCpsBA-page-token"
LEADGEN_ID = "444444444444"


def graph_answers() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(payload_path("facebook_leadads", "graph_lead_response").read_text())
    return data


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(access_token=TOKEN, app_secret=APP_SECRET)
    data = graph_answers()
    fake.add_lead(data["id"], {f["name"]: f["values"] for f in data["field_data"]},
                  created_time=data["created_time"], platform="ig", campaign_name="Spring sale",
                  ad_name="Video 1")
    yield from serving(fake)


def source(graph: FakeGraph | None = None, **settings: Any) -> FacebookLeadAdsSource:
    config = FacebookLeadAdsConfig.model_validate({
        "plugin": "facebook_leadads", "verify_token": VERIFY, "app_secret": APP_SECRET,
        "access_token": TOKEN, **({"base_url": graph.base_url_versioned} if graph else {}), **settings,
    })
    return FacebookLeadAdsSource(config, ConnectorContext(name="fb", data_dir=Path(".")))


def pointer_lead(leadgen_id: str = LEADGEN_ID) -> Lead:
    """The lead as the webhook left it: only the leadgen ids."""
    return Lead(id="01TEST", source="fb", channel="form", received_at=datetime(2026, 11, 23, tzinfo=UTC),
                fields={"leadgen_id": leadgen_id, "form_id": "1230000000000"})


def test_payloads_name_their_source_and_plugin_registers() -> None:
    assert {"leadgen", "graph_lead_response", "verify_get", "feed_reaction"} <= set(
        payload_names("facebook_leadads"))
    for name in payload_names("facebook_leadads"):
        load_meta("facebook_leadads", name)
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [FacebookLeadAdsSource]


def test_default_base_url_is_a_versioned_graph_url() -> None:
    assert source().config.base_url.startswith("https://graph.facebook.com/v")


def test_leadgen_change_is_a_draft_that_needs_enrichment() -> None:
    src, request = source(), load_request("facebook_leadads", "leadgen")
    src.verify(request)
    [event] = src.parse(request)
    assert event.event_id == LEADGEN_ID
    draft = event.lead
    assert draft is not None and draft.needs_enrichment and draft.channel == "form"
    assert draft.fields["leadgen_id"] == LEADGEN_ID and draft.fields["page_id"] == "153125381133"


def test_signature_and_verification() -> None:
    src = source()
    with pytest.raises(AuthError):
        src.verify(load_request("facebook_leadads", "leadgen", headers={"x-hub-signature-256": "sha256=00"}))
    answer = src.handshake(load_request("facebook_leadads", "verify_get"))
    assert answer is not None and answer.body == "98765"
    bad = {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "x"}
    with pytest.raises(AuthError) as caught:
        src.handshake(load_request("facebook_leadads", "verify_get", query=bad))
    assert caught.value.status_code == 403


@pytest.mark.parametrize("body", [b"[]", b'{"object": "whatsapp_business_account", "entry": []}',
                                  b'{"object": "page", "entry": [{"changes": [{"field": "leadgen", '
                                  b'"value": {"leadgen_id": "abc"}}]}]}'])
def test_garbage_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        source().parse(load_request("facebook_leadads", "leadgen", body=body))


def test_enrich_fills_the_lead_from_the_graph_api(graph: FakeGraph) -> None:
    src = source(graph, graph_fields="id,created_time,field_data,platform,campaign_name,ad_name")
    lead = src.enrich(pointer_lead())
    assert lead.contact.name == "Jane Doe"
    assert lead.contact.phones == ["+15105550123"] and lead.contact.emails == ["jane.doe@example.com"]
    assert lead.fields["city"] == "Oakland" and lead.fields["which_course_interests_you?"] == "data_analyst"
    assert lead.fields["leadgen_id"] == LEADGEN_ID
    assert (lead.utm.source, lead.utm.campaign, lead.utm.content) == ("instagram", "Spring sale", "Video 1")
    [call] = graph.requests
    assert call.path == f"/v24.0/{LEADGEN_ID}" and call.q("access_token") == TOKEN
    assert call.q("appsecret_proof")
    src.close()


def test_enrich_errors_map_to_retry_or_quarantine(graph: FakeGraph) -> None:
    with pytest.raises(PermanentError, match="100/33"):
        source(graph).enrich(pointer_lead("555"))  # a lead that does not exist (or no access)
    with pytest.raises(RetryableError, match="190"):
        source(graph, access_token="expired").enrich(pointer_lead())  # an admin can fix the token
    with pytest.raises(PermanentError, match="nonexisting field"):
        source(graph, graph_fields="id,field_data,bogus").enrich(pointer_lead())
    with graph.faults(ratio=1.0, kinds=("500",)), pytest.raises(RetryableError):
        source(graph).enrich(pointer_lead())
    with graph.faults(ratio=1.0, kinds=("429",)), pytest.raises(RateLimited):
        source(graph).enrich(pointer_lead())
    unreachable = source(base_url="http://127.0.0.1:9/v24.0", timeout_s=2)
    with pytest.raises(RetryableError) as caught:
        unreachable.enrich(pointer_lead())
    assert TOKEN not in str(caught.value)


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def hub(graph: FakeGraph, tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    config = f"""
[sources.fb]
plugin = "facebook_leadads"
verify_token = "{VERIFY}"
app_secret = "{APP_SECRET}"
access_token = "{TOKEN}"
base_url = "{graph.base_url_versioned}"
"""
    with running_hub(config, tmp_path, redis_url) as running:
        yield running


def test_http_verification_get(hub: Any) -> None:
    _, c = hub
    r = send(c, "fb", "facebook_leadads", "verify_get")
    assert r.status_code == 200 and r.text == "98765"
    wrong = {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"}
    assert send(c, "fb", "facebook_leadads", "verify_get", query=wrong).status_code == 403


def test_http_leadgen_is_a_lead_the_worker_enriches_from_graph(hub: Any, graph: FakeGraph) -> None:
    """Core part: the worker calls ``enrich`` for a draft with ``needs_enrichment``."""
    rt, c = hub
    r = send(c, "fb", "facebook_leadads", "leadgen")
    assert r.status_code == 200, r.text
    lead_id = r.json()["id"]
    assert graph.requests == []  # the webhook answered without calling Graph
    process_received(rt)
    lead = c.get(f"/api/leads/{lead_id}", headers=ADMIN).json()
    assert lead["channel"] == "form"
    assert lead["contact"]["name"] == "Jane Doe"
    assert lead["contact"]["phones"] == ["+15105550123"]
    assert lead["contact"]["emails"] == ["jane.doe@example.com"]
    assert lead["fields"]["leadgen_id"] == LEADGEN_ID
    assert len(graph.requests_to("GET", f"/v24.0/{LEADGEN_ID}")) == 1


def test_http_non_leadgen_change_is_stored_without_a_lead(hub: Any) -> None:
    _, c = hub
    assert send(c, "fb", "facebook_leadads", "feed_reaction").status_code == 200
    assert leads(c, "fb") == [] and ledger(c, "fb")["non_lead"] == 1


def test_http_bad_signature_is_401(hub: Any) -> None:
    _, c = hub
    body = load_request("facebook_leadads", "leadgen").body
    r = send(c, "fb", "facebook_leadads", "leadgen", headers={"x-hub-signature-256": sign(body, "x")})
    assert r.status_code == 401
    assert leads(c, "fb") == []


def test_http_redelivered_leadgen_id_is_one_lead(hub: Any) -> None:
    _, c = hub
    ids = {send(c, "fb", "facebook_leadads", "leadgen").json()["id"] for _ in range(3)}
    assert len(ids) == 1 and len(leads(c, "fb")) == 1


def test_http_authentic_garbage_is_quarantined_with_200(hub: Any) -> None:
    _, c = hub
    body = b'{"object": "page", "entry": [{"changes": [{"field": "leadgen", "value": {}}]}]}'
    r = send(c, "fb", "facebook_leadads", "leadgen", body=body,
             headers={"x-hub-signature-256": sign(body, APP_SECRET)})
    assert r.status_code == 200
    assert len(quarantined(c, "fb")) == 1
