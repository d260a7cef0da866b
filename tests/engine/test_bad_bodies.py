"""Bad request bodies (issue 8, findings 2 and 3): lone surrogates, deep nesting, numbers
out of range, invalid UTF-8 and plugin bugs never answer 5xx, never lose an authentic
request, and a lead already stored with a lone surrogate is still listed and delivered."""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from hub import hookimpl
from hub.connectors import (
    Accepted,
    CallInfo,
    Connector,
    HookResponse,
    InboundRequest,
    LeadDraft,
    ParsedEvent,
    Source,
    SourceConfig,
)
from hub.engine.drain import drain
from hub.engine.ingest import build_item, ingest_batch
from hub.engine.leads import load_leads
from hub.engine.process import process_received
from hub.errors import ParseError
from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import running_app
from tests.conftest import ConfigWriter, RuntimeFactory
from tests.plugins.test_webhook_destination import Receiver

ADMIN = {"Authorization": "Bearer adm"}
#: The issue's body, as bytes on the wire: JSON escapes of two lone surrogates.
SURROGATE_FORM = rb'{"name":"\udc80\ud800","phone":"89161112238"}'
DEEP = b"[" * 50_000 + b"]" * 50_000


def request(body: bytes, content_type: str = "application/json") -> InboundRequest:
    return InboundRequest("POST", "s", "", (), {"content-type": content_type}, body)


def count(rt: Runtime, table: Any) -> int:
    with rt.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


# ---------------------------------------------------------------- the one decoder


def test_json_lone_surrogates_become_replacement_characters_and_pairs_stay() -> None:
    data = request(SURROGATE_FORM).json()
    assert data == {"name": "\ufffd\ufffd", "phone": "89161112238"}
    data["name"].encode("utf-8")
    keys = request(rb'{"\udfff": "x", "emoji": "\ud83d\ude00", "list": ["\ud800"]}').json()
    assert keys == {"\ufffd": "x", "emoji": "\U0001f600", "list": ["\ufffd"]}


@pytest.mark.parametrize("body", [
    DEEP,
    b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    b"[" * 65 + b"]" * 65,
], ids=["arrays-50000", "objects-20000", "arrays-65"])
def test_json_nesting_is_bounded(body: bytes) -> None:
    with pytest.raises(ParseError, match="nested more than 64"):
        request(body).json()
    # the bound itself is fine, and brackets inside strings are text
    assert request(b"[" * 64 + b"]" * 64).json() is not None
    text = "[" * 500 + '{"' + "}" * 300
    assert request(json.dumps({"message": text}).encode()).json() == {"message": text}


@pytest.mark.parametrize("body", [
    b'{"n": 1e999}', b'{"n": -1e400}', b'{"n": NaN}', b'[Infinity]',
], ids=["1e999", "-1e400", "NaN", "Infinity"])
def test_json_numbers_out_of_range_are_unparseable(body: bytes) -> None:
    with pytest.raises(ParseError):
        request(body).json()


@pytest.mark.parametrize("body", [
    b'{"name": "\xed\xa0\x80"}',  # a surrogate as raw (CESU) bytes
    b'{"name": "\xff\xfe\xfd"}',
], ids=["raw-surrogate", "bad-utf8"])
def test_json_invalid_utf8_is_unparseable(body: bytes) -> None:
    with pytest.raises(ParseError, match="not utf-8"):
        request(body).json()


@pytest.mark.parametrize(("body", "content_type", "name"), [
    (b"name=%C8%E2%E0%ED&phone=%2B7+916", "application/x-www-form-urlencoded", "Иван"),  # cp1251 page
    (b"name=%D0%98%D0%B2%D0%B0%D0%BD", "application/x-www-form-urlencoded", "Иван"),  # UTF-8 page
    ("name=Иван".encode("cp1251"), "application/x-www-form-urlencoded", "Иван"),  # raw bytes
    (b"name=%E9%D7%C1%CE", "application/x-www-form-urlencoded; charset=koi8-r", "Иван"),
    (b"name=%C8%E2%E0%ED", "application/x-www-form-urlencoded; charset=nonsense", "Иван"),
])
def test_a_form_is_read_in_its_pages_charset(body: bytes, content_type: str, name: str) -> None:
    """Browsers percent-encode a form in the page's charset and never name it: a value
    that is not UTF-8 is read as the declared charset, else windows-1251."""
    assert dict(request(body, content_type).form_items())["name"] == name


