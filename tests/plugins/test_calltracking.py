"""Call-tracking services that attribute calls themselves: ``calltouch``, ``uis``, ``roistat``.
They sign nothing, so a token in the URL is the proof; their UTM tags become the lead's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.connectors import ConnectorContext, InboundRequest, Source
from hub.errors import AuthError, ParseError
from hub.sdk import TrackingConfig
from plugins.calltouch import CalltouchConfig, CalltouchSource
from plugins.roistat import RoistatConfig, RoistatSource
from plugins.uis import UisConfig, UisSource
from tests.call_hub import CallHub, call_hub, pause
from tests.conftest import ConfigWriter
from tests.payload_loader import load_request, payload_names

TOKENS = {"calltouch": "ct-7d2e9a41b6", "uis": "uis-3c9f1e7a52", "roistat": "rs-5b8e2f9d13"}
CLASSES: dict[str, tuple[type[TrackingConfig], type[Source]]] = {  # type: ignore[type-arg]
    "calltouch": (CalltouchConfig, CalltouchSource),
    "uis": (UisConfig, UisSource),
    "roistat": (RoistatConfig, RoistatSource),
}
CONFIG = "".join(f'\n[sources.{p}]\nplugin = "{p}"\ntoken = "{t}"\n' for p, t in TOKENS.items())
CALLER, TRACKING = "+79161234567", "+74951234567"


def source(plugin: str) -> Source:  # type: ignore[type-arg]
    config_cls, source_cls = CLASSES[plugin]
    config = config_cls.model_validate({"plugin": plugin, "token": TOKENS[plugin]})
    return source_cls(config, ConnectorContext(name=plugin, data_dir=Path(".")))


def request(plugin: str, name: str, **kw: object) -> InboundRequest:
    plain = load_request(plugin, name, source=plugin, **kw)  # type: ignore[arg-type]
    method = "GET" if not plain.body and plugin == "calltouch" else plain.method
    return InboundRequest(method, plain.source, "", plain.query, plain.headers, plain.body, plain.url)


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_every_payload_names_its_source(plugin: str) -> None:
    names = payload_names(plugin)
    assert len(names) >= 4
    for name in names:
        source(plugin).verify(request(plugin, name))


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_token_is_required_and_checked(plugin: str) -> None:
    config_cls, _ = CLASSES[plugin]
    with pytest.raises(ValidationError):
        config_cls.model_validate({"plugin": plugin})
    with pytest.raises(ValidationError, match="is empty"):
        config_cls.model_validate({"plugin": plugin, "token": " "})
    name = payload_names(plugin)[0]
    for query in ({}, {"token": "wrong"}, {"token": TOKENS[plugin] + "x"}):
        with pytest.raises(AuthError):
            source(plugin).verify(request(plugin, name, query=query))
    source(plugin).verify(request(plugin, name, query={}, headers={"x-leadhub-token": TOKENS[plugin]}))


# ---------------------------------------------------------------- calltouch


def test_calltouch_call_with_its_attribution() -> None:
    [event] = source("calltouch").parse(request("calltouch", "call_end"))
    draft = event.lead
    assert draft is not None and draft.channel == "call" and draft.phones == ["79161234567"]
    call = draft.call
    assert call is not None and call.call_id == "580123456"
    assert (call.tracking_number, call.answered, call.duration_s) == ("74951234567", True, 118)
    assert call.recording_url and call.recording_url.endswith("/580123456/download")
    assert draft.utm == {"source": "yandex", "medium": "cpc", "campaign": "spring_sale",
                         "term": "курсы аналитики", "content": "banner_1"}
    assert draft.page_url == "https://example.ru/course?utm_source=yandex"
    assert draft.fields["yclid"] == "6104337721458954239" and draft.fields["city"] == "Москва"
    assert "callId" not in draft.fields and "token" not in draft.fields


def test_calltouch_request_is_a_form_lead() -> None:
    [event] = source("calltouch").parse(request("calltouch", "request"))
    draft = event.lead
    assert draft is not None and draft.channel == "form" and event.event_id == "request:1398564"
    assert (draft.name, draft.phones, draft.emails) == ("Анна Смирнова", ["+7 (916) 765-43-21"],
                                                        ["anna@example.ru"])
    assert draft.message == "Перезвоните после 18:00" and draft.page_url == "https://example.ru/contacts"
    assert draft.utm["source"] == "google" and draft.utm["campaign"] == "search_brand"


def test_calltouch_own_names_stand_in_for_missing_utm() -> None:
    body = b"callId=1&callerphone=79161234567&source=yandex&medium=organic&keyword=crm"
    [event] = source("calltouch").parse(request("calltouch", "call_end", body=body))
    assert event.lead is not None
    assert event.lead.utm == {"source": "yandex", "medium": "organic", "term": "crm"}


def test_calltouch_deal_is_not_a_lead_and_empty_is_garbage() -> None:
    [deal] = source("calltouch").parse(request("calltouch", "deal"))
    assert deal.lead is None
    with pytest.raises(ParseError):
        source("calltouch").parse(request("calltouch", "deal", body=b""))


def test_calltouch_a_deal_with_a_phone_is_still_no_lead_and_connected_is_not_answered() -> None:
    """A deal webhook (``deal*`` fields, no call or request id) is stored, not a lead, even
    with a phone. ``callphase=callconnected`` comes at the start of a call that may still
    go unanswered: only ``successful`` or the talk time say it was answered."""
    deal = b"dealId=7&dealName=x&dealStatus=won&phone=%2B79161234567"
    [event] = source("calltouch").parse(request("calltouch", "deal", body=deal))
    assert event.lead is None
    [start] = source("calltouch").parse(request("calltouch", "call_start"))
    assert start.lead is not None and start.lead.call is not None
    assert start.lead.call.answered is None


def test_calltouch_a_request_with_a_call_id_but_no_caller_is_a_request() -> None:
    body = (b"callId=580123999&requestId=31337&phoneNumber=%2B79167654321"
            b"&email=anna%40example.ru&utm_source=google")
    [event] = source("calltouch").parse(request("calltouch", "request", body=body))
    assert event.event_id == "request:31337"
    assert event.lead is not None and event.lead.channel == "form"
    assert event.lead.phones == ["+79167654321"]


def test_a_date_out_of_range_is_no_start_time_not_a_lost_lead() -> None:
    body = b"callId=5801&callerphone=79161234567&callTime=0001-01-01+00%3A00%3A00&duration=10"
    [event] = source("calltouch").parse(request("calltouch", "call_end", body=body))
    assert event.lead is not None and event.lead.call is not None
    assert event.lead.call.started_at is None and event.lead.phones == ["79161234567"]


# ---------------------------------------------------------------- uis


def test_uis_call_ended() -> None:
    [event] = source("uis").parse(request("uis", "call_ended"))
    assert event.event_id == "2947384021:call_ended"
    draft = event.lead
    assert draft is not None and draft.name == "Иван Петров" and draft.phones == ["79161234567"]
    call = draft.call
    assert call is not None and call.call_id == "2947384021"
    assert (call.answered, call.duration_s, call.tracking_number) == (True, 95, "74951234567")
    assert call.recording_url and "talk/2947384021" in call.recording_url
    # an unfilled {{utm_term}} and an empty utm_content are not tags
    assert draft.utm == {"source": "yandex", "medium": "cpc", "campaign": "spring_sale"}
    assert draft.fields["scenario_name"] == "Основной"


def test_uis_outbound_puts_the_contact_in_to_and_token_may_be_in_the_body() -> None:
    body = json.dumps({"call_session_id": "1", "direction": "out", "token": TOKENS["uis"],
                       "contact_phone_number": "79167654321", "virtual_phone_number": "74951234567"})
    req = request("uis", "call_ended", body=body.encode(), query={})
    source("uis").verify(req)
    [event] = source("uis").parse(req)
    assert event.lead is not None and event.lead.call is not None
    assert (event.lead.call.direction, event.lead.call.to_number) == ("outbound", "79167654321")
    assert "token" not in event.lead.fields


def test_uis_other_channels_and_non_call_notifications() -> None:
    [sip] = source("uis").parse(request("uis", "sip_line_lost"))
    assert sip.lead is None
    body = json.dumps({"communication_type": "offline_message", "communication_id": "7",
                       "contact_phone_number": "79161234567", "contact_full_name": "Оля",
                       "utm_source": "vk"}).encode()
    [offline] = source("uis").parse(request("uis", "call_ended", body=body))
    assert offline.lead is not None and offline.lead.channel == "form"
    assert offline.lead.phones == ["79161234567"] and offline.lead.utm == {"source": "vk"}


def test_uis_reads_the_template_whose_quoted_placeholders_got_quoted_strings() -> None:
    """Integrators' templates leave placeholders unquoted, so UIS may fill one with a JSON
    string, quotes included: our quoted template then reads ``""in""``."""
    body = ('{"notification_mnemonic": ""call_ended"", "call_session_id": "2947384099",'
            ' "direction": ""in"", "contact_phone_number": ""79161234567"",'
            ' "virtual_phone_number": ""74951234567"", "contact_full_name": ""Иван \\"Ваня\\""",'
            ' "talk_time_duration": "95", "is_lost": "false", "file_link": """"}').encode()
    req = request("uis", "call_ended", body=body)
    source("uis").verify(req)
    [event] = source("uis").parse(req)
    assert event.event_id == "2947384099:call_ended"
    assert event.lead is not None and event.lead.call is not None
    assert event.lead.phones == ["79161234567"] and event.lead.name == 'Иван "Ваня"'
    assert (event.lead.call.answered, event.lead.call.duration_s) == (True, 95)
    with pytest.raises(ParseError):  # broken otherwise: still quarantined
        source("uis").parse(request("uis", "call_ended", body=b'{"a": ""x"" "b"}'))


