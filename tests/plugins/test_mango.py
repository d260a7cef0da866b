"""The ``mango`` source: Mango Office realtime events, pure and over real HTTP."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from pydantic import ValidationError

from hub.connectors import ConnectorContext, InboundRequest
from hub.errors import AuthError, ParseError
from plugins.mango import (
    LEG_SEQ_BASE,
    RECORDING_SEQ,
    SUMMARY_SEQ,
    UNTIMED_LEG_SEQ,
    MangoConfig,
    MangoSource,
    leadhub_register_connectors,
)
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
    # "timestamp": "1764061200" as a string in the doc's example; seq: earlier ranks higher
    assert call.seq == LEG_SEQ_BASE - 1764061200
    assert call.started_at == datetime.fromtimestamp(1764061200, UTC)
    assert call.answered is None


def test_connected_leg_answers_and_keeps_the_entry_id() -> None:
    [event] = source().parse(request("call_connected"))
    assert event.lead is not None and event.lead.call is not None
    call = event.lead.call
    assert (call.call_id, call.answered) == ("MzYxNTQ3NTI2Mjo0MDE=", True)
    assert call.seq == LEG_SEQ_BASE - 1764061212  # not the leg's own seq (2)
    assert call.to_number == "74951234567"  # the line, not the employee's SIP address


def test_summary_talk_time_is_end_minus_answer() -> None:
    [event] = source().parse(request("summary_answered"))
    assert event.lead is not None and event.lead.call is not None
    call = event.lead.call
    assert (call.answered, call.duration_s, call.seq) == (True, 1764061350 - 1764061212, SUMMARY_SEQ)
    assert call.started_at == datetime.fromtimestamp(1764061200, UTC)
    assert event.lead.fields["mango_disconnect_reason"] == "1110"


def test_summary_of_a_call_that_ended_in_the_ivr_is_not_answered() -> None:
    # entry_result = 1 but talk_time = 0: the caller heard the menu and hung up
    [event] = source().parse(request("summary_ivr"))
    assert event.lead is not None and event.lead.call is not None
    call = event.lead.call
    assert (call.answered, call.duration_s) == (False, 0)
    assert call.started_at == datetime(2025, 11, 25, 10, 3, 20, tzinfo=UTC)
    assert event.lead.phones == ["79267778899"]


@pytest.mark.parametrize(("talk_time", "end_time", "entry_result", "answered", "duration"), [
    (1764061212, 1764061350, 1, True, 138),
    (1764061212, 1764061350, 0, True, 138),  # talk_time decides, not entry_result
    ("1764061212", "1764061350", "1", True, 138),  # strings, as Mango types loosely
    (0, 1764061350, 1, False, 0),  # ended in the IVR
    (0, 1764061350, 0, False, 0),  # missed
    (None, 1764061350, 1, False, 0),
    (1764061212, None, 1, True, None),  # answered; how long is unknown
    (1764061212, 1764061100, 1, True, None),  # end before answer: no made-up duration
    (138, 1764061350, 1, True, None),  # not a time of this call: not taken as a duration
])
def test_summary_answered_is_talk_time_and_duration_is_end_minus_talk(
    talk_time: object, end_time: object, entry_result: object, answered: bool, duration: int | None
) -> None:
    event = {"entry_id": "E1", "call_direction": 1, "from": {"number": "79161234567"},
             "line_number": "74951234567", "create_time": 1764061200, "talk_time": talk_time,
             "end_time": end_time, "entry_result": entry_result}
    [parsed] = source().parse(request("summary_answered", signed_body(event)))
    assert parsed.lead is not None and parsed.lead.call is not None
    assert (parsed.lead.call.answered, parsed.lead.call.duration_s) == (answered, duration)


def test_ivr_or_queue_picking_up_does_not_answer_the_call() -> None:
    for location, answered in (("ivr", None), ("queue", None), ("abonent", True), (None, True)):
        event = {"entry_id": "E1", "call_id": "L1", "timestamp": 1764061201, "seq": 2,
                 "call_state": "Connected", "location": location,
                 "from": {"number": "79161234567"}, "to": {"line_number": "74951234567"}}
        [parsed] = source().parse(request("call_connected", signed_body(event)))
        assert parsed.lead is not None and parsed.lead.call is not None
        assert parsed.lead.call.answered is answered, location


def test_times_are_unix_timestamps_and_strings_are_moscow_time() -> None:
    # 1764061200 is 2025-11-25 09:00:00 UTC = 12:00 in Moscow (the manual's "UTC+3"):
    # a unix timestamp has no zone, so nothing is shifted by three hours.
    noon_in_moscow = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
    for create_time in (1764061200, "1764061200", 1764061200000, "2025-11-25 12:00:00",
                        "2025-11-25T12:00:00+03:00", "2025-11-25T09:00:00Z"):
        event = {"entry_id": "E1", "call_direction": 1, "from": {"number": "79161234567"},
                 "create_time": create_time, "talk_time": 0, "end_time": 0}
        [parsed] = source().parse(request("summary_answered", signed_body(event)))
        assert parsed.lead is not None and parsed.lead.call is not None
        started = parsed.lead.call.started_at
        assert started == noon_in_moscow and started.utcoffset() is not None, create_time
    event = {"entry_id": "E1", "call_direction": 1, "from": {"number": "79161234567"},
             "create_time": "2025-11-25 12:00:00", "talk_time": "2025-11-25 12:00:12",
             "end_time": "2025-11-25 12:02:30"}
    [parsed] = source().parse(request("summary_answered", signed_body(event)))
    assert parsed.lead is not None and parsed.lead.call is not None
    assert (parsed.lead.call.answered, parsed.lead.call.duration_s) == (True, 138)


def test_leg_events_rank_by_time_across_legs_not_by_the_legs_own_seq() -> None:
    def seq(event: dict[str, object], path: str = "events/call") -> int:
        plain = request("call_appeared", signed_body(event))
        [parsed] = source().parse(InboundRequest(plain.method, plain.source, path, plain.query,
                                                 plain.headers, plain.body, plain.url))
        assert parsed.lead is not None and parsed.lead.call is not None
        assert parsed.lead.call.seq is not None
        return parsed.lead.call.seq

    base = {"entry_id": "E1", "from": {"number": "79161234567"}, "to": {"line_number": "74951234567"}}
    ivr_3rd = seq({**base, "call_id": "L1", "seq": 3, "timestamp": 1764061205,
                   "call_state": "Disconnected"})
    agent_1st = seq({**base, "call_id": "L2", "seq": 1, "timestamp": 1764061205, "call_state": "Appeared"})
    ivr_1st = seq({**base, "call_id": "L1", "seq": 1, "timestamp": 1764061200, "call_state": "Appeared"})
    agent_3rd = seq({**base, "call_id": "L2", "seq": 3, "timestamp": 1764061350,
                     "call_state": "Disconnected"})
    untimed = seq({**base, "call_id": "L2", "seq": 2, "call_state": "Connected"})
    summary = seq({**base, "call_direction": 1, "create_time": 1764061200}, "events/summary")
    assert summary == SUMMARY_SEQ
    assert summary > ivr_1st > ivr_3rd == agent_1st > agent_3rd > untimed == UNTIMED_LEG_SEQ > RECORDING_SEQ


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


# ------------------------------------------------- legs of one call, in any order

T0 = 1764061200  # 2025-11-25 12:00:00 in Moscow


def two_leg_call(entry: str, caller: str) -> dict[str, dict[str, object]]:
    """A call that goes through the IVR (leg L1) to employee 101 (leg L2), who talks 138 s.

    Mango numbers each leg's events from 1 (``seq``); ``entry_id`` joins the legs."""
    line = {"line_number": LINE.lstrip("+")}
    ivr = {"entry_id": entry, "call_id": f"{entry}-L1", "from": {"number": caller},
           "to": {"number": LINE.lstrip("+"), **line}, "dct": {"number": LINE.lstrip("+"), "type": 2}}
    agent = {"entry_id": entry, "call_id": f"{entry}-L2",
             "from": {"number": caller, "taken_from_call_id": f"{entry}-L1"},
             "to": {"extension": "101", "number": "sip:manager101@vpbx400123456.mangosip.ru", **line},
             "dct": {"number": LINE.lstrip("+"), "type": 2}}
    return {
        "ivr_appeared": {**ivr, "seq": 1, "timestamp": T0, "call_state": "Appeared", "location": "ivr"},
        "ivr_connected": {**ivr, "seq": 2, "timestamp": T0 + 1, "call_state": "Connected", "location": "ivr"},
        "ivr_disconnected": {**ivr, "seq": 3, "timestamp": T0 + 5, "call_state": "Disconnected",
                             "location": "ivr", "disconnect_reason": 1110},
        "agent_appeared": {**agent, "seq": 1, "timestamp": T0 + 5, "call_state": "Appeared",
                           "location": "abonent"},
        "agent_connected": {**agent, "seq": 2, "timestamp": T0 + 12, "call_state": "Connected",
                            "location": "abonent"},
        "agent_disconnected": {**agent, "seq": 3, "timestamp": T0 + 150, "call_state": "Disconnected",
                               "location": "abonent", "disconnect_reason": 1110},
        "summary": {"entry_id": entry, "call_direction": 1, "from": {"number": caller},
                    "to": {"extension": "101"}, "line_number": LINE.lstrip("+"), "create_time": T0,
                    "forward_time": T0 + 5, "talk_time": T0 + 12, "end_time": T0 + 150,
                    "entry_result": 1, "disconnect_reason": 1110},
    }


