"""The e-mail sources (``mailgun``, ``sendgrid``, ``postmark``, ``email_raw``) on their
providers' documented payloads: parsed directly, and over real HTTP to the running app."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import ConnectorContext, InboundRequest, ParsedEvent, Source
from hub.errors import AuthError, ParseError
from hub.normalize import normalize_lead
from hub.runtime import Runtime
from hub.testing.cluster import running_app
from plugins.email_raw import EmailRawConfig, EmailRawSource
from plugins.mailgun import MailgunConfig, MailgunSource, check_signature
from plugins.postmark import PostmarkConfig, PostmarkSource
from plugins.sendgrid import SendgridConfig, SendgridSource
from tests.conftest import ConfigWriter
from tests.payload_loader import load_meta, load_request, payload_names, payload_path

MG_KEY = "mailgun-test-signing-key"
TOKEN = {"sendgrid": "sg-secret", "postmark": "pm-secret", "email_raw": "raw-secret"}
ADMIN = {"Authorization": "Bearer adm"}
CONFIG = f"""
[hub]
admin_token = "adm"
default_destinations = ["jsonl"]

[sources.mg]
plugin = "mailgun"
signing_key = "{MG_KEY}"

[sources.sg]
plugin = "sendgrid"
token = "{TOKEN['sendgrid']}"

[sources.pm]
plugin = "postmark"
token = "{TOKEN['postmark']}"

[sources.raw]
plugin = "email_raw"
token = "{TOKEN['email_raw']}"

[destinations.jsonl]
plugin = "file"
"""
SOURCE_OF = {"mailgun": "mg", "sendgrid": "sg", "postmark": "pm", "email_raw": "raw"}


def resign(body: bytes, *, key: str = MG_KEY, timestamp: int | None = None) -> bytes:
    """Put a fresh timestamp and its signature into a Mailgun payload (urlencoded or multipart)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    token_m = re.search(rb'(?:^|&)token=([^&]+)|name="token"\r\n\r\n([^\r]+)', body)
    assert token_m, "payload has no token"
    token = (token_m.group(1) or token_m.group(2)).decode()
    sig = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    for field, value in (("timestamp", ts), ("signature", sig)):
        body, n = re.subn(rb"(^|&)" + field.encode() + rb"=[^&]*",
                          rb"\g<1>" + f"{field}={value}".encode(), body)
        if not n:
            body, n = re.subn(rb'(name="' + field.encode() + rb'"\r\n\r\n)[^\r]*',
                              rb"\g<1>" + value.encode(), body)
        assert n == 1, field
    return body


def source(plugin: str) -> Source[Any]:
    ctx = ConnectorContext(name=SOURCE_OF[plugin], data_dir=Path("."))
    if plugin == "mailgun":
        return MailgunSource(MailgunConfig(plugin="mailgun", signing_key=MG_KEY), ctx)  # type: ignore[arg-type]
    classes: dict[str, tuple[Any, Any]] = {"sendgrid": (SendgridSource, SendgridConfig),
                                           "postmark": (PostmarkSource, PostmarkConfig),
                                           "email_raw": (EmailRawSource, EmailRawConfig)}
    cls, cfg = classes[plugin]
    return cls(cfg(plugin=plugin, token=TOKEN[plugin]), ctx)  # type: ignore[no-any-return]


def request(plugin: str, name: str, **kw: Any) -> InboundRequest:
    req = load_request(plugin, name, source=SOURCE_OF[plugin], **kw)
    if plugin == "mailgun" and "body" not in kw:
        req = load_request(plugin, name, source="mg", body=resign(req.body), **kw)
    return req


def one(plugin: str, name: str) -> ParsedEvent:
    events = source(plugin).parse(request(plugin, name))
    assert len(events) == 1
    return events[0]


def lead_json(event: ParsedEvent) -> dict[str, Any]:
    assert event.lead is not None, event.reason
    return normalize_lead(event.lead, lead_id="01TEST", source="mail", default_region="RU",
                          received_at=datetime(2026, 11, 24, tzinfo=UTC)).to_json_dict()