def test_uis_notifications_without_a_session_are_told_apart_by_what_they_say() -> None:
    def ended(phone: str) -> bytes:
        return json.dumps({"notification_mnemonic": "call_ended", "direction": "in",
                           "contact_phone_number": phone}).encode()

    [one] = source("uis").parse(request("uis", "call_ended", body=ended("79161110001")))
    [two] = source("uis").parse(request("uis", "call_ended", body=ended("79161110002")))
    assert one.event_id != two.event_id and "None" not in str(one.event_id)


# ---------------------------------------------------------------- roistat


def test_roistat_start_and_after() -> None:
    [start] = source("roistat").parse(request("roistat", "webhook_start"))
    assert start.event_id == "313:start"
    assert start.lead is not None and start.lead.call is not None
    assert start.lead.click_ids == {"roistat": "123456"}
    assert start.lead.utm == {"source": "yandex", "medium": "cpc", "campaign": "spring_sale"}
    assert start.lead.call.answered is None and start.lead.call.seq == 1
    [after] = source("roistat").parse(request("roistat", "webhook_after"))
    assert after.event_id == "313:end" and after.lead is not None and after.lead.call is not None
    assert (after.lead.call.answered, after.lead.call.duration_s, after.lead.call.seq) == (True, 167, 2)
    assert after.lead.call.recording_url and "/call/313/file/" in after.lead.call.recording_url
    assert after.lead.fields["marker"] == "yandex_direct_spring"


