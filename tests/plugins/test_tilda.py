"""The ``tilda`` source: Tilda's documented form posts, parsed and over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import ConnectorContext, InboundRequest
from hub.errors import AuthError, ParseError
from hub.normalize import normalize_lead
from hub.runtime import Runtime
from hub.testing.cluster import running_app
from plugins.tilda import TildaConfig, TildaSource, leadhub_register_connectors
from tests.conftest import ConfigWriter
from tests.payload_loader import load_meta, load_request, payload_names, payload_path

TOKEN = "tilda-secret"
ADMIN = {"Authorization": "Bearer adm"}
CONFIG = f"""
[hub]
admin_token = "adm"
default_destinations = ["jsonl"]

[sources.tilda_site]
plugin = "tilda"
token = "{TOKEN}"

[sources.tilda_open]
plugin = "tilda"

[destinations.jsonl]
plugin = "file"
"""


def source(**settings: object) -> TildaSource:
    config = TildaConfig.model_validate({"plugin": "tilda", **settings})
    return TildaSource(config, ConnectorContext(name="tilda_site", data_dir=Path(".")))


def lead_of(request: InboundRequest) -> tuple[str | None, dict[str, Any]]:
    events = source().parse(request)
    assert len(events) == 1 and events[0].lead is not None
    lead = normalize_lead(events[0].lead, lead_id="01TEST", source="tilda_site",
                          received_at=datetime(2026, 11, 23, tzinfo=UTC), default_region="RU")
    return events[0].event_id, lead.to_json_dict()


def test_payloads_name_their_source_and_plugin_registers() -> None:
    assert {"lead_cookies", "test_ping", "lead_hidden_utm", "lead_retry"} <= set(payload_names("tilda"))
    for name in payload_names("tilda"):
        load_meta("tilda", name)
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [TildaSource]


def test_lead_with_cookies_keeps_utm_and_gclid_from_tildautm_and_gcl_aw() -> None:
    event_id, lead = lead_of(load_request("tilda", "lead_cookies"))
    assert event_id == "6198213:4126533541"
    assert lead["channel"] == "form"
    assert lead["contact"] == {"name": "Ольга Кузнецова", "phones": ["+79165551234"],
                               "emails": ["olga.k@example.ru"], "messengers": []}
    assert lead["message"] == "Хочу записаться на поток в марте"
    assert lead["utm"] == {"source": "google", "medium": "cpc", "campaign": "курсы_весна",
                           "term": "аналитик данных", "content": "ad1"}
    assert lead["click_ids"]["gclid"] == "CjwKCAiA_lead_gclid_XYZ"
    assert lead["fields"]["formid"] == "form412512345"
    assert lead["fields"]["tranid"] == "6198213:4126533541"
    assert lead["fields"]["formname"] == "Запись на курс"


def test_hidden_utm_fields_and_lower_case_names() -> None:
    event_id, lead = lead_of(load_request("tilda", "lead_hidden_utm"))
    assert event_id == "6198213:4126533999"
    assert lead["contact"]["name"] == "Сергей"
    assert lead["contact"]["phones"] == ["+79037778899"]
    assert lead["contact"]["emails"] == []
    assert lead["utm"] == {"source": "yandex", "medium": "cpc", "campaign": "brand",
                           "term": None, "content": "text1"}
    assert lead["click_ids"]["yclid"] == "3581234567890123455"
    assert lead["fields"]["Checkbox"] == "yes"


def test_retry_has_the_same_event_id_with_other_bytes() -> None:
    first = load_request("tilda", "lead_cookies")
    retry = load_request("tilda", "lead_retry")
    assert first.body != retry.body
    assert lead_of(first) == lead_of(retry)


def test_test_ping_is_not_a_lead() -> None:
    events = source().parse(load_request("tilda", "test_ping"))
    assert len(events) == 1 and events[0].lead is None and events[0].reason


@pytest.mark.parametrize("body, ctype", [
    (b"", "application/x-www-form-urlencoded"),
    (b'["Name", "x"]', "application/json"),  # JSON, but no object of fields
    (b"<xml/>", "text/xml"),
])
def test_garbage_is_a_parse_error(body: bytes, ctype: str) -> None:
    request = load_request("tilda", "lead_cookies", body=body, headers={"content-type": ctype})
    with pytest.raises(ParseError):
        source().parse(request)


def test_token_in_query_or_header() -> None:
    locked = source(token=TOKEN)
    locked.verify(load_request("tilda", "lead_cookies"))
    locked.verify(load_request("tilda", "lead_cookies", query={}, headers={"x-leadhub-token": TOKEN}))
    for query in ({}, {"token": "wrong"}, {"token": ""}):
        with pytest.raises(AuthError):
            locked.verify(load_request("tilda", "lead_cookies", query=query))
    source().verify(load_request("tilda", "lead_cookies", query={}))  # no token set: open


# ---------------------------------------------------------------- over real HTTP


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_app(write_config(CONFIG), data_dir=tmp_path / "data", redis_url=redis_url) as hub:
        yield hub


def post(c: httpx.Client, name: str, *, source_name: str = "tilda_site",
         query: dict[str, str] | None = None) -> httpx.Response:
    meta = load_meta("tilda", name)
    return c.post(f"/hooks/{source_name}", params=meta["query"] if query is None else query,
                  content=payload_path("tilda", name).read_bytes(),
                  headers={"content-type": meta["content_type"]})


def leads(c: httpx.Client, source_name: str = "tilda_site") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = c.get("/api/leads", params={"source": source_name},
                                        headers=ADMIN).json()["items"]
    return items


def ledger(c: httpx.Client, source_name: str = "tilda_site") -> dict[str, int]:
    counts: dict[str, int] = c.get("/api/ledger", headers=ADMIN).json()["by_source"].get(source_name, {})
    return counts


def test_http_lead_answers_ok_and_keeps_cookie_utm_end_to_end(hub: Any) -> None:
    _, c = hub
    r = post(c, "lead_cookies")
    assert r.status_code == 200 and r.text == "ok"
    assert r.headers["content-type"].startswith("text/plain")
    [lead] = leads(c)
    assert lead["contact"]["phones"] == ["+79165551234"]
    assert lead["utm"]["source"] == "google" and lead["utm"]["campaign"] == "курсы_весна"
    assert lead["click_ids"]["gclid"] == "CjwKCAiA_lead_gclid_XYZ"
    assert lead["fields"]["formid"] == "form412512345"


def test_http_test_ping_is_200_ok_and_no_lead(hub: Any) -> None:
    _, c = hub
    r = post(c, "test_ping")
    assert r.status_code == 200 and r.text == "ok"
    assert leads(c) == []
    counts = ledger(c)
    assert counts["events"] == 1 and counts["non_lead"] == 1 and counts["leads"] == 0


def test_http_wrong_or_missing_token_is_401_and_stores_no_lead(hub: Any) -> None:
    _, c = hub
    assert post(c, "lead_cookies", query={}).status_code == 401
    assert post(c, "lead_cookies", query={"token": "nope"}).status_code == 401
    assert leads(c) == []
    assert post(c, "lead_cookies", source_name="tilda_open", query={}).status_code == 200


def test_http_retry_with_the_same_tranid_is_one_lead(hub: Any) -> None:
    _, c = hub
    for name in ("lead_cookies", "lead_retry", "lead_retry"):
        r = post(c, name)
        assert r.status_code == 200 and r.text == "ok"
    assert len(leads(c)) == 1
    counts = ledger(c)
    assert counts["events"] == 1 and counts["leads"] == 1
    assert post(c, "lead_hidden_utm").status_code == 200  # another tranid: another lead
    assert len(leads(c)) == 2
