"""The ``vk`` source: Callback API events from payload files, and over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import Accepted, ConnectorContext, LeadDraft
from hub.errors import AuthError, ParseError
from hub.runtime import Runtime
from plugins.vk import VKConfig, VKSource, leadhub_register_connectors
from tests.messenger_hub import leads, ledger, quarantined, running_hub, send
from tests.payload_loader import load_request, payload_names

SECRET = "vk-secret-key"
CODE = "a1b2c3d4"
CONFIG = f"""
[sources.vk_group]
plugin = "vk"
confirmation_code = "{CODE}"
secret = "{SECRET}"
"""


def source(**settings: Any) -> VKSource:
    config = VKConfig.model_validate(
        {"plugin": "vk", "confirmation_code": CODE, "secret": SECRET, **settings})
    return VKSource(config, ConnectorContext(name="vk_group", data_dir=Path(".")))


def draft_of(name: str) -> tuple[str | None, LeadDraft]:
    [event] = source().parse(load_request("vk", name))
    assert event.lead is not None
    return event.event_id, event.lead


def with_secret(body: dict[str, Any], secret: str | None) -> bytes:
    body = {k: v for k, v in body.items() if k != "secret"}
    if secret is not None:
        body["secret"] = secret
    return json.dumps(body, ensure_ascii=False).encode()


def test_payloads_name_their_source_and_plugin_registers() -> None:
    assert {"confirmation", "message_new", "message_new_legacy", "lead_forms_new"} <= set(payload_names("vk"))
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [VKSource]


def test_secret_in_the_body_must_match() -> None:
    src = source()
    src.verify(load_request("vk", "message_new"))
    body = json.loads(load_request("vk", "message_new").body)
    for secret in ("wrong", None, ""):
        with pytest.raises(AuthError):
            src.verify(load_request("vk", "message_new", body=with_secret(body, secret)))
    with pytest.raises(AuthError):
        src.verify(load_request("vk", "message_new", body=b"not json"))
    source(secret=None).verify(load_request("vk", "message_new", body=with_secret(body, None)))


def test_confirmation_is_not_a_lead_and_gets_the_code() -> None:
    src, request = source(), load_request("vk", "confirmation")
    [event] = src.parse(request)
    assert event.lead is None
    answer = src.respond(request, Accepted([]))
    assert (answer.body, answer.media_type) == (CODE, "text/plain")
    unsigned = with_secret(json.loads(request.body), None)
    src.verify(load_request("vk", "confirmation", body=unsigned))


def test_message_new_current_and_legacy_shapes() -> None:
    event_id, draft = draft_of("message_new")
    assert event_id == "14f2cb7622f5f75f72d16d748b9d4e3730442a3d"
    assert draft.channel == "messenger" and [(m.kind, m.id) for m in draft.messengers] == [("vk", "8825124")]
    assert draft.phones == ["+79162223344"]
    assert draft.fields == {"vk_ref": "spring_sale", "vk_ref_source": "vk_ads"}
    assert draft.conversation_key == "vk:194465051:8825124:8825124"
    _, legacy = draft_of("message_new_legacy")
    assert legacy.message == "Здравствуйте, сколько стоит доставка?"
    assert [m.id for m in legacy.messengers] == ["7733"]


def test_lead_form_answers() -> None:
    event_id, draft = draft_of("lead_forms_new")
    assert event_id == "9a03740b45f176a7edf612e2019f1fcfd73653c2"
    assert draft.channel == "form" and draft.name == "Илья Смирнов"
    assert draft.phones == ["+7 (999) 790-21-23"] and draft.emails == ["Ilya.Smirnov@Example.ru"]
    assert draft.fields["Удобное время для звонка"] == "после 18:00"
    assert draft.fields["vk_lead_id"] == "790143" and draft.fields["vk_form_name"] == "Запись на курс"


def test_replies_and_other_events_are_not_leads_and_get_ok() -> None:
    src = source()
    request = load_request("vk", "message_reply")
    [event] = src.parse(request)
    assert event.lead is None and event.event_id
    assert src.respond(request, Accepted([])).body == "ok"


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"type": 5}', b'{"type": "message_new"}',
                                  b'{"type": "message_new", "object": {"text": "no sender"}}',
                                  b'{"type": "lead_forms_new", "object": {"answers": "x"}}'])
def test_garbage_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ParseError):
        source(secret=None).parse(load_request("vk", "message_new", body=body))


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def hub(tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_hub(CONFIG, tmp_path, redis_url) as running:
        yield running


def test_http_confirmation_answers_the_code_as_plain_text(hub: Any) -> None:
    _, c = hub
    for _ in range(2):  # VK may ask again: the same answer
        r = send(c, "vk_group", "vk", "confirmation")
        assert r.status_code == 200 and r.text == CODE
        assert r.headers["content-type"].startswith("text/plain")
    assert leads(c, "vk_group") == []


def test_http_message_and_lead_form_are_leads_answered_ok(hub: Any) -> None:
    _, c = hub
    for name in ("message_new", "lead_forms_new"):
        r = send(c, "vk_group", "vk", name)
        assert r.status_code == 200 and r.text == "ok", (name, r.text)
    by_channel = {lead["channel"]: lead for lead in leads(c, "vk_group")}
    assert by_channel["form"]["contact"]["phones"] == ["+79997902123"]
    assert by_channel["form"]["contact"]["emails"] == ["ilya.smirnov@example.ru"]
    assert by_channel["messenger"]["contact"]["messengers"][0]["id"] == "8825124"


def test_http_reply_is_stored_without_a_lead_and_answered_ok(hub: Any) -> None:
    _, c = hub
    r = send(c, "vk_group", "vk", "message_reply")
    assert r.status_code == 200 and r.text == "ok"
    assert leads(c, "vk_group") == [] and ledger(c, "vk_group")["non_lead"] == 1


def test_http_wrong_secret_is_401(hub: Any) -> None:
    _, c = hub
    body = json.loads(load_request("vk", "message_new").body)
    r = send(c, "vk_group", "vk", "message_new", body=with_secret(body, "guess"))
    assert r.status_code == 401
    assert send(c, "vk_group", "vk", "message_new", body=with_secret(body, None)).status_code == 401
    assert leads(c, "vk_group") == []


def test_http_resent_event_id_is_one_lead(hub: Any) -> None:
    _, c = hub
    for retry in range(3):
        r = send(c, "vk_group", "vk", "lead_forms_new", headers={"x-retry-counter": str(retry)})
        assert r.status_code == 200 and r.text == "ok"
    assert len(leads(c, "vk_group")) == 1


def test_http_authentic_garbage_is_quarantined_with_200(hub: Any) -> None:
    _, c = hub
    body = json.dumps({"type": "message_new", "object": {"message": {"text": "?"}}, "secret": SECRET})
    r = send(c, "vk_group", "vk", "message_new", body=body.encode())
    assert r.status_code == 200 and r.text == "ok"  # anything else, VK would send again
    assert len(quarantined(c, "vk_group")) == 1 and leads(c, "vk_group") == []