def test_roistat_lead_without_contact_is_not_a_lead() -> None:
    [event] = source("roistat").parse(request("roistat", "lead_no_contact"))
    assert event.lead is None
    with pytest.raises(ParseError):
        source("roistat").parse(request("roistat", "lead_no_contact", body=b"[]"))


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[CallHub]:
    with call_hub(CONFIG, write_config, tmp_path, redis_url) as h:
        yield h


FIRST = {"calltouch": "call_start", "uis": "call_incoming", "roistat": "webhook_start"}
LAST = {"calltouch": "call_end", "uis": "call_ended", "roistat": "webhook_after"}
MISSED = {"calltouch": "call_missed", "uis": "call_lost", "roistat": "webhook_after_missed"}
NOT_A_LEAD = {"calltouch": "deal", "uis": "sip_line_lost", "roistat": "lead_no_contact"}


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_http_a_call_is_a_lead_with_the_services_utm(hub: CallHub, plugin: str) -> None:
    r = hub.send(plugin, plugin, FIRST[plugin])
    assert r.status_code == 200, r.text
    lead = hub.lead(r.json()["id"])
    assert lead["channel"] == "call" and lead["contact"]["phones"] == [CALLER]
    assert lead["utm"]["source"] == "yandex" and lead["utm"]["campaign"] == "spring_sale"


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_http_non_lead(hub: CallHub, plugin: str) -> None:
    assert hub.send(plugin, plugin, NOT_A_LEAD[plugin]).status_code == 200
    assert hub.lead_rows() == 0


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_http_bad_token(hub: CallHub, plugin: str) -> None:
    assert hub.send(plugin, plugin, FIRST[plugin], query={"token": "nope"}).status_code == 401
    assert hub.send(plugin, plugin, LAST[plugin], query={}).status_code == 401
    assert hub.lead_rows() == 0


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_http_repeated_delivery_is_one_lead(hub: CallHub, plugin: str) -> None:
    first = hub.send(plugin, plugin, LAST[plugin])
    again = hub.send(plugin, plugin, LAST[plugin])
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert len(hub.leads(plugin)) == 1


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_http_both_events_of_a_call_in_any_order_make_one_lead(hub: CallHub, plugin: str) -> None:
    assert hub.send(plugin, plugin, LAST[plugin]).status_code == 200
    pause()
    assert hub.send(plugin, plugin, FIRST[plugin]).status_code == 200
    lead = hub.only_lead(plugin)
    call = lead["call"]
    assert call["from"] == CALLER and call["tracking_number"] == TRACKING
    assert call["answered"] is True and call["duration_s"] > 0 and call["recording_url"]


