"""The ``whatsapp`` source: Cloud API notifications from payload files, and over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import ConnectorContext, ParsedEvent
from hub.errors import AuthError, ParseError
from hub.runtime import Runtime
from hub.sdk.meta import sign
from plugins.whatsapp import WhatsAppConfig, WhatsAppSource, leadhub_register_connectors
from tests.messenger_hub import leads, ledger, quarantined, running_hub, send
from tests.payload_loader import load_request, payload_names

APP_SECRET = "whatsapp-app-secret"
VERIFY = "wa-verify-token"
CONFIG = f"""
[sources.wa]
plugin = "whatsapp"
verify_token = "{VERIFY}"
app_secret = "{APP_SECRET}"
"""


def source() -> WhatsAppSource:
    config = WhatsAppConfig.model_validate(
        {"plugin": "whatsapp", "verify_token": VERIFY, "app_secret": APP_SECRET})
    return WhatsAppSource(config, ConnectorContext(name="wa", data_dir=Path(".")))


def parse(name: str, body: bytes | None = None) -> list[ParsedEvent]:
    return source().parse(load_request("whatsapp", name, body=body))


def signed(body: bytes) -> dict[str, str]:
    return {"x-hub-signature-256": sign(body, APP_SECRET)}


def test_payloads_name_their_source_and_plugin_registers() -> None:
    assert {"message_text", "status_delivered", "message_ctwa_referral", "verify_get"} <= set(
        payload_names("whatsapp"))
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [WhatsAppSource]


def test_signature_is_checked_over_the_raw_bytes() -> None:
    src, request = source(), load_request("whatsapp", "message_text")
    src.verify(request)
    # the same JSON with UTF-8 instead of Meta's \\u escapes is not what Meta signed
    reserialized = json.dumps(json.loads(request.body), ensure_ascii=False, separators=(",", ":"))
    with pytest.raises(AuthError):
        src.verify(load_request("whatsapp", "message_text", body=reserialized.encode()))
    for header in ("", "sha256=", "sha1=abc", "sha256=" + "0" * 64):
        with pytest.raises(AuthError):
            src.verify(load_request("whatsapp", "message_text", headers={"x-hub-signature-256": header}))


def test_verification_get() -> None:
    src = source()
    answer = src.handshake(load_request("whatsapp", "verify_get"))
    assert answer is not None and answer.body == "1158201444" and answer.media_type == "text/plain"
    wrong = {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "nope"}
    with pytest.raises(AuthError) as caught:
        src.handshake(load_request("whatsapp", "verify_get", query=wrong))
    assert caught.value.status_code == 403
    assert src.handshake(load_request("whatsapp", "message_text")) is None


def test_text_message_is_a_lead_by_wamid() -> None:
    [event] = parse("message_text")
    assert event.event_id == "wamid.HBgLNzkxNjExMTIyMzMVAgASGBQzQTdGRTUzNjk0RDdDRDdEMDQ2NQA="
    lead = event.lead
    assert lead is not None and lead.channel == "messenger"
    assert lead.name == "Мария Иванова" and lead.phones == ["+79161112233"]
    assert [(m.kind, m.id) for m in lead.messengers] == [("whatsapp", "79161112233")]
    assert lead.message == "Здравствуйте, хочу записаться на курс"
    assert lead.conversation_key == "wa:79161112233"


def test_click_to_whatsapp_ad_keeps_ctwa_clid_and_the_ad() -> None:
    [event] = parse("message_ctwa_referral")
    lead = event.lead
    assert lead is not None and lead.click_ids["ctwa_clid"].startswith("ARAkLkA8")
    assert lead.fields["referral_source_url"] == "https://fb.me/3cr4Wqqkv"
    assert lead.fields["referral_headline"] == "Data analyst course"
    assert lead.phones == ["+16505551234"]  # a foreign number survives the RU default region


def test_username_user_without_a_phone_is_known_by_business_scoped_id() -> None:
    [event] = parse("message_username_bsuid")
    lead = event.lead
    assert lead is not None and lead.phones == []
    assert [(m.id, m.username) for m in lead.messengers] == [("DE.1502576394655843", "@olga.design")]


def test_statuses_and_other_fields_are_not_leads() -> None:
    [event] = parse("status_delivered")
    assert event.lead is None and event.event_id == (
        "status:wamid.HBgLNzkxNjExMTIyMzMVAgARGBI1RjQ0QzM4QjY4MzI0MTY0QjQA:delivered")
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "message_template_status_update", "value": {"event": "APPROVED"}}]}]}).encode()
    [other] = parse("message_text", body=body)
    assert other.lead is None and other.reason


def test_one_notification_with_several_messages_gives_one_event_each() -> None:
    data = json.loads(load_request("whatsapp", "message_text").body)
    value = data["entry"][0]["changes"][0]["value"]
    second = dict(value["messages"][0], id="wamid.second", text={"body": "и ещё вопрос"})
    value["messages"].append(second)
    events = parse("message_text", body=json.dumps(data).encode())
    assert [e.event_id for e in events][1] == "wamid.second" and all(e.lead for e in events)


@pytest.mark.parametrize("body", [
    b"[]", b"{}", b'{"object": "page", "entry": []}', b'{"object": "whatsapp_business_account"}',
    b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}',
    b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
    b'"value": {"messages": [{"id": "w", "type": "text"}]}}]}]}',
    b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
    b'"value": {"messages": "x"}}]}]}',
])
def test_garbage_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse("message_text", body=body)


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def hub(tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_hub(CONFIG, tmp_path, redis_url) as running:
        yield running


def test_http_verification_get_answers_the_challenge_and_403_on_a_wrong_token(hub: Any) -> None:
    _, c = hub
    r = send(c, "wa", "whatsapp", "verify_get")
    assert r.status_code == 200 and r.text == "1158201444"
    assert r.headers["content-type"].startswith("text/plain")
    r = send(c, "wa", "whatsapp", "verify_get",
             query={"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "wrong"})
    assert r.status_code == 403
    assert ledger(c, "wa").get("events", 0) == 0


def test_http_message_is_a_lead_with_phone_and_click_id(hub: Any) -> None:
    _, c = hub
    assert send(c, "wa", "whatsapp", "message_text").status_code == 200
    r = send(c, "wa", "whatsapp", "message_ctwa_referral")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    by_phone = {lead["contact"]["phones"][0]: lead for lead in leads(c, "wa")}
    assert by_phone["+79161112233"]["contact"]["name"] == "Мария Иванова"
    assert by_phone["+16505551234"]["click_ids"]["ctwa_clid"].startswith("ARAkLkA8")


def test_http_status_is_stored_without_a_lead(hub: Any) -> None:
    _, c = hub
    assert send(c, "wa", "whatsapp", "status_delivered").status_code == 200
    assert leads(c, "wa") == [] and ledger(c, "wa")["non_lead"] == 1


def test_http_bad_or_missing_signature_is_401(hub: Any) -> None:
    _, c = hub
    body = load_request("whatsapp", "message_text").body
    r = send(c, "wa", "whatsapp", "message_text", headers={"x-hub-signature-256": sign(body, "other")})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
    assert send(c, "wa", "whatsapp", "message_text", drop_headers=("x-hub-signature-256",)).status_code == 401
    reserialized = json.dumps(json.loads(body), ensure_ascii=False).encode()
    r = send(c, "wa", "whatsapp", "message_text", body=reserialized)
    assert r.status_code == 401
    assert leads(c, "wa") == []


def test_http_redelivered_message_is_one_lead(hub: Any) -> None:
    _, c = hub
    first = send(c, "wa", "whatsapp", "message_text").json()["id"]
    again = send(c, "wa", "whatsapp", "message_text")
    assert again.status_code == 200 and again.json()["id"] == first
    assert len(leads(c, "wa")) == 1


def test_http_authentic_garbage_is_quarantined_with_200(hub: Any) -> None:
    _, c = hub
    body = b'{"object": "whatsapp_business_account", "entry": "nope"}'
    r = send(c, "wa", "whatsapp", "message_text", body=body, headers=signed(body))
    assert r.status_code == 200
    assert len(quarantined(c, "wa")) == 1 and leads(c, "wa") == []