def test_every_payload_names_its_source() -> None:
    for plugin in SOURCE_OF:
        names = payload_names(plugin)
        assert len(names) >= 3, plugin
        for name in names:
            load_meta(plugin, name)


# ---------------------------------------------------------------- parsing


def test_mailgun_route_tester_sample() -> None:
    event = one("mailgun", "route_tester")
    assert event.event_id == "517ACC75.5010709@sandbox085a3b878a964897b9b9efb2395a1f5a.mailgun.org"
    lead = lead_json(event)
    assert lead["channel"] == "email" and lead["contact"]["name"] == "Bob"
    assert lead["contact"]["emails"] == ["bob@sandbox085a3b878a964897b9b9efb2395a1f5a.mailgun.org"]
    assert lead["message"] == "Hi Alice,\n\nThis is Bob.\n\nI also attached a file."  # stripped-text
    assert lead["fields"]["subject"] == "Re: Sample POST request"


def test_mailgun_multipart_with_attachment_russian() -> None:
    event = one("mailgun", "lead_ru_attachment")
    assert event.event_id == "CAF3kq9v=lead-7781@mail.gmail.com"
    lead = lead_json(event)
    assert lead["contact"]["name"] == "Мария Иванова"
    assert lead["contact"]["phones"] == ["+79852223344"]  # from stripped-signature
    assert lead["utm"]["source"] == "google" and lead["utm"]["campaign"] == "b2b"
    assert lead["click_ids"]["gclid"] == "EAIaIQobChMI_lead"
    assert lead["fields"]["mailbox_hash"] == "google"


def test_mailgun_mime_mode_and_auto_reply() -> None:
    lead = lead_json(one("mailgun", "mime_mode"))
    assert lead["contact"]["name"] == "Пётр Сидоров" and lead["contact"]["phones"] == ["+79217654321"]
    auto = one("mailgun", "auto_reply")
    assert auto.lead is None and auto.event_id == "vacation-0042@mail.gmail.com"


def test_mailgun_mime_mode_reads_an_8bit_part_in_its_own_charset() -> None:
    """body-mime is a message with its own encodings: a KOI8-R part sent 8-bit, in a
    multipart form part that names no charset, was decoded as UTF-8 and lost its text."""
    lead = lead_json(one("mailgun", "mime_mode_8bit"))
    assert lead["contact"]["name"] == "Анна Кузьмина"
    assert lead["message"].startswith("Здравствуйте! Хочу записаться на курс."), lead["message"]
    assert lead["fields"]["subject"] == "Запись на курс"


def test_mailgun_signature_rules() -> None:
    fields = {"timestamp": "1795993800", "token": "abc"}
    good = hmac.new(b"k", b"1795993800abc", hashlib.sha256).hexdigest()
    check_signature("k", {**fields, "signature": good}, tolerance_s=600, now=1795993900)
    check_signature("k", {**fields, "signature": good.upper()}, tolerance_s=600, now=1795993900)
    for bad, now in (({**fields, "signature": good[:-1] + "0"}, 1795993900),
                     ({**fields, "signature": good}, 1795993800 + 601),  # too old
                     ({**fields, "signature": good}, 1795993800 - 400),  # from the future
                     ({"timestamp": "1", "signature": good}, 1795993900),
                     ({**fields, "signature": "ä"}, 1795993900)):
        with pytest.raises(AuthError):
            check_signature("k", bad, tolerance_s=600, now=now)
    with pytest.raises(AuthError):  # not even a form
        source("mailgun").verify(load_request("mailgun", "route_tester", source="mg", body=b"\x00{",
                                              headers={"content-type": "application/json"}))


def test_mailgun_a_message_header_never_stands_in_for_the_signature_fields() -> None:
    """Mailgun posts the message's headers as capitalised fields; one named ``Token`` or
    ``Signature`` comes before Mailgun's own in the form and must not be read for them."""
    body = request("mailgun", "route_tester").body
    forged = b"Token=from-the-mail&Signature=00&Timestamp=1&" + body
    source("mailgun").verify(load_request("mailgun", "route_tester", source="mg", body=forged))
    assert source("mailgun").nonce(load_request("mailgun", "route_tester", source="mg",
                                                body=forged)).value != "from-the-mail"


