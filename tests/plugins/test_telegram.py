"""The ``telegram`` source: Bot API updates parsed from payload files, and over real HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from hub.connectors import ConnectorContext, LeadDraft
from hub.errors import AuthError, ParseError
from hub.runtime import Runtime
from plugins.telegram import TelegramConfig, TelegramSource, leadhub_register_connectors
from tests.messenger_hub import leads, ledger, quarantined, running_hub, send
from tests.payload_loader import load_request, payload_names

SECRET = "tg-secret_Token-123"
CONFIG = f"""
[sources.tg]
plugin = "telegram"
secret_token = "{SECRET}"
"""


def source(**settings: Any) -> TelegramSource:
    config = TelegramConfig.model_validate({"plugin": "telegram", "secret_token": SECRET, **settings})
    return TelegramSource(config, ConnectorContext(name="tg", data_dir=Path(".")))


def draft_of(name: str) -> tuple[str | None, LeadDraft]:
    events = source().parse(load_request("telegram", name))
    assert len(events) == 1 and events[0].lead is not None
    return events[0].event_id, events[0].lead


def test_payloads_name_their_source_and_plugin_registers() -> None:
    assert {"message_text", "contact_shared", "start_deeplink", "edited_message"} <= set(
        payload_names("telegram"))
    for name in payload_names("telegram"):
        load_request("telegram", name)
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [TelegramSource]


def test_secret_token_must_use_telegrams_charset() -> None:
    with pytest.raises(ValidationError, match="Telegram accepts"):
        source(secret_token="has space")
    with pytest.raises(ValidationError, match=r"secret_token\s+is empty"):
        source(secret_token="")


def test_verify_compares_the_header() -> None:
    src = source()
    src.verify(load_request("telegram", "message_text"))
    for headers in ({"x-telegram-bot-api-secret-token": "wrong"}, {"x-telegram-bot-api-secret-token": ""}):
        with pytest.raises(AuthError):
            src.verify(load_request("telegram", "message_text", headers=headers))
    source(secret_token=None).verify(load_request("telegram", "message_text", headers={}))


def test_message_becomes_a_messenger_draft_of_its_chat() -> None:
    event_id, draft = draft_of("message_text")
    assert event_id == "731200002"
    assert draft.channel == "messenger" and draft.name == "Иван Петров"
    assert [(m.kind, m.id, m.username) for m in draft.messengers] == [
        ("telegram", "123456789", "ivan_petrov")]
    assert draft.message == "Здравствуйте! Сколько стоит курс аналитика?"
    assert draft.conversation_key == "tg:123456789"


def test_own_shared_contact_gives_the_phone_with_its_plus() -> None:
    _, draft = draft_of("contact_shared")
    assert draft.phones == ["+79161234567"]
    assert draft.conversation_key == "tg:123456789"


def test_someone_elses_contact_is_kept_not_taken_as_the_senders_phone() -> None:
    update = json.loads(load_request("telegram", "contact_shared").body)
    update["message"]["contact"]["user_id"] = 999
    events = source().parse(load_request("telegram", "contact_shared", body=json.dumps(update).encode()))
    lead = events[0].lead
    assert lead is not None and lead.phones == []
    assert lead.fields["shared_contact"]["phone_number"] == "79161234567"


def test_start_payload_is_kept_and_base64url_query_gives_utm() -> None:
    _, draft = draft_of("start_deeplink")
    assert draft.message is None
    assert draft.fields["start_payload"].startswith("dXRt")
    assert draft.utm == {"source": "yandex", "campaign": "spring"}
    payload = base64.urlsafe_b64encode(json.dumps({"utm_medium": "cpc", "yclid": "42"}).encode())
    body = json.dumps({"update_id": 1, "message": {
        "message_id": 1, "from": {"id": 5, "is_bot": False, "first_name": "A"},
        "chat": {"id": 5, "type": "private"}, "date": 1, "text": f"/start {payload.decode().rstrip('=')}"}})
    lead = source().parse(load_request("telegram", "start_deeplink", body=body.encode()))[0].lead
    assert lead is not None and lead.utm == {"medium": "cpc"} and lead.click_ids == {"yclid": "42"}
    body = body.replace(payload.decode().rstrip("="), "promo_spring")
    lead = source().parse(load_request("telegram", "start_deeplink", body=body.encode()))[0].lead
    assert lead is not None and lead.utm == {} and lead.fields["start_payload"] == "promo_spring"


def test_entities_are_cut_in_utf16_units_after_an_emoji() -> None:
    _, draft = draft_of("message_entities")
    assert "+7 (916) 765-43-21" in draft.phones
    assert "anna@example.ru" in draft.emails


@pytest.mark.parametrize("name", ["edited_message", "callback_query", "my_chat_member", "group_message"])
def test_updates_that_are_not_leads(name: str) -> None:
    events = source().parse(load_request("telegram", name))
    assert len(events) == 1 and events[0].lead is None and events[0].reason
    assert events[0].event_id is not None


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"update_id": "x", "message": {}}',
                                  b'{"update_id": 5}', b'{"update_id": 5, "message": "hi"}', b"\xff"])
def test_garbage_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        source().parse(load_request("telegram", "message_text", body=body))


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def hub(tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_hub(CONFIG, tmp_path, redis_url) as running:
        yield running


def test_http_message_is_a_lead_answered_with_an_empty_200(hub: Any) -> None:
    _, c = hub
    r = send(c, "tg", "telegram", "message_text")
    assert r.status_code == 200 and r.content == b""
    [lead] = leads(c, "tg")
    assert lead["channel"] == "messenger"
    assert lead["contact"]["messengers"] == [
        {"kind": "telegram", "id": "123456789", "username": "ivan_petrov"}]


def test_http_non_lead_updates_are_stored_without_a_lead(hub: Any) -> None:
    _, c = hub
    for name in ("edited_message", "callback_query", "my_chat_member", "group_message"):
        r = send(c, "tg", "telegram", name)
        assert r.status_code == 200, (name, r.text)
    assert leads(c, "tg") == []
    assert ledger(c, "tg")["non_lead"] == 4


def test_http_wrong_or_missing_secret_token_is_401(hub: Any) -> None:
    _, c = hub
    r = send(c, "tg", "telegram", "message_text", headers={"x-telegram-bot-api-secret-token": "nope"})
    assert r.status_code == 401
    r = send(c, "tg", "telegram", "message_text", drop_headers=("x-telegram-bot-api-secret-token",))
    assert r.status_code == 401
    assert leads(c, "tg") == []


def test_http_redelivered_update_id_is_one_lead(hub: Any) -> None:
    _, c = hub
    for _ in range(3):
        assert send(c, "tg", "telegram", "message_text").status_code == 200
    assert len(leads(c, "tg")) == 1


def test_http_garbage_goes_to_quarantine_but_telegram_gets_200(hub: Any) -> None:
    _, c = hub
    r = send(c, "tg", "telegram", "message_text", body=b'{"update_id": "not a number"}')
    assert r.status_code == 200
    assert r.content == b"", "Telegram reads an answer's body as a Bot API call"
    assert len(quarantined(c, "tg")) == 1 and leads(c, "tg") == []


def test_http_chat_messages_extend_one_lead_and_a_shared_contact_fills_its_phone(hub: Any) -> None:
    """Core part: conversation_key within the dedup window (contract, inbound webhooks §7)."""
    _, c = hub
    for name in ("start_deeplink", "message_text", "contact_shared"):
        assert send(c, "tg", "telegram", name).status_code == 200
    found = leads(c, "tg")
    assert len(found) == 1, [lead["id"] for lead in found]
    lead = found[0]
    assert lead["contact"]["phones"] == ["+79161234567"]
    assert lead["utm"]["source"] == "yandex" and lead["utm"]["campaign"] == "spring"
    assert "Сколько стоит курс аналитика?" in (lead["message"] or "")
