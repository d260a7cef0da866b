"""The ``mango`` source: Mango Office realtime events, pure and over real HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from pydantic import ValidationError

from hub.connectors import ConnectorContext, InboundRequest
from hub.errors import AuthError, ParseError
from plugins.mango import SUMMARY_SEQ, MangoConfig, MangoSource, leadhub_register_connectors
from tests.call_hub import CallHub, call_hub, pause
from tests.conftest import ConfigWriter
from tests.payload_loader import load_meta, load_request, payload_names

KEY, SALT = "k2nq7d1w0e8r5t9y3u6i4o2p1a7s5d3f", "s8d7f6g5h4j3k2l1z9x8c7v6b5n4m3q2"
CALLER, LINE = "+79161234567", "+74951234567"
CONFIG = f"""
[sources.calls]
plugin = "mango"
api_key = "{KEY}"
api_salt = "{SALT}"
tracking_numbers = {{ "{LINE}" = {{ source = "yandex", medium = "cpc", campaign = "spring" }} }}
"""


def source() -> MangoSource:
    config = MangoConfig.model_validate({"plugin": "mango", "api_key": KEY, "api_salt": SALT})
    return MangoSource(config, ConnectorContext(name="calls", data_dir=Path(".")))


def request(name: str, body: bytes | None = None) -> InboundRequest:
    plain = load_request("mango", name, source="calls", body=body)
    return InboundRequest(plain.method, plain.source, load_meta("mango", name)["path"], plain.query,
                          plain.headers, plain.body, plain.url)


def signed_body(event: dict[str, object] | str, key: str = KEY, salt: str = SALT) -> bytes:
    js = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    sign = hashlib.sha256((key + js + salt).encode()).hexdigest()
    return urlencode({"vpbx_api_key": key, "sign": sign, "json": js}).encode()


def test_every_payload_names_its_source() -> None:
    names = payload_names("mango")
    assert {"call_appeared", "summary_answered", "record_added", "dtmf"} <= set(names)
    for name in names:
        source().verify(request(name))  # every payload is signed with the test key and salt


def test_registers_one_source_class() -> None:
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [MangoSource]


def test_empty_secrets_refuse_to_start() -> None:
    with pytest.raises(ValidationError, match="is empty"):
        MangoConfig.model_validate({"plugin": "mango", "api_key": "", "api_salt": SALT})


# ---------------------------------------------------------------- verify


def test_sign_is_checked_over_the_exact_json_string() -> None:
    event = load_request("mango", "call_appeared").form_items()
    js = dict(event)["json"]
    respaced = js.replace(",", ", ")  # same JSON, other bytes: Mango signed the original
    body = urlencode({"vpbx_api_key": KEY, "sign": dict(event)["sign"], "json": respaced}).encode()
    with pytest.raises(AuthError):
        source().verify(request("call_appeared", body))


@pytest.mark.parametrize("body", [
    signed_body({"entry_id": "x"}, salt="other-salt"),
    signed_body({"entry_id": "x"}, key="another-vpbx"),
    b"vpbx_api_key=" + KEY.encode() + b"&json=%7B%7D",
    b"",
    b'{"json": "{}"}',
])
def test_wrong_or_missing_signature(body: bytes) -> None:
    with pytest.raises(AuthError):
        source().verify(request("call_appeared", body))


def test_upper_case_hex_sign_is_accepted() -> None:
    items = dict(load_request("mango", "dtmf").form_items())
    items["sign"] = items["sign"].upper()
    source().verify(request("dtmf", urlencode(items).encode()))


# ---------------------------------------------------------------- parse


def test_appeared_names_the_caller_the_line_and_the_tracking_number() -> None:
    [event] = source().parse(request("call_appeared"))
    assert event.event_id and "events/call" in event.event_id
    draft = event.lead
    assert draft is not None and draft.channel == "call" and draft.phones == ["79161234567"]
    call = draft.call
    assert call is not None
    assert call.call_id == "MzYxNTQ3NTI2Mjo0MDE="  # entry_id: all legs make one call
    assert (call.direction, call.from_number, call.to_number) == ("inbound", "79161234567", "74951234567")
    assert call.tracking_number == "74951234567"
    assert call.seq == 1  # "seq": "1" as a string in the doc's example
    assert call.started_at == datetime.fromtimestamp(1764061200, UTC)
    assert call.answered is None


def test_connected_leg_answers_and_keeps_the_entry_id() -> None:
    [event] = source().parse(request("call_connected"))
    assert event.lead is not None and event.lead.call is not None
    call = event.lead.call
    assert (call.call_id, call.answered, call.seq) == ("MzYxNTQ3NTI2Mjo0MDE=", True, 2)
    assert call.to_number == "74951234567"  # the line, not the employee's SIP address


def test_summary_talk_time_is_end_minus_answer() -> None:
    [event] = source().parse(request("summary_answered"))
    assert event.lead is not None and event.lead.call is not None
    call = event.lead.call
    assert (call.answered, call.duration_s, call.seq) == (True, 1764061350 - 1764061212, SUMMARY_SEQ)
    assert call.started_at == datetime.fromtimestamp(1764061200, UTC)
    assert event.lead.fields["mango_disconnect_reason"] == "1110"


def test_missed_summary() -> None:
    [event] = source().parse(request("summary_missed"))
    assert event.lead is not None and event.lead.call is not None
    assert (event.lead.call.answered, event.lead.call.duration_s) == (False, 0)
    assert event.lead.phones == ["79035551122"]


def test_recording_keeps_its_id_and_never_overwrites() -> None:
    [event] = source().parse(request("record_added"))
    assert event.lead is not None and event.lead.call is not None
    assert event.lead.call.call_id == "MzYxNTQ3NTI2Mjo0MDE="
    assert event.lead.call.seq == 0 and event.lead.call.recording_url is None
    assert event.lead.fields["mango_recording_id"] == "MToxMDI3OTUzNDo0MDE6NzQ5ODYxMjM1OjE="
    assert event.lead.phones == []


@pytest.mark.parametrize("name", ["dtmf", "call_internal"])
def test_events_that_are_not_leads(name: str) -> None:
    [event] = source().parse(request(name))
    assert event.lead is None and event.reason


def test_outbound_call_puts_the_customer_in_to() -> None:
    event = {"entry_id": "E1", "call_id": "C1", "timestamp": 1764061200, "seq": 2,
             "call_state": "Connected", "location": "abonent",
             "from": {"extension": "1234", "number": "74955404444"}, "to": {"number": "79167654321"}}
    [parsed] = source().parse(request("call_appeared", signed_body(event)))
    assert parsed.lead is not None and parsed.lead.call is not None
    call = parsed.lead.call
    assert (call.direction, call.from_number, call.to_number) == ("outbound", "74955404444", "79167654321")
    assert parsed.lead.phones == []  # the core takes the callee of an outbound call


@pytest.mark.parametrize(("path", "body"), [
    ("events/call", "not json"),
    ("events/call", "[1, 2]"),
    ("events/unheard", "{}"),
    ("", "{}"),
])
def test_garbage_is_a_parse_error(path: str, body: str) -> None:
    plain = request("call_appeared", signed_body(body))
    with pytest.raises(ParseError):
        source().parse(InboundRequest(plain.method, plain.source, path, plain.query, plain.headers,
                                      plain.body, plain.url))


@pytest.mark.parametrize("event", [
    {"entry_id": 5, "seq": None, "from": "79161234567", "to": [], "dct": "x", "timestamp": "soon"},
    {"call_direction": "x", "talk_time": "a", "end_time": {}, "entry_result": True},
    {},
])
def test_loose_types_never_raise(event: dict[str, object]) -> None:
    for path in ("events/call", "events/summary", "events/recording", "events/record/added"):
        plain = request("call_appeared", signed_body(event))
        source().parse(InboundRequest(plain.method, plain.source, path, plain.query, plain.headers,
                                      plain.body, plain.url))


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[CallHub]:
    with call_hub(CONFIG, write_config, tmp_path, redis_url) as h:
        yield h


def test_http_a_call_is_a_lead(hub: CallHub) -> None:
    r = hub.send("calls", "mango", "call_appeared")
    assert r.status_code == 200, r.text
    lead = hub.lead(r.json()["id"])
    assert lead["channel"] == "call" and lead["contact"]["phones"] == [CALLER]
    assert lead["call"]["from"] == CALLER and lead["call"]["to"] == LINE


def test_http_events_that_are_not_leads(hub: CallHub) -> None:
    for name in ("dtmf", "call_internal", "call_appeared_no_caller"):
        r = hub.send("calls", "mango", name)
        assert r.status_code == 200, r.text
    assert hub.lead_rows() == 0 and hub.quarantined() == []


def test_http_bad_signature_is_401_and_stores_no_lead(hub: CallHub) -> None:
    items = dict(parse_qsl(load_request("mango", "call_appeared").body.decode()))
    items["json"] = items["json"].replace("79161234567", "79990000000")  # forged caller
    r = hub.send("calls", "mango", "call_appeared", body=urlencode(items).encode())
    assert r.status_code == 401
    assert hub.lead_rows() == 0


def test_http_repeated_delivery_is_one_lead(hub: CallHub) -> None:
    first = hub.send("calls", "mango", "summary_missed")
    again = hub.send("calls", "mango", "summary_missed")
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert len(hub.leads("calls")) == 1


def test_http_authentic_garbage_gets_200_and_quarantine(hub: CallHub) -> None:
    # Mango retries a non-2xx answer: it gets 200, the request waits in quarantine.
    r = hub.send("calls", "mango", "call_appeared", body=signed_body("{oops"))
    assert r.status_code == 200
    r = hub.send("calls", "mango", "call_appeared", body=signed_body("{}"), path="events/brand_new")
    assert r.status_code == 200
    assert len(hub.quarantined()) == 2 and hub.lead_rows() == 0


def test_http_all_events_of_a_call_out_of_order_make_one_complete_lead(hub: CallHub) -> None:
    ids = set()
    for name in ("summary_answered", "call_disconnected", "call_connected", "call_appeared"):
        r = hub.send("calls", "mango", name)
        assert r.status_code == 200, r.text
        ids.add(r.json().get("id"))
        pause()
    pause()
    r = hub.send("calls", "mango", "record_added")  # the recording comes last, later
    assert r.status_code == 200
    lead = hub.only_lead("calls")
    assert ids - {None} == {lead["id"]}
    call = lead["call"]
    assert call["direction"] == "inbound" and call["from"] == CALLER and call["to"] == LINE
    assert call["answered"] is True and call["duration_s"] == 138
    assert call["started_at"].startswith("2025-11-25T09:00:00")
    assert call["tracking_number"] == LINE
    assert lead["fields"]["mango_recording_id"] == "MToxMDI3OTUzNDo0MDE6NzQ5ODYxMjM1OjE="
    assert lead["contact"]["phones"] == [CALLER]


def test_http_missed_call_is_a_lead_marked_unanswered(hub: CallHub) -> None:
    r = hub.send("calls", "mango", "summary_missed")
    lead = hub.lead(r.json()["id"])
    assert lead["call"]["answered"] is False and lead["call"]["duration_s"] == 0
    assert lead["contact"]["phones"] == ["+79035551122"]


def test_http_tracking_number_gives_utm_tags(hub: CallHub) -> None:
    r = hub.send("calls", "mango", "call_appeared")
    lead = hub.lead(r.json()["id"])
    assert lead["utm"]["source"] == "yandex" and lead["utm"]["medium"] == "cpc"
    assert lead["utm"]["campaign"] == "spring"
