"""A real hub on loopback for the messenger source tests: config, payload sending, lookups.

The tests send the payload files (``tests/payloads/<provider>/``) over real HTTP to the
app served by uvicorn, and read back what the hub made of them through the admin API.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hub.runtime import Runtime
from hub.testing.cluster import running_app
from tests.payload_loader import load_meta, payload_path

ADMIN = {"Authorization": "Bearer adm"}
HUB = """
[hub]
admin_token = "adm"
default_destinations = ["jsonl"]

[destinations.jsonl]
plugin = "file"
"""


@contextmanager
def running_hub(config: str, tmp_path: Path,
                redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    """``[sources.*]`` tables in ``config`` plus a file destination, served over HTTP."""
    path = tmp_path / "plugins.toml"
    path.write_text(HUB + config, encoding="utf-8")
    with running_app(path, data_dir=tmp_path / "data", redis_url=redis_url) as hub:
        yield hub


def send(client: httpx.Client, source: str, provider: str, name: str, *,
         body: bytes | None = None, headers: dict[str, str] | None = None,
         query: dict[str, str] | None = None, drop_headers: tuple[str, ...] = ()) -> httpx.Response:
    """Send the payload ``provider/name`` to ``/hooks/{source}`` as its sidecar describes."""
    meta = load_meta(provider, name)
    raw = payload_path(provider, name).read_bytes() if body is None else body
    sent = {"content-type": meta["content_type"], **meta.get("headers", {}), **(headers or {})}
    sent = {k: v for k, v in sent.items() if v and k.lower() not in drop_headers}
    params = meta.get("query", {}) if query is None else query
    return client.request(meta.get("method", "POST"), f"/hooks/{source}", content=raw or None,
                          headers=sent, params=params)


def leads(client: httpx.Client, source: str) -> list[dict[str, Any]]:
    r = client.get("/api/leads", params={"source": source, "limit": 100}, headers=ADMIN)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def quarantined(client: httpx.Client, source: str) -> list[dict[str, Any]]:
    r = client.get("/api/quarantine", headers=ADMIN)
    assert r.status_code == 200, r.text
    return [q for q in r.json()["items"] if q["source"] == source]


def ledger(client: httpx.Client, source: str) -> dict[str, Any]:
    r = client.get("/api/ledger", headers=ADMIN)
    assert r.status_code == 200, r.text
    counts: dict[str, Any] = r.json()["by_source"].get(source, {})
    return counts