LEGS = ["ivr_appeared", "ivr_connected", "ivr_disconnected",
        "agent_appeared", "agent_connected", "agent_disconnected"]
_shuffled = random.Random(20251125)
ORDERS = [
    LEGS,
    LEGS[::-1],
    LEGS[3:] + LEGS[:3],  # the employee's leg (seq 1..3) before the IVR's (seq 1..3)
    ["ivr_appeared", "agent_appeared", "ivr_connected", "agent_connected",
     "ivr_disconnected", "agent_disconnected"],  # seq 1, 1, 2, 2, 3, 3
    ["agent_appeared", "agent_connected", "ivr_appeared", "ivr_disconnected",
     "agent_disconnected", "ivr_connected"],  # a leg's later Appeared before the call's first
    *(_shuffled.sample(LEGS, len(LEGS)) for _ in range(3)),
]


def send_call(hub: CallHub, events: dict[str, dict[str, object]], order: list[str]) -> str:
    ids = set()
    for name in order:
        path = "events/summary" if name == "summary" else "events/call"
        r = hub.send("calls", "mango", "call_appeared", body=signed_body(events[name]), path=path)
        assert r.status_code == 200, r.text
        ids.add(r.json().get("id"))
        pause()
    assert len(ids - {None}) == 1, (order, ids)
    [lead_id] = ids - {None}
    return str(lead_id)


