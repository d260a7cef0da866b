"""Events that continue a lead, in the core: the events of one call become ONE lead in
any order (held events included), tracking numbers give calls UTM tags, and messages of
one chat within the window extend one lead. A tiny source plugin registered like any
third-party one drives the real ingest path and store."""

from __future__ import annotations

import json
import sys
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub import hookimpl
from hub.connectors import (
    CallInfo,
    CallSourceConfig,
    Connector,
    InboundRequest,
    LeadDraft,
    ParsedEvent,
    Source,
)
from hub.engine.ingest import build_item, ingest_batch
from hub.engine.leads import get_lead
from hub.engine.ledger import ledger
from hub.engine.process import process_received
from hub.models import Messenger
from hub.runtime import Runtime, build_runtime
from tests.conftest import ConfigWriter


class PbxEvents(Source[CallSourceConfig]):
    """Body: {"event", "call", "seq", "from", "to", "answered", "talk", "record", "chat", "text"}."""

    Config = CallSourceConfig

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        e = request.json()
        if "chat" in e:
            return [ParsedEvent(e["event"], LeadDraft(
                channel="messenger", message=e.get("text"),
                phones=[e["phone"]] if e.get("phone") else [],
                messengers=[Messenger(kind="telegram", id=str(e["chat"]))],
                conversation_key=str(e["chat"]),
            ))]
        info = CallInfo(
            call_id=e["call"], seq=e.get("seq"), from_number=e.get("from"), to_number=e.get("to"),
            answered=e.get("answered"), duration_s=e.get("talk"), recording_url=e.get("record"),
            started_at=datetime.fromtimestamp(e["start"], UTC) if "start" in e else None,
        )
        return [ParsedEvent(e["event"], LeadDraft(channel="call", call=info,
                                                  phones=[e["from"]] if e.get("from") else []))]


plugin = types.ModuleType("leadhub_test_calls")


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(PbxEvents)


plugin.leadhub_register_connectors = leadhub_register_connectors  # type: ignore[attr-defined]
sys.modules[plugin.__name__] = plugin


@pytest.fixture
def rt(write_config: ConfigWriter, tmp_path: Path, database_url: str, redis_url: str,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    runtime = build_runtime(write_config("""
        [hub]
        dedup_window_minutes = 30
        [sources.pbx]
        plugin = "testcalls"
        [sources.pbx.tracking_numbers."+7 (495) 777-88-99"]
        source = "yandex"
        medium = "cpc"
        campaign = "spring"
    """), extra_plugins=[("testcalls", plugin)])
    yield runtime
    runtime.close()


def send(rt: Runtime, event: dict[str, Any], at: float | None = None) -> list[str]:
    req = InboundRequest("POST", "pbx", "", (), {"content-type": "application/json"},
                         json.dumps(event).encode())
    src = rt.source("pbx")
    assert src is not None
    item = build_item(req, src.parse(req), None, default_region="RU", dedup_window_s=1800,
                      received_at=at or time.time(),
                      tracking_numbers=src.config.tracking_numbers)  # type: ignore[attr-defined]
    return ingest_batch(rt.db, [item])[0].lead_ids


def test_call_events_in_any_order_make_one_lead(rt: Runtime) -> None:
    # the summary and the recording arrive before the call's first event
    assert send(rt, {"event": "e3", "call": "c1", "seq": 3, "answered": True, "talk": 95}) == []
    assert send(rt, {"event": "e4", "call": "c1", "seq": 4, "record": "https://rec/1.mp3"}) == []
    [lead_id] = send(rt, {"event": "e1", "call": "c1", "seq": 1, "from": "8 916 123-45-67",
                          "to": "+74957778899", "answered": False, "start": 1700000000})
    assert send(rt, {"event": "e2", "call": "c1", "seq": 2, "from": "+79161234567",
                     "answered": True}) == [lead_id]
    assert send(rt, {"event": "e2", "call": "c1", "seq": 2, "from": "+79161234567"}) == [lead_id]
    lead = get_lead(rt, lead_id)
    assert lead is not None and lead.call is not None
    assert lead.contact.phones == ["+79161234567"]
    assert lead.call.from_ == "+79161234567" and lead.call.to == "+74957778899"
    assert lead.call.answered and lead.call.duration_s == 95
    assert lead.call.recording_url == "https://rec/1.mp3"
    assert lead.call.tracking_number == "+74957778899"
    assert (lead.utm.source, lead.utm.medium, lead.utm.campaign) == ("yandex", "cpc", "spring")
    doc = ledger(rt.db)
    assert doc["totals"]["leads"] == 1 and doc["totals"]["events"] == 4 and doc["balanced"]


def test_recording_minutes_after_delivery_updates_the_lead(rt: Runtime) -> None:
    [lead_id] = send(rt, {"event": "a1", "call": "c2", "from": "+79161234567", "answered": False})
    process_received(rt)
    assert send(rt, {"event": "a2", "call": "c2", "record": "https://rec/2.mp3", "talk": 30},
                at=time.time() + 300) == [lead_id]
    lead = get_lead(rt, lead_id)
    assert lead is not None and lead.call is not None
    assert lead.call.recording_url == "https://rec/2.mp3" and lead.call.answered
    assert lead.status == "unrouted"  # processing was not undone by the update


def test_missed_call_is_a_lead_marked_unanswered(rt: Runtime) -> None:
    [lead_id] = send(rt, {"event": "m1", "call": "c3", "from": "+79161230000", "answered": False,
                          "talk": 0})
    lead = get_lead(rt, lead_id)
    assert lead is not None and lead.call is not None
    assert lead.call.answered is False and lead.call.duration_s == 0


def test_chat_messages_extend_one_lead_within_the_window(rt: Runtime) -> None:
    now = time.time()
    [lead_id] = send(rt, {"event": "t1", "chat": 42, "text": "Здравствуйте"}, at=now)
    assert send(rt, {"event": "t2", "chat": 42, "text": "Сколько стоит курс?"}, at=now + 60) == [lead_id]
    assert send(rt, {"event": "t3", "chat": 42, "phone": "+79161234567"}, at=now + 120) == [lead_id]
    lead = get_lead(rt, lead_id)
    assert lead is not None
    assert lead.message == "Здравствуйте\nСколько стоит курс?"
    assert lead.contact.phones == ["+79161234567"]
    # a message after the window starts a new conversation
    [later] = send(rt, {"event": "t4", "chat": 42, "text": "Ещё вопрос"}, at=now + 120 + 31 * 60)
    assert later != lead_id
    assert ledger(rt.db)["balanced"]