@pytest.mark.parametrize("plugin", list(TOKENS))
def test_http_missed_call_is_an_unanswered_lead(hub: CallHub, plugin: str) -> None:
    hub.send(plugin, plugin, MISSED[plugin])
    lead = hub.only_lead(plugin)
    assert lead["call"]["answered"] is False and lead["call"]["duration_s"] == 0
    assert lead["contact"]["phones"] == ["+79035551122"]


def test_http_roistat_lead_handler_get_and_json_labelled_as_a_form(hub: CallHub) -> None:
    """Roistat's lead handler for a custom CRM sends a lead as GET parameters; a relay
    built on PHP's curl posts the call webhook's JSON labelled as a form."""
    query = {"token": TOKENS["roistat"], "phone": "79035550101", "name": "Олег",
             "visit": "424242"}
    r = hub.send("roistat", "roistat", "lead_no_contact", method="GET", body=b"", query=query)
    assert r.status_code == 200, r.text
    lead = hub.lead(r.json()["id"])
    assert lead["channel"] == "form" and lead["contact"]["phones"] == ["+79035550101"]
    r = hub.send("roistat", "roistat", "webhook_start",
                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert hub.lead(r.json()["id"])["contact"]["phones"] == [CALLER]


def test_http_calltouch_request_is_a_form_lead(hub: CallHub) -> None:
    r = hub.send("calltouch", "calltouch", "request")
    lead = hub.lead(r.json()["id"])
    assert lead["channel"] == "form" and lead["contact"]["phones"] == ["+79167654321"]
    assert lead["contact"]["emails"] == ["anna@example.ru"]
    assert lead["utm"]["source"] == "google" and lead["click_ids"]["gclid"] == "EAIaIQobChMI8fL"


def test_http_calltouch_get_webhooks_of_two_calls_are_two_events(hub: CallHub) -> None:
    # A GET has no body: the core's body-hash fallback alone would call the second a retry.
    assert hub.send("calltouch", "calltouch", "call_start").status_code == 200
    other = {"token": TOKENS["calltouch"], "callId": "580124000", "callerphone": "79035551122",
             "phonenumber": "74951234567"}
    assert hub.send("calltouch", "calltouch", "call_start", query=other).status_code == 200
    assert len(hub.leads("calltouch")) == 2