def test_http_legs_of_one_call_in_any_order_make_one_right_call_block(hub: CallHub) -> None:
    for n, order in enumerate(ORDERS):
        caller = f"7916123{n:04d}"
        with_summary = [*order[: n % 7], "summary", *order[n % 7:]]  # the summary anywhere
        for kind, sequence in (("legs", order), ("summary", with_summary)):
            events = two_leg_call(f"ENTRY-{kind}-{n}", caller)
            call = hub.lead(send_call(hub, events, sequence))["call"]
            assert call["direction"] == "inbound", (sequence, call)
            assert (call["from"], call["to"]) == (f"+{caller}", LINE), (sequence, call)
            assert call["tracking_number"] == LINE
            # the call began when it reached the IVR, not when the employee's phone rang
            assert call["started_at"].startswith("2025-11-25T09:00:00"), (sequence, call)
            assert call["answered"] is True, (sequence, call)
            # talk time comes with the summary (0 in the block until then)
            assert call["duration_s"] == (138 if kind == "summary" else 0), (sequence, call)


def test_http_a_call_that_ended_in_the_ivr_is_a_lead_not_answered(hub: CallHub) -> None:
    ivr_only = ["ivr_appeared", "ivr_connected", "ivr_disconnected", "summary"]
    for n, order in enumerate([ivr_only, ivr_only[::-1], ["ivr_connected", "summary", "ivr_appeared"]]):
        events = two_leg_call(f"ENTRY-IVR-{n}", f"7926777{n:04d}")
        events["summary"].update(forward_time=0, talk_time=0, to={})  # entry_result stays 1
        call = hub.lead(send_call(hub, events, order))["call"]
        assert (call["answered"], call["duration_s"]) == (False, 0), (order, call)
        assert call["started_at"].startswith("2025-11-25T09:00:00")
    r = hub.send("calls", "mango", "summary_ivr")
    lead = hub.lead(r.json()["id"])
    assert lead["call"]["answered"] is False and lead["call"]["duration_s"] == 0
    assert lead["call"]["started_at"].startswith("2025-11-25T10:03:20")
    assert lead["contact"]["phones"] == ["+79267778899"]