def test_postmark_a_null_header_value_is_no_header() -> None:
    """A ``Message-ID`` header with a null value was the text "None": every later such
    message became a retry of the first."""
    doc = json.loads(request("postmark", "docs_example").body)
    doc["Headers"] = [*doc["Headers"], {"Name": "Message-ID", "Value": None}]
    [event] = source("postmark").parse(request("postmark", "docs_example",
                                               body=json.dumps(doc).encode()))
    assert event.event_id not in (None, "None")


def test_sendgrid_and_email_raw_take_the_token_in_the_urls_credentials() -> None:
    """``https://user:TOKEN@host/hooks/...`` (Rails' Action Mailbox guide sets SendGrid up so)."""
    for plugin in ("sendgrid", "email_raw"):
        basic = base64.b64encode(f"actionmailbox:{TOKEN[plugin]}".encode()).decode()
        name = payload_names(plugin)[0]
        source(plugin).verify(request(plugin, name, query={},
                                      headers={"authorization": f"Basic {basic}"}))


def test_email_raw_takes_a_message_curl_labelled_as_a_form() -> None:
    """``curl --data-binary @mail.eml`` without ``-H`` says application/x-www-form-urlencoded."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    for name in payload_names("email_raw"):
        [event] = source("email_raw").parse(request("email_raw", name, headers=form))
        assert event.lead is not None or event.reason  # read as the message it is
    with pytest.raises(ParseError):  # a real form is not a message
        source("email_raw").parse(request("email_raw", name, headers=form, body=b"a=1&b=2"))


def test_sendgrid_parsed_mode_forward_sample() -> None:
    event = one("sendgrid", "parsed_forward")
    assert event.event_id == "CAAzJDmKK=-=RRYtNxwMhg4Z=Qy96H1mZva0GNf1JqhhDyPf-dA@mail.gmail.com"
    lead = lead_json(event)
    assert lead["contact"]["name"] == "Rakin Uddin"
    assert lead["contact"]["emails"] == ["random@gmail.com"]
    assert "Testing the inbound e-mail parser here" in lead["message"]  # a forward is kept whole


def test_sendgrid_charsets_decode_each_field() -> None:
    lead = lead_json(one("sendgrid", "parsed_cp1251"))
    assert lead["contact"]["name"] == "Алексей Кузнецов"
    assert lead["message"].startswith("Добрый день! Выставьте, пожалуйста, счёт")
    assert lead["contact"]["phones"] == ["+73432221100"]
    assert lead["fields"]["subject"] == "Счёт на обучение"


def test_sendgrid_raw_mode_and_bounce() -> None:
    lead = lead_json(one("sendgrid", "raw_mode"))
    assert lead["contact"]["name"] == "Иван Петров"
    assert lead["contact"]["phones"] == ["+79161234567", "+79031112233"]
    assert lead["utm"]["source"] == "yandex"
    bounce = one("sendgrid", "bounce")
    assert bounce.lead is None and bounce.event_id == "5f1e2d3c.bounce@mx.google.com"


def test_postmark_docs_example() -> None:
    event = one("postmark", "docs_example")
    assert event.event_id == "73e6d360-66eb-11e1-8e72-a8904824019b"
    lead = lead_json(event)
    assert lead["contact"]["name"] == "Postmarkapp Support"
    assert lead["contact"]["emails"] == ["replyto@postmarkapp.com", "support@postmarkapp.com"]
    assert lead["message"] == "This is the reply text"
    assert lead["fields"]["mailbox_hash"] == "SampleHash"


def test_postmark_russian_reply_and_auto_reply() -> None:
    event = one("postmark", "reply_ru")
    assert event.event_id == "1732443611.987654@mail.yandex.example.ru"  # the message's own id
    lead = lead_json(event)
    assert lead["contact"]["name"] == "Екатерина Волкова"
    assert lead["contact"]["phones"] == ["+79265556677"]  # not the quoted +7 495
    assert lead["fields"]["mailbox_hash"] == "vk"
    assert one("postmark", "auto_reply").lead is None


def test_email_raw_lead_and_non_leads() -> None:
    lead = lead_json(one("email_raw", "gmail_reply_utf8"))
    assert lead["contact"]["emails"] == ["ivan.petrov@gmail.com"]
    for name in ("auto_reply", "bounce"):
        assert one("email_raw", name).lead is None


@pytest.mark.parametrize("plugin, body, ctype", [
    ("mailgun", b"recipient=x%40y.ru", "application/x-www-form-urlencoded"),
    ("mailgun", b"body-mime=%00", "application/x-www-form-urlencoded"),
    ("sendgrid", b"{}", "application/json"),
    ("sendgrid", b"--xYzZY\r\nContent-Disposition: form-data; name=\"SPF\"\r\n\r\npass\r\n--xYzZY--\r\n",
     "multipart/form-data; boundary=xYzZY"),
    ("sendgrid", b"no boundary", "multipart/form-data"),
    ("postmark", b"[1, 2]", "application/json"),
    ("postmark", b"{\"Subject\": \"x\"}", "application/json"),
    ("postmark", b"not json", "application/json"),
    ("email_raw", b"", "message/rfc822"),
    ("email_raw", b"<html></html>", "text/html"),
    ("email_raw", b"X-Only: header\r\n\r\n", "message/rfc822"),
])
def test_garbage_is_a_clear_parse_error(plugin: str, body: bytes, ctype: str) -> None:
    name = payload_names(plugin)[0]
    req = load_request(plugin, name, source=SOURCE_OF[plugin], body=body, headers={"content-type": ctype})
    with pytest.raises(ParseError):
        source(plugin).parse(req)


def test_token_sources_accept_query_header_and_postmark_basic_auth() -> None:
    for plugin in ("sendgrid", "postmark", "email_raw"):
        src, name = source(plugin), payload_names(plugin)[0]
        src.verify(request(plugin, name, query={"token": TOKEN[plugin]}))
        src.verify(request(plugin, name, query={}, headers={"x-leadhub-token": TOKEN[plugin]}))
        for query in ({}, {"token": "wrong"}):
            with pytest.raises(AuthError):
                src.verify(request(plugin, name, query=query))
    basic = base64.b64encode(f"postmark:{TOKEN['postmark']}".encode()).decode()
    source("postmark").verify(request("postmark", "docs_example", query={},
                                      headers={"authorization": f"Basic {basic}"}))
    wrong = base64.b64encode(b"postmark:nope").decode()
    with pytest.raises(AuthError):
        source("postmark").verify(request("postmark", "docs_example", query={},
                                          headers={"authorization": f"Basic {wrong}"}))


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_app(write_config(CONFIG), data_dir=tmp_path / "data", redis_url=redis_url) as hub:
        yield hub


def post(c: httpx.Client, plugin: str, name: str, *, auth: bool = True, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    meta = load_meta(plugin, name)
    raw = payload_path(plugin, name).read_bytes() if body is None else body
    params: dict[str, str] = {}
    if plugin == "mailgun":
        raw = resign(raw) if auth else raw
    elif auth:
        params["token"] = TOKEN[plugin]
    return c.post(f"/hooks/{SOURCE_OF[plugin]}", params=params, content=raw,
                  headers={"content-type": meta["content_type"], **(headers or {})})


def leads(c: httpx.Client, source_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get("/api/leads", params={"source": source_name},
                                        headers=ADMIN).json()["items"]
    return items


def counts(c: httpx.Client, source_name: str) -> dict[str, int]:
    by_source: dict[str, dict[str, int]] = c.get("/api/ledger", headers=ADMIN).json()["by_source"]
    return by_source.get(source_name, {})


LEAD_PAYLOADS = [("mailgun", "lead_ru_attachment"), ("sendgrid", "parsed_cp1251"),
                 ("postmark", "reply_ru"), ("email_raw", "gmail_reply_utf8")]
NON_LEAD_PAYLOADS = [("mailgun", "auto_reply"), ("sendgrid", "bounce"),
                     ("postmark", "auto_reply"), ("email_raw", "auto_reply")]


@pytest.mark.parametrize("plugin, name", LEAD_PAYLOADS)
def test_http_lead(hub: Any, plugin: str, name: str) -> None:
    _, c = hub
    r = post(c, plugin, name)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "accepted"
    lead = c.get(f"/api/leads/{body['id']}", headers=ADMIN).json()
    assert lead["channel"] == "email" and lead["source"] == SOURCE_OF[plugin]
    assert lead["contact"]["phones"] and lead["contact"]["emails"] and lead["contact"]["name"]


@pytest.mark.parametrize("plugin, name", NON_LEAD_PAYLOADS)
def test_http_auto_reply_or_bounce_is_200_without_a_lead(hub: Any, plugin: str, name: str) -> None:
    _, c = hub
    r = post(c, plugin, name)
    assert r.status_code == 200, r.text
    assert leads(c, SOURCE_OF[plugin]) == []
    got = counts(c, SOURCE_OF[plugin])
    assert got["events"] == 1 and got["non_lead"] == 1


@pytest.mark.parametrize("plugin, name", LEAD_PAYLOADS)
def test_http_bad_signature_or_token_is_401(hub: Any, plugin: str, name: str) -> None:
    _, c = hub
    if plugin == "mailgun":
        raw = payload_path(plugin, name).read_bytes()
        for bad in (resign(raw, key="wrong-key"), resign(raw, timestamp=int(time.time()) - 10 * 3600), raw):
            assert post(c, plugin, name, auth=False, body=bad).status_code == 401
    else:
        assert post(c, plugin, name, auth=False).status_code == 401
        assert post(c, plugin, name, auth=False, headers={"X-Leadhub-Token": "nope"}).status_code == 401
    assert leads(c, SOURCE_OF[plugin]) == []


@pytest.mark.parametrize("plugin, name", LEAD_PAYLOADS)
def test_http_repeated_delivery_is_one_lead(hub: Any, plugin: str, name: str) -> None:
    _, c = hub
    first = post(c, plugin, name)
    assert first.status_code == 200, first.text
    # a retry: Mailgun's with a new token, the others byte for byte
    body = None
    if plugin == "mailgun":
        body = payload_path(plugin, name).read_bytes().replace(
            b"9c1e4f0a7b2d8e3f6a5c4b3d2e1f0a9b8c7d6e5f4a3b2c1d0e", b"0" * 50)
    again = post(c, plugin, name, body=body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert len(leads(c, SOURCE_OF[plugin])) == 1
    got = counts(c, SOURCE_OF[plugin])
    assert got["events"] == 1 and got["leads"] == 1


def test_http_same_message_id_through_other_bytes_is_one_lead(hub: Any) -> None:
    """email_raw: a relay that re-sends with one more Received line is still the same message."""
    _, c = hub
    raw = payload_path("email_raw", "koi8r_mailru").read_bytes()
    assert post(c, "email_raw", "koi8r_mailru", body=raw).status_code == 200
    relayed = b"Received: from relay2.example.ru by mx.example.ru; Tue, 24 Nov 2026 10:00:00 +0300\r\n" + raw
    assert post(c, "email_raw", "koi8r_mailru", body=relayed).status_code == 200
    assert len(leads(c, "raw")) == 1


def test_http_mailgun_quarantine_is_406_and_postmark_403(hub: Any) -> None:
    _, c = hub
    no_contact = (b"recipient=sales%40mg.example.ru&subject=hi&body-plain=just+text&"
                  b"timestamp=1&token=" + b"t" * 50 + b"&signature=0")
    assert post(c, "mailgun", "auto_reply", body=no_contact).status_code == 406
    r = post(c, "postmark", "docs_example", body=b'{"Subject": "no sender, no body"}')
    assert r.status_code == 403
