"""Secrets a provider sends in the body (Mango's ``vpbx_api_key``, VK's ``secret``, a UIS
``token`` field) never reach the store or ``/api/quarantine``, and leads still form."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from sqlalchemy import select

from hub.connectors import InboundRequest
from hub.redaction import REDACTED, redact_body
from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import running_app
from tests.payload_loader import payload_path

ADMIN = {"Authorization": "Bearer adm"}
MANGO_KEY, MANGO_SALT = "mango-vpbx-key-7f3a9c", "mango-salt-2b8e41"
VK_SECRET, UIS_TOKEN = "vk-community-secret-5d1c", "uis-body-token-9e07aa"
SECRETS = (MANGO_KEY, VK_SECRET, UIS_TOKEN)
CONFIG = f"""
[hub]
admin_token = "adm"
default_destinations = ["jsonl"]

[destinations.jsonl]
plugin = "file"

[sources.calls]
plugin = "mango"
api_key = "{MANGO_KEY}"
api_salt = "{MANGO_SALT}"

[sources.vk_group]
plugin = "vk"
confirmation_code = "c0de"
secret = "{VK_SECRET}"

[sources.uis]
plugin = "uis"
token = "{UIS_TOKEN}"
"""


def request(body: bytes, content_type: str) -> InboundRequest:
    return InboundRequest("POST", "s", "", (), {"content-type": content_type}, body)


# ---------------------------------------------------------------- the rewrite itself


def test_json_member_is_replaced_and_every_other_byte_kept() -> None:
    body = '{ "type":"message_new",\n  "secret" : "s3cr3t", "object": {"secret": "inner", "text": "Привет"} }'
    out = redact_body(request(body.encode(), "application/json"), ("secret",)).decode()
    assert out == body.replace('"s3cr3t"', json.dumps(REDACTED))  # nested members are data
    assert json.loads(out)["object"]["text"] == "Привет"


def test_json_member_with_an_escaped_or_non_string_value() -> None:
    body = b'{"token": "a\\"b\\u0041", "n": 1}'
    assert json.loads(redact_body(request(body, "application/json"), ("token",))) == {
        "token": REDACTED, "n": 1}
    body = b'{"token": {"deep": [1, 2]}, "n": 1}'
    assert json.loads(redact_body(request(body, "text/plain"), ("token",)))["token"] == REDACTED


def test_urlencoded_field_is_replaced_in_any_charset() -> None:
    body = b"name=%C8%E2%E0%ED&vpbx_api_key=k%2Bey&sign=abc&json=%7B%7D"
    out = redact_body(request(body, "application/x-www-form-urlencoded"), ("vpbx_api_key",))
    assert out == b"name=%C8%E2%E0%ED&vpbx_api_key=[redacted]&sign=abc&json=%7B%7D"
    assert dict(parse_qsl(out.decode()))["vpbx_api_key"] == REDACTED


def test_multipart_part_is_replaced() -> None:
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="token"\r\n\r\nsecret-value\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="phone"\r\n\r\n+79161112238\r\n--XyZ--\r\n')
    req = request(body, 'multipart/form-data; boundary="XyZ"')
    out = redact_body(req, ("token",))
    assert b"secret-value" not in out and b"+79161112238" in out
    assert dict(InboundRequest("POST", "s", "", (), req.headers, out).form_items()) == {
        "token": REDACTED, "phone": "+79161112238"}


def test_bodies_without_the_field_or_any_shape_are_kept() -> None:
    for body, ctype in ((b'{"a": 1}', "application/json"), (b"a=1&b=2", ""), (b"plain text", ""),
                        (b"[1, 2]", "application/json"), (b"{broken", "application/json")):
        assert redact_body(request(body, ctype), ("token",)) == body


# ---------------------------------------------------------------- over HTTP, in the store


@pytest.fixture
def hub(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    path = tmp_path / "plugins.toml"
    path.write_text(CONFIG, encoding="utf-8")
    with running_app(path, data_dir=tmp_path / "data", redis_url=redis_url,
                     database_url=database_url) as running:
        yield running


def mango_form(event: dict[str, object]) -> bytes:
    js = json.dumps(event, separators=(",", ":"))
    sign = hashlib.sha256((MANGO_KEY + js + MANGO_SALT).encode()).hexdigest()
    return urlencode({"vpbx_api_key": MANGO_KEY, "sign": sign, "json": js}).encode()


def vk_event(payload: str, **changes: object) -> bytes:
    body = json.loads(payload_path("vk", payload).read_text("utf-8"))
    body.update(changes, secret=VK_SECRET)
    return json.dumps(body, ensure_ascii=False).encode()


def test_body_secrets_are_absent_from_the_store_and_the_quarantine(
        hub: tuple[Runtime, httpx.Client]) -> None:
    rt, client = hub
    form = {"content-type": "application/x-www-form-urlencoded"}
    as_json = {"content-type": "application/json"}
    call = {"entry_id": "RW50cnkx", "call_id": "leg1", "timestamp": 1764061200, "seq": 1,
            "call_state": "Appeared", "location": "ivr", "from": {"number": "79161112238"},
            "to": {"number": "74951234567"}}
    sent = [
        # a lead from each source, the secret in its body
        client.post("/hooks/calls/events/call", content=mango_form(call), headers=form),
        client.post("/hooks/vk_group", content=vk_event("message_new"), headers=as_json),
        client.post("/hooks/uis", headers=as_json, content=json.dumps({
            "token": UIS_TOKEN, "notification_mnemonic": "incoming_call", "call_session_id": "77",
            "contact_phone_number": "79162223344", "virtual_phone_number": "74951234567"}).encode()),
        # and one authentic request of each that goes to quarantine
        client.post("/hooks/calls/events/unheard-of", content=mango_form(call), headers=form),
        client.post("/hooks/vk_group", content=vk_event("lead_forms_new", object={"form_id": 1}),
                    headers=as_json),
        client.post("/hooks/uis", headers=as_json, content=json.dumps({
            "token": UIS_TOKEN, "communication_type": "offline_message",
            "contact_phone_number": "123", "message": "hello"}).encode()),
    ]
    assert [r.status_code for r in sent] == [200, 200, 200, 200, 200, 422], [r.text for r in sent]

    leads = client.get("/api/leads", headers=ADMIN).json()["items"]
    assert sorted(lead["source"] for lead in leads) == ["calls", "uis", "vk_group"]

    with rt.reader.connect() as conn:
        rows = list(conn.execute(select(t.inbound_events)))
    assert len(rows) == 6
    for row in rows:
        stored = row.body + row.query.encode() + json.dumps(row.headers).encode()
        assert not [s for s in SECRETS if s.encode() in stored], row.source
        assert REDACTED.encode() in row.body

    shown = client.get("/api/quarantine", params={"state": "all"}, headers=ADMIN)
    assert sorted(item["source"] for item in shown.json()["items"]) == ["calls", "uis", "vk_group"]
    assert not [s for s in SECRETS if s in shown.text]


def test_reprocessing_reads_the_redacted_body_as_the_original(
        hub: tuple[Runtime, httpx.Client]) -> None:
    """Reprocessing parses the stored body (it never verifies): each source reads the
    redacted request as it read the one received."""
    rt, _ = hub
    originals = {
        "calls": ("events/call", mango_form({"entry_id": "e", "call_id": "l", "seq": 1,
                                             "call_state": "Appeared",
                                             "from": {"number": "79161112238"}}),
                  "application/x-www-form-urlencoded"),
        "vk_group": ("", vk_event("message_new"), "application/json"),
        "uis": ("", json.dumps({"token": UIS_TOKEN, "call_session_id": "9", "note": "x",
                                "contact_phone_number": "79161112238"}).encode(), "application/json"),
    }
    for name, (path, body, ctype) in originals.items():
        src = rt.source(name)
        assert src is not None and src.secret_fields
        received = InboundRequest("POST", name, path, (), {"content-type": ctype}, body)
        stored = InboundRequest("POST", name, path, (), {"content-type": ctype},
                                redact_body(received, src.secret_fields))
        assert stored.body != body
        assert src.parse(stored) == src.parse(received), name
