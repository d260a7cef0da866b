"""The ``zadarma`` source: zd_echo, the base64-of-hex signature, call events → one lead."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from hub.connectors import ConnectorContext, InboundRequest
from hub.errors import AuthError, ParseError
from plugins.zadarma import ZadarmaConfig, ZadarmaSource, leadhub_register_connectors, signature
from tests.call_hub import CallHub, call_hub, pause
from tests.conftest import ConfigWriter
from tests.payload_loader import load_request, payload_names

SECRET = "b3f1a9c07d2e4f6a8c1e"
CALLER, DID = "+79161234567", "+74951234567"
CONFIG = f"""
[sources.zd]
plugin = "zadarma"
secret = "{SECRET}"
timezone = "Europe/Moscow"
tracking_numbers = {{ "{DID}" = {{ source = "google", medium = "cpc", campaign = "brand" }} }}
"""


def source() -> ZadarmaSource:
    config = ZadarmaConfig.model_validate({"plugin": "zadarma", "secret": SECRET,
                                           "timezone": "Europe/Moscow"})
    return ZadarmaSource(config, ConnectorContext(name="zd", data_dir=Path(".")))


def request(name: str, **kw: object) -> InboundRequest:
    return load_request("zadarma", name, source="zd", **kw)  # type: ignore[arg-type]


def test_every_payload_names_its_source_and_is_signed() -> None:
    names = payload_names("zadarma")
    assert {"notify_start", "notify_end", "notify_record", "notify_ivr"} <= set(names)
    for name in names:
        source().verify(request(name))


def test_registers_one_source_class() -> None:
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [ZadarmaSource]


def test_signature_is_base64_of_the_hex_digest_like_php() -> None:
    # PHP: base64_encode(hash_hmac('sha1', $callerId . $calledDid . $callStart, SECRET))
    hexd = hmac.new(b"secret", b"79161234567749512345672025-11-25 12:00:00", hashlib.sha1).hexdigest()
    assert signature(b"secret", "79161234567749512345672025-11-25 12:00:00") == \
        base64.b64encode(hexd.encode()).decode()
    raw = base64.b64encode(hmac.new(b"secret", b"x", hashlib.sha1).digest()).decode()
    assert signature(b"secret", "x") != raw  # not base64 of the raw digest


def test_zd_echo_is_answered_with_its_value() -> None:
    shake = source().handshake(InboundRequest("GET", "zd", "", (("zd_echo", "a1B2c3"),), {}, b""))
    assert shake is not None and (shake.status_code, shake.body) == (200, "a1B2c3")
    assert source().handshake(request("notify_start")) is None


@pytest.mark.parametrize("headers", [{}, {"signature": ""}, {"signature": "bm90IGl0"}])
def test_missing_or_wrong_signature(headers: dict[str, str]) -> None:
    plain = request("notify_start")
    hdrs = {k: v for k, v in plain.headers.items() if k != "signature"} | headers
    with pytest.raises(AuthError):
        source().verify(InboundRequest("POST", "zd", "", (), hdrs, plain.body))


def test_signed_fields_cannot_be_changed() -> None:
    plain = request("notify_start")
    forged = plain.body.replace(b"79161234567", b"79990000000")
    with pytest.raises(AuthError):
        source().verify(request("notify_start", body=forged))


def test_start_is_an_inbound_call_with_the_account_time_zone() -> None:
    [event] = source().parse(request("notify_start"))
    assert event.event_id == "in_8a1f0e4c2b9d47e6a3c5f7b1d0e2a4c6:NOTIFY_START"
    assert event.lead is not None and event.lead.phones == ["79161234567"]
    call = event.lead.call
    assert call is not None and call.call_id == "in_8a1f0e4c2b9d47e6a3c5f7b1d0e2a4c6"
    assert (call.direction, call.from_number, call.to_number, call.seq) == \
        ("inbound", "79161234567", "74951234567", 1)
    assert call.started_at == datetime(2025, 11, 25, 12, 0, tzinfo=ZoneInfo("Europe/Moscow"))
    assert call.started_at is not None and call.started_at.utcoffset() == timedelta(0)


def test_end_answered_and_missed() -> None:
    [end] = source().parse(request("notify_end"))
    assert end.lead is not None and end.lead.call is not None
    assert (end.lead.call.answered, end.lead.call.duration_s, end.lead.call.seq) == (True, 95, 4)
    assert end.lead.fields["zadarma_call_id_with_rec"] == "1764072000.5821903"
    [missed] = source().parse(request("notify_end_missed"))
    assert missed.lead is not None and missed.lead.call is not None
    assert (missed.lead.call.answered, missed.lead.call.duration_s) == (False, 0)
    assert missed.lead.fields["zadarma_disposition"] == "no answer"


def test_outbound_call_and_internal_calls() -> None:
    [out] = source().parse(request("notify_out_start"))
    assert out.lead is not None and out.lead.call is not None
    assert (out.lead.call.direction, out.lead.call.to_number) == ("outbound", "79167654321")
    fields = {"event": "NOTIFY_OUT_START", "call_start": "2025-11-25 13:00:00",
              "pbx_call_id": "out_1", "internal": "100", "destination": "101"}
    [internal] = source().parse(request("notify_out_start", body=urlencode(fields).encode()))
    assert internal.lead is None


def test_non_call_events_and_garbage() -> None:
    [ivr] = source().parse(request("notify_ivr"))
    assert ivr.lead is None and ivr.reason
    with pytest.raises(ParseError):
        source().parse(request("notify_ivr", body=b"caller_id=1"))
    with pytest.raises(ParseError):
        source().parse(request("notify_ivr", body=b"\x89PNG", headers={"content-type": "image/png"}))


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[CallHub]:
    with call_hub(CONFIG, write_config, tmp_path, redis_url) as h:
        yield h


def test_http_zd_echo(hub: CallHub) -> None:
    r = hub.client.get("/hooks/zd", params={"zd_echo": "9f8e7d"})
    assert (r.status_code, r.text) == (200, "9f8e7d")
    assert hub.client.get("/hooks/zd").status_code == 401  # a GET without the echo is not an event


def test_http_a_call_is_a_lead(hub: CallHub) -> None:
    r = hub.send("zd", "zadarma", "notify_start")
    assert r.status_code == 200 and r.text == ""  # NOTIFY_START's body would be a routing command
    lead = hub.only_lead("zd")
    assert lead["channel"] == "call" and lead["contact"]["phones"] == [CALLER]


def test_http_non_lead_event(hub: CallHub) -> None:
    assert hub.send("zd", "zadarma", "notify_ivr").status_code == 200
    assert hub.lead_rows() == 0


def test_http_bad_signature(hub: CallHub) -> None:
    r = hub.send("zd", "zadarma", "notify_start", headers={"signature": "d3Jvbmc="})
    assert r.status_code == 401 and hub.lead_rows() == 0


def test_http_repeated_delivery_is_one_lead(hub: CallHub) -> None:
    hub.send("zd", "zadarma", "notify_end_missed")
    hub.send("zd", "zadarma", "notify_end_missed")
    assert len(hub.leads("zd")) == 1


def test_http_authentic_garbage_gets_200(hub: CallHub) -> None:
    r = hub.send("zd", "zadarma", "notify_record", body=b"pbx_call_id=x&call_id_with_rec=",
                 headers={"signature": base64.b64encode(
                     hmac.new(SECRET.encode(), b"x", hashlib.sha1).hexdigest().encode()).decode()})
    assert r.status_code == 200 and len(hub.quarantined()) == 1


def test_http_all_events_out_of_order_make_one_complete_lead(hub: CallHub) -> None:
    for name in ("notify_end", "notify_answer", "notify_internal", "notify_start"):
        assert hub.send("zd", "zadarma", name).status_code == 200
        pause()
    pause()
    assert hub.send("zd", "zadarma", "notify_record").status_code == 200
    lead = hub.only_lead("zd")
    call = lead["call"]
    assert (call["from"], call["to"], call["direction"]) == (CALLER, DID, "inbound")
    assert call["answered"] is True and call["duration_s"] == 95
    assert call["started_at"].startswith("2025-11-25T09:00:00")  # 12:00 Moscow time
    assert lead["fields"]["zadarma_call_id_with_rec"] == "1764072000.5821903"


def test_http_missed_call_is_an_unanswered_lead(hub: CallHub) -> None:
    hub.send("zd", "zadarma", "notify_end_missed")
    lead = hub.only_lead("zd")
    assert lead["call"]["answered"] is False and lead["call"]["duration_s"] == 0


def test_http_tracking_number_gives_utm_tags(hub: CallHub) -> None:
    hub.send("zd", "zadarma", "notify_start")
    lead = hub.only_lead("zd")
    assert (lead["utm"]["source"], lead["utm"]["medium"], lead["utm"]["campaign"]) == \
        ("google", "cpc", "brand")
