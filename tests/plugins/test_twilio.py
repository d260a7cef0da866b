"""The ``twilio`` source: X-Twilio-Signature over public_url + sorted params, TwiML answers,
status and recording callbacks of one call → one lead."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest

from hub.connectors import Accepted, ConnectorContext, InboundRequest
from hub.errors import AuthError
from plugins.twilio import (
    EMPTY_TWIML,
    TwilioConfig,
    TwilioSource,
    leadhub_register_connectors,
    signature,
    url_variants,
)
from tests.call_hub import CallHub, call_hub, pause
from tests.conftest import ConfigWriter
from tests.payload_loader import load_meta, load_request, payload_names

TOKEN = "5f1c8e2a9b7d4c3e6a0f2b8d1c4e7a93"
PUBLIC = "https://leadhub.example.com/hooks/twilio_calls"
SID = "CA7b2e9f1c4d8a3e6b0f5c2d9a1e7b4f8c"
CALLER, NUMBER = "+14158675310", "+14153905000"
CONFIG = f"""
[sources.twilio_calls]
plugin = "twilio"
auth_token = "{TOKEN}"
public_url = "{PUBLIC}"
forward_to = "+14155550100"
tracking_numbers = {{ "{NUMBER}" = {{ source = "facebook", medium = "paid_social", campaign = "fall" }} }}
"""


def source(**settings: object) -> TwilioSource:
    config = TwilioConfig.model_validate({"plugin": "twilio", "auth_token": TOKEN,
                                          "public_url": PUBLIC, **settings})
    return TwilioSource(config, ConnectorContext(name="twilio_calls", data_dir=Path(".")))


def request(name: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
            query: tuple[tuple[str, str], ...] = (), seen: str = "http://10.0.0.5:8000") -> InboundRequest:
    plain = load_request("twilio", name, source="twilio_calls", body=body, headers=headers)
    path = load_meta("twilio", name)["path"]
    qs = f"?{urlencode(query)}" if query else ""
    url = f"{seen}/hooks/twilio_calls" + (f"/{path}" if path else "") + qs
    return InboundRequest("POST", "twilio_calls", path, query, plain.headers, plain.body, url)


# ---------------------------------------------------------------- the signature


def test_twilios_documented_example() -> None:
    # https://www.twilio.com/docs/usage/webhooks/webhooks-security (the worked example)
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
              ("From", "+12349013030"), ("To", "+18005551212")]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert signature("12345", url, list(reversed(params))) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_the_documented_example_over_a_request_behind_a_proxy() -> None:
    body = (b"To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234&From=%2B12349013030"
            b"&Caller=%2B12349013030")
    src = source(public_url="https://mycompany.com/myapp.php", auth_token="12345")
    req = InboundRequest("POST", "twilio_calls", "", (("foo", "1"), ("bar", "2")),
                         {"content-type": "application/x-www-form-urlencoded",
                          "x-twilio-signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="}, body,
                         "http://127.0.0.1:8000/hooks/twilio_calls?foo=1&bar=2")
    src.verify(req)
    tampered = InboundRequest(req.method, req.source, req.path, req.query, req.headers, req.body,
                              req.url.replace("bar=2", "bar=3"))
    with pytest.raises(AuthError):
        src.verify(tampered)


def test_port_variants() -> None:
    assert url_variants("https://a.example/x?y=1") == [
        "https://a.example/x?y=1", "https://a.example:443/x?y=1"]
    assert url_variants("https://a.example:443/x") == ["https://a.example:443/x", "https://a.example/x"]
    assert url_variants("https://a.example:8443/x") == ["https://a.example:8443/x"]


def test_every_payload_names_its_source_and_is_signed() -> None:
    names = payload_names("twilio")
    assert {"voice_incoming", "status_completed", "recording_completed", "sms_incoming"} <= set(names)
    for name in names:
        source().verify(request(name))


def test_registers_one_source_class() -> None:
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [TwilioSource]


@pytest.mark.parametrize("change", ["header", "param", "url", "missing"])
def test_bad_signatures(change: str) -> None:
    req = request("voice_incoming")
    if change == "header":
        req = request("voice_incoming", headers={"x-twilio-signature": "AAAA"})
    elif change == "param":
        req = request("voice_incoming", body=req.body.replace(b"ringing", b"completed"))
    elif change == "url":
        req = request("voice_incoming", query=(("extra", "1"),))
    else:
        hdrs = {k: v for k, v in req.headers.items() if k != "x-twilio-signature"}
        req = InboundRequest(req.method, req.source, req.path, req.query, hdrs, req.body, req.url)
    with pytest.raises(AuthError):
        source().verify(req)


def test_without_public_url_the_url_seen_is_signed() -> None:
    src = source(public_url=None)
    params = [("CallSid", SID), ("From", CALLER)]
    url = "https://hub.example/hooks/twilio_calls/status"
    req = InboundRequest("POST", "twilio_calls", "status", (),
                         {"content-type": "application/x-www-form-urlencoded",
                          "x-twilio-signature": signature(TOKEN, url, params)},
                         urlencode(params).encode(), url)
    src.verify(req)


# ---------------------------------------------------------------- parse and respond


def test_voice_webhook_is_an_inbound_call_answered_with_twiml() -> None:
    req = request("voice_incoming")
    [event] = source().parse(req)
    assert event.lead is not None and event.lead.phones == [CALLER]
    call = event.lead.call
    assert call is not None and call.call_id == SID
    assert (call.from_number, call.to_number, call.direction, call.answered) == \
        (CALLER, NUMBER, "inbound", None)
    answer = source(forward_to="+14155550100").respond(req, Accepted(["01L"]))
    assert answer.media_type == "text/xml"
    assert answer.body == ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                           f'<Dial action="{PUBLIC}/dial">+14155550100</Dial></Response>')
    own = source(voice_twiml="<Response><Say>Hi</Say></Response>").respond(req, Accepted([]))
    assert own.body == "<Response><Say>Hi</Say></Response>"
    assert source().respond(req, Accepted([])).body == EMPTY_TWIML


def test_a_quarantined_call_still_gets_twiml_and_the_idempotency_token_is_kept() -> None:
    """A 422 would make Twilio play its "application error" message to the caller."""
    req = request("voice_incoming")
    answer = source(forward_to="+14155550100").respond_quarantined(req, "unreadable")
    assert answer.status_code == 200 and answer.media_type == "text/xml"
    assert ">+14155550100</Dial>" in str(answer.body)
    assert "i-twilio-idempotency-token" in TwilioSource.kept_headers


def test_status_callbacks_get_empty_twiml_even_with_forward_to() -> None:
    req = request("status_completed")
    assert source(forward_to="+14155550100").respond(req, Accepted(["01L"])).body == EMPTY_TWIML


def test_completed_and_no_answer() -> None:
    [done] = source().parse(request("status_completed"))
    assert done.event_id == "0b8c1d2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"  # the idempotency token
    assert done.lead is not None and done.lead.call is not None
    assert (done.lead.call.answered, done.lead.call.duration_s, done.lead.call.seq) == (True, 57, 3)
    [missed] = source().parse(request("status_no_answer"))
    assert missed.event_id == "status:CA1e4b7d0a3c6f9b2e5d8a1c4f7b0e3d6a:no-answer:"
    assert missed.lead is not None and missed.lead.call is not None
    assert (missed.lead.call.answered, missed.lead.call.duration_s) == (False, 0)


def dial_action(status: str, duration: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The ``<Dial action>`` callback as Twilio posts it (twilio.com/docs/voice/twiml/dial),
    signed for ``public_url`` + ``/dial``."""
    params = [("AccountSid", "AC3f8e2b7c1d9a4e6f0b5c8d2a7e1f4b9c"), ("CallSid", SID),
              ("CallStatus", "in-progress"), ("Direction", "inbound"), ("From", CALLER),
              ("To", NUMBER), ("DialCallSid", "CA9d1f"), ("DialCallStatus", status)]
    if duration is not None:
        params.append(("DialCallDuration", str(duration)))
    headers = {"x-twilio-signature": signature(TOKEN, f"{PUBLIC}/dial", params),
               "content-type": "application/x-www-form-urlencoded",
               "i-twilio-idempotency-token": f"dial-{status}-{duration}"}
    return urlencode(params).encode(), headers