def test_multipart_nested_thousands_deep_is_unparseable() -> None:
    inner = b""
    for i in range(3000, 0, -1):
        inner = (b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
                 + inner + b"\r\n--b%d--\r\n" % i)
    body = (b'--b0\r\nContent-Disposition: form-data; name="x"\r\n'
            b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n" + inner + b"\r\n--b0--\r\n")
    with pytest.raises(ParseError, match="nested too deep"):
        request(body, "multipart/form-data; boundary=b0").form_items()


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str,
        database_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    config = write_config("""
        [hub]
        admin_token = "adm"
        [sources.site_form]
        plugin = "webform"
        [sources.vk]
        plugin = "vk"
        confirmation_code = "c0de"
        secret = "vk-secret"
        [sources.vk_open]
        plugin = "vk"
        confirmation_code = "c0de"
        [sources.uis]
        plugin = "uis"
        token = "uis-token"
    """)
    with running_app(config, data_dir=tmp_path / "data", redis_url=redis_url,
                     database_url=database_url) as app:
        yield app


def test_json_form_with_lone_surrogates_makes_a_lead_the_admin_lists(
    hub: tuple[Runtime, httpx.Client],
) -> None:
    _, client = hub
    r = client.post("/hooks/site_form", content=SURROGATE_FORM,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    lead_id = r.json()["id"]
    page = client.get("/api/leads", headers=ADMIN)
    assert page.status_code == 200
    [lead] = page.json()["items"]
    assert lead["id"] == lead_id
    assert lead["contact"]["name"] == "\ufffd\ufffd"
    assert lead["contact"]["phones"] == ["+79161112238"]


@pytest.mark.parametrize("body", [
    DEEP,
    b'{"type": "message_new", "secret": "vk-secret", "object": ' + DEEP + b"}",
], ids=["deep", "deep-with-secret"])
def test_deep_json_to_vk_is_not_authentic_and_not_stored(
    hub: tuple[Runtime, httpx.Client], body: bytes,
) -> None:
    """VK's secret is inside the body: a body that cannot be read cannot be authenticated."""
    rt, client = hub
    r = client.post("/hooks/vk", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_signature"
    assert count(rt, t.inbound_events) == 0


def test_deep_json_to_an_open_vk_source_goes_to_quarantine(
    hub: tuple[Runtime, httpx.Client],
) -> None:
    _, client = hub
    r = client.post("/hooks/vk_open", content=DEEP, headers={"content-type": "application/json"})
    assert (r.status_code, r.text) == (200, "ok")  # VK retries anything else
    [item] = client.get("/api/quarantine", headers=ADMIN).json()["items"]
    assert "nested more than 64" in item["reason"]


def test_deep_json_to_uis(hub: tuple[Runtime, httpx.Client]) -> None:
    """With the token in the URL the request is authentic: quarantined (422). Without it,
    the token could only be in the unreadable body: 401, nothing stored."""
    rt, client = hub
    ctype = {"content-type": "application/json"}
    r = client.post("/hooks/uis?token=uis-token", content=DEEP, headers=ctype)
    assert r.status_code == 422, r.text
    assert "nested more than 64" in r.json()["error"]["message"]
    assert count(rt, t.quarantine) == 1
    body = b'{"token": "uis-token", "x": ' + DEEP + b"}"
    r = client.post("/hooks/uis", content=body, headers=ctype)
    assert r.status_code == 401, r.text
    assert count(rt, t.inbound_events) == 1


@pytest.mark.parametrize(("body", "why"), [
    (b'{"name": "A", "phone": "89161112238", "n": 1e999}', "out of range"),
    (b'{"name": "\xed\xa0\x80", "phone": "89161112238"}', "not utf-8"),
], ids=["1e999", "raw-surrogate"])
def test_unparseable_json_form_is_quarantined(
    hub: tuple[Runtime, httpx.Client], body: bytes, why: str,
) -> None:
    rt, client = hub
    r = client.post("/hooks/site_form", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert why in r.json()["error"]["message"]
    assert count(rt, t.quarantine) == 1 and count(rt, t.leads) == 0


# ---------------------------------------------------------------- plugin bugs


class Buggy(Source[SourceConfig]):
    """Fails where the ``x-bug`` header says: in handshake, verify, parse or respond, or
    hands the core a draft it cannot normalize."""

    methods = ("POST", "GET")

    def handshake(self, request: InboundRequest) -> HookResponse | None:
        if request.headers.get("x-bug") == "handshake":
            raise ZeroDivisionError
        return None

    def verify(self, request: InboundRequest) -> None:
        if request.headers.get("x-bug") == "verify":
            raise KeyError("secret")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        bug = request.headers.get("x-bug")
        if bug == "parse":
            raise RecursionError("maximum recursion depth exceeded")
        phones: list[Any] = [{"not": "a phone"}] if bug == "draft" else ["89161112238"]
        return [ParsedEvent(None, LeadDraft(channel="form", phones=phones))]

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        if request.headers.get("x-bug") == "respond":
            raise ValueError("no answer")
        return super().respond(request, accepted)


plugin = types.ModuleType("leadhub_test_buggy")


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(Buggy)


plugin.leadhub_register_connectors = leadhub_register_connectors  # type: ignore[attr-defined]
sys.modules[plugin.__name__] = plugin


@pytest.mark.parametrize(("bug", "status", "stored"), [
    ("handshake", 401, 0), ("verify", 401, 0),
    ("draft", 422, 1), ("respond", 200, 1),
])
def test_a_plugin_bug_is_never_a_500(write_config: ConfigWriter, tmp_path: Path, redis_url: str,
                                     bug: str, status: int, stored: int) -> None:
    config = write_config("""
        [hub]
        admin_token = "adm"
        [sources.b]
        plugin = "buggy"
    """)
    with running_app(config, data_dir=tmp_path / "data", redis_url=redis_url,
                     extra_plugins=[("buggy", plugin)]) as (rt, client):
        r = client.post("/hooks/b", content=b"phone=89161112238", headers={"x-bug": bug})
        assert r.status_code == status, r.text
        assert count(rt, t.inbound_events) == stored
        if bug == "respond":  # stored as a lead, answered as the contract's default
            assert r.json()["status"] == "accepted" and count(rt, t.leads) == 1


# ---------------------------------------------------------------- leads stored before the fix


def test_a_stored_lead_with_lone_surrogates_is_listed_and_delivered(
    write_config: ConfigWriter, tmp_path: Path, redis_url: str,
) -> None:
    """A store written before the fix may hold such a lead (SQLite kept it as a JSON
    ``\\udc80`` escape; PostgreSQL refused the insert). The admin API, the JSONL file and
    the webhook destination must all cope with it."""
    with Receiver() as receiver:
        config = write_config(f"""
            [hub]
            admin_token = "adm"
            default_destinations = ["jsonl", "hook"]
            [sources.site_form]
            plugin = "webform"
            [destinations.jsonl]
            plugin = "file"
            [destinations.hook]
            plugin = "webhook"
            url = "{receiver.url}"
        """)
        with running_app(config, data_dir=tmp_path / "data", redis_url=redis_url) as (rt, client):
            r = client.post("/hooks/site_form", data={"name": "A", "phone": "89161112238",
                                                      "message": "hi"})
            lead_id = r.json()["id"]
            with rt.db.begin() as conn:  # what the old decoder let through
                data = conn.execute(select(t.leads.c.data).where(t.leads.c.id == lead_id)).scalar_one()
                data["contact"]["name"] = "\udc80\ud800"
                data["fields"]["\udfff"] = ["\ud800"]
                conn.execute(update(t.leads).where(t.leads.c.id == lead_id).values(data=data))

            page = client.get("/api/leads", headers=ADMIN)
            assert page.status_code == 200
            assert page.json()["items"][0]["contact"]["name"] == "\ufffd\ufffd"
            assert client.get(f"/api/leads/{lead_id}", headers=ADMIN).status_code == 200

            while process_received(rt).leads:
                pass
            drain(rt, "jsonl")
            drain(rt, "hook")
            with rt.db.connect() as conn:
                statuses = dict(conn.execute(
                    select(t.deliveries.c.destination, t.deliveries.c.status)).all())
            assert statuses == {"jsonl": "delivered", "hook": "delivered"}
            [line] = (tmp_path / "data" / "leads.jsonl").read_text(encoding="utf-8").splitlines()
            written = json.loads(line)
            assert written["contact"]["name"] == "\ufffd\ufffd"
            assert written["fields"]["\ufffd"] == ["\ufffd"]
            [(_, sent, _)] = receiver.received
            assert sent["id"] == lead_id and sent["contact"]["name"] == "\ufffd\ufffd"


def test_an_event_id_longer_than_the_key_column_is_one_event(
    hub: tuple[Runtime, httpx.Client],
) -> None:
    """Found by the fuzz run: PostgreSQL refused a 500-character provider event id (the
    key column holds 200), so the request was answered 503 and VK retried it forever."""
    rt, client = hub
    event = {"type": "message_new", "event_id": "e" * 500, "group_id": 1,
             "object": {"message": {"from_id": 7, "peer_id": 7, "text": "89161112238"}}}
    for _ in range(2):  # VK's retry of the same event
        r = client.post("/hooks/vk_open", json=event)
        assert (r.status_code, r.text) == (200, "ok")
    assert count(rt, t.leads) == 1 and count(rt, t.inbound_events) == 2


# ---------------------------------------------------------------- a plugin's own decoding


@pytest.mark.parametrize("kind", ["form", "chat", "call"])
def test_a_plugin_draft_with_lone_surrogates_is_stored_clean(
    make_runtime: RuntimeFactory, kind: str,
) -> None:
    """A third-party plugin may decode bytes its own way. A lead of a call or a chat is
    checked as it is built (its JSON may be kept or merged before the group is stored);
    any other only as ``ingest_many`` encodes it (``Lead.stored_json``): both are stored
    with U+FFFD, on both stores (PostgreSQL refuses a lone surrogate outright)."""
    rt = make_runtime('[sources.s]\nplugin = "webform"\n')
    draft = LeadDraft(channel="form", name="a\ud800b", phones=["89161112238"],
                      message="m\udfff", fields={"\udc80": ["\ud800"]})
    if kind == "chat":
        draft.conversation_key = "chat-1"
    elif kind == "call":
        draft.call = CallInfo(call_id="call-1", from_number="89161112238")
    req = request(b"{}")
    item = build_item(req, [ParsedEvent(event_id="e1", lead=draft)], None, default_region="RU",
                      dedup_window_s=1800, received_at=time.time())
    [result] = ingest_batch(rt.db, [item])
    with rt.reader.connect() as conn:
        [lead] = load_leads(conn, [conn.execute(select(t.leads)).one()])
    assert lead.id == result.lead_ids[0]
    assert (lead.contact.name, lead.message) == ("a\ufffdb", "m\ufffd")
    assert lead.fields["\ufffd"] == ["\ufffd"]
    lead.model_dump_json()  # clean: encodes as UTF-8
