"""Quarantine and reprocessing: a request a plugin could not parse is kept with its reason,
listed by the admin API, and becomes a lead when reprocessed after the plugin is fixed."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import hookimpl
from hub.connectors import Connector, InboundRequest, LeadDraft, ParsedEvent, Source, SourceConfig
from hub.errors import ParseError
from hub.testing.cluster import running_app
from tests.conftest import ConfigWriter

ADMIN = {"Authorization": "Bearer adm"}


class Quirky(Source[SourceConfig]):
    """Reads ``phone=...`` bodies; before its "fix" it rejects a field it did not know."""

    fixed = False

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        items = dict(request.form_items())
        if "tel" in items and not Quirky.fixed:
            raise ParseError("unknown field 'tel'")
        phone = items.get("phone") or items.get("tel")
        return [ParsedEvent(None, LeadDraft(channel="form", phones=[phone] if phone else []))]


plugin = types.ModuleType("leadhub_test_quirky")


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(Quirky)


plugin.leadhub_register_connectors = leadhub_register_connectors  # type: ignore[attr-defined]
sys.modules[plugin.__name__] = plugin


@pytest.fixture
def client(write_config: ConfigWriter, tmp_path: Path, redis_url: str) -> Iterator[httpx.Client]:
    Quirky.fixed = False
    config = write_config("""
        [hub]
        admin_token = "adm"
        [sources.q]
        plugin = "quirky"
    """)
    with running_app(config, data_dir=tmp_path / "data", redis_url=redis_url,
                     extra_plugins=[("quirky", plugin)]) as (_, c):
        yield c


def test_reprocess_after_a_plugin_fix_turns_quarantine_into_a_lead(client: httpx.Client) -> None:
    r = client.post("/hooks/q", data={"tel": "8 916 123-45-67"})
    assert r.status_code == 422 and r.json()["error"]["message"] == "unknown field 'tel'"
    [item] = client.get("/api/quarantine", headers=ADMIN).json()["items"]
    assert item["reason"] == "unknown field 'tel'" and item["state"] == "open"
    assert "tel=8+916" in item["request"]["body"]

    # before the fix, reprocessing keeps it in quarantine with the reason
    again = client.post(f"/api/quarantine/{item['id']}/reprocess", headers=ADMIN).json()
    assert again["state"] == "open" and again["lead_ids"] == []

    Quirky.fixed = True
    done = client.post(f"/api/quarantine/{item['id']}/reprocess", headers=ADMIN).json()
    assert done["state"] == "reprocessed" and len(done["lead_ids"]) == 1
    lead = client.get(f"/api/leads/{done['lead_ids'][0]}", headers=ADMIN).json()
    assert lead["contact"]["phones"] == ["+79161234567"]
    assert client.get("/api/quarantine", headers=ADMIN).json()["items"] == []
    ledger = client.get("/api/ledger", headers=ADMIN).json()
    assert ledger["totals"]["events"] == 1 and ledger["totals"]["leads"] == 1
    assert ledger["totals"]["quarantined"] == 0 and ledger["balanced"]
    # reprocessing twice changes nothing
    twice = client.post(f"/api/quarantine/{item['id']}/reprocess", headers=ADMIN).json()
    assert twice["state"] == "reprocessed" and twice["lead_ids"] == done["lead_ids"]
    assert client.post("/api/quarantine/nope/reprocess", headers=ADMIN).status_code == 404