def test_with_forward_to_the_dial_action_says_whether_the_sales_phone_answered() -> None:
    """Twilio answers the call itself to run the <Dial>: the call's own ``completed`` (and
    its CallDuration, ringing included) says nothing of the sales phone; the action does."""
    fwd = source(forward_to="+14155550100")
    [status] = fwd.parse(request("status_completed"))
    assert status.lead is not None and status.lead.call is not None
    assert (status.lead.call.answered, status.lead.call.duration_s) == (None, None)
    assert status.lead.call.started_at == datetime(2025, 11, 25, 15, 3, 8, tzinfo=UTC)  # 15:04:05 - 57 s
    for dial, duration, answered, talk in (("no-answer", None, False, 0), ("busy", None, False, 0),
                                           ("completed", 41, True, 41), ("answered", 12, True, 12)):
        body, headers = dial_action(dial, duration)
        req = InboundRequest("POST", "twilio_calls", "dial", (), headers, body, f"{PUBLIC}/dial")
        fwd.verify(req)
        [event] = fwd.parse(req)
        assert event.lead is not None and event.lead.call is not None and event.lead.call.call_id == SID
        assert (event.lead.call.answered, event.lead.call.duration_s) == (answered, talk)
        assert fwd.respond(req, Accepted(["01L"])).body == EMPTY_TWIML, "never dial again"
    no_public = TwilioSource(TwilioConfig.model_validate(
        {"plugin": "twilio", "auth_token": TOKEN, "forward_to": "+1415"}),
        ConnectorContext(name="calls", data_dir=Path(".")))
    voice = request("voice_incoming")
    assert 'action="calls/dial"' in str(no_public.respond(voice, Accepted([])).body)
    sub = InboundRequest("POST", "calls", "voice", (), voice.headers, voice.body, "")
    assert 'action="dial"' in str(no_public.respond(sub, Accepted([])).body)


