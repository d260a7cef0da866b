"""A hub over real HTTP for the call-source tests: payload files sent as their provider
sends them (method, content type, headers, query, appended path), leads read back through
the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import running_app
from tests.conftest import ConfigWriter
from tests.payload_loader import load_meta, payload_path

ADMIN = {"Authorization": "Bearer adm"}
HEAD = """
[hub]
admin_token = "adm"
default_destinations = ["jsonl"]

[destinations.jsonl]
plugin = "file"
"""


class CallHub:
    """The running app and a client; ``send`` posts a payload file as its provider would."""

    def __init__(self, rt: Runtime, client: httpx.Client) -> None:
        self.rt = rt
        self.client = client

    def send(
        self,
        source: str,
        plugin: str,
        name: str,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        path: str | None = None,
        method: str | None = None,
    ) -> httpx.Response:
        meta = load_meta(plugin, name)
        raw = payload_path(plugin, name).read_bytes() if body is None else body
        all_headers = {k.lower(): v for k, v in meta.get("headers", {}).items()}
        if meta.get("content_type"):
            all_headers["content-type"] = meta["content_type"]
        all_headers.update({k.lower(): v for k, v in (headers or {}).items()})
        sub = meta.get("path", "") if path is None else path
        url = f"/hooks/{source}" + (f"/{sub}" if sub else "")
        params = meta.get("query", {}) if query is None else query
        return self.client.request(method or meta.get("method", "POST"), url, params=params,
                                   content=raw or None, headers=all_headers)

    def lead(self, lead_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/leads/{lead_id}", headers=ADMIN)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def leads(self, source: str) -> list[dict[str, Any]]:
        r = self.client.get("/api/leads", params={"source": source, "limit": 100}, headers=ADMIN)
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    def only_lead(self, source: str) -> dict[str, Any]:
        items = self.leads(source)
        assert len(items) == 1, [i["id"] for i in items]
        return self.lead(items[0]["id"])

    def quarantined(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.client.get("/api/quarantine", headers=ADMIN).json()["items"]
        return items

    def count(self, table: Any) -> int:
        with self.rt.db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def lead_rows(self) -> int:
        return self.count(t.leads)


@contextmanager
def call_hub(config: str, write_config: ConfigWriter, tmp_path: Path,
             redis_url: str) -> Iterator[CallHub]:
    with running_app(write_config(HEAD + config), data_dir=tmp_path / "data",
                     redis_url=redis_url) as (rt, c):
        yield CallHub(rt, c)


def pause() -> None:
    """Let a moment pass between events, as a provider's do (the recording comes later)."""
    time.sleep(0.05)