def test_recording_callback_and_dial_leg() -> None:
    [rec] = source().parse(request("recording_completed"))
    assert rec.lead is not None and rec.lead.call is not None
    assert rec.lead.call.call_id == SID and rec.lead.call.seq == 0
    assert rec.lead.call.recording_url and rec.lead.call.recording_url.endswith(
        "/Recordings/RE4d2f8a1c9b3e7d5f0a6c2e8b4d1f7a9c")
    leg = urlencode({"CallSid": "CA0000", "ParentCallSid": SID, "Direction": "outbound-dial",
                     "CallStatus": "completed", "CallDuration": "41", "From": CALLER,
                     "To": "+14155550100"}).encode()
    [dial] = source().parse(request("status_completed", body=leg))
    assert dial.lead is not None and dial.lead.call is not None
    assert (dial.lead.call.call_id, dial.lead.call.duration_s, dial.lead.call.from_number) == \
        (SID, 41, None)


def test_a_message_is_not_a_call() -> None:
    [event] = source().parse(request("sms_incoming"))
    assert event.lead is None and event.reason


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[CallHub]:
    with call_hub(CONFIG, write_config, tmp_path, redis_url) as h:
        yield h


def test_http_voice_webhook_is_a_lead_and_gets_twiml(hub: CallHub) -> None:
    r = hub.send("twilio_calls", "twilio", "voice_incoming")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/xml")
    assert f'<Dial action="{PUBLIC}/dial">+14155550100</Dial>' in r.text
    lead = hub.only_lead("twilio_calls")
    assert lead["contact"]["phones"] == [CALLER] and lead["call"]["to"] == NUMBER


def test_http_message_is_not_a_lead(hub: CallHub) -> None:
    assert hub.send("twilio_calls", "twilio", "sms_incoming").status_code == 200
    assert hub.lead_rows() == 0


def test_http_bad_signature(hub: CallHub) -> None:
    r = hub.send("twilio_calls", "twilio", "voice_incoming", headers={"x-twilio-signature": "bm9wZQ=="})
    assert r.status_code == 401 and hub.lead_rows() == 0


def test_http_repeated_delivery_is_one_lead(hub: CallHub) -> None:
    first = hub.send("twilio_calls", "twilio", "status_completed")
    again = hub.send("twilio_calls", "twilio", "status_completed")
    assert first.status_code == again.status_code == 200
    assert len(hub.leads("twilio_calls")) == 1


def test_http_all_callbacks_out_of_order_make_one_complete_lead(hub: CallHub) -> None:
    assert hub.send("twilio_calls", "twilio", "status_completed").status_code == 200
    pause()
    assert hub.send("twilio_calls", "twilio", "voice_incoming").status_code == 200
    pause()
    assert hub.send("twilio_calls", "twilio", "recording_completed").status_code == 200
    pause()
    body, headers = dial_action("completed", 41)
    r = hub.send("twilio_calls", "twilio", "status_completed", body=body, headers=headers, path="dial")
    assert r.status_code == 200 and r.text == EMPTY_TWIML
    lead = hub.only_lead("twilio_calls")
    call = lead["call"]
    assert (call["from"], call["to"], call["answered"], call["duration_s"]) == (CALLER, NUMBER, True, 41)
    assert call["recording_url"].endswith("/Recordings/RE4d2f8a1c9b3e7d5f0a6c2e8b4d1f7a9c")
    assert lead["fields"]["twilio_recording_sid"] == "RE4d2f8a1c9b3e7d5f0a6c2e8b4d1f7a9c"


def test_http_missed_call_is_an_unanswered_lead(hub: CallHub) -> None:
    hub.send("twilio_calls", "twilio", "status_no_answer")
    lead = hub.only_lead("twilio_calls")
    assert lead["call"]["answered"] is False and lead["call"]["duration_s"] == 0
    assert lead["contact"]["phones"] == ["+14155552671"]


def test_http_tracking_number_gives_utm_tags(hub: CallHub) -> None:
    hub.send("twilio_calls", "twilio", "voice_incoming")
    lead = hub.only_lead("twilio_calls")
    assert (lead["utm"]["source"], lead["utm"]["medium"], lead["utm"]["campaign"]) == \
        ("facebook", "paid_social", "fall")


def test_http_a_forwarded_call_nobody_picked_up_is_a_missed_call(hub: CallHub) -> None:
    assert hub.send("twilio_calls", "twilio", "voice_incoming").status_code == 200
    pause()
    body, headers = dial_action("no-answer")
    r = hub.send("twilio_calls", "twilio", "status_completed", body=body, headers=headers, path="dial")
    assert r.status_code == 200 and r.text == EMPTY_TWIML
    pause()
    assert hub.send("twilio_calls", "twilio", "status_completed").status_code == 200
    call = hub.only_lead("twilio_calls")["call"]
    assert (call["answered"], call["duration_s"]) == (False, 0)
