"""Build ``InboundRequest`` objects from the payload files (see ``tests/payloads/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.connectors import InboundRequest

PAYLOADS = Path(__file__).parent / "payloads"


def payload_path(plugin: str, name: str) -> Path:
    """The payload file ``NAME.*`` (not its sidecar) in ``tests/payloads/PLUGIN/``."""
    found = [p for p in (PAYLOADS / plugin).glob(f"{name}.*") if not p.name.endswith(".meta.json")]
    assert len(found) == 1, f"expected one payload named {name!r}, found {found}"
    return found[0]


def load_meta(plugin: str, name: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((PAYLOADS / plugin / f"{name}.meta.json").read_text("utf-8"))
    assert meta.get("source"), f"{plugin}/{name}.meta.json must say where the payload comes from"
    return meta


def load_request(
    plugin: str,
    name: str,
    *,
    source: str = "site_form",
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> InboundRequest:
    """The payload as the hub would receive it; ``query``/``headers`` replace the sidecar's."""
    meta = load_meta(plugin, name)
    raw = payload_path(plugin, name).read_bytes() if body is None else body
    all_headers = {"content-type": meta["content_type"], **meta.get("headers", {})}
    all_headers.update(headers or {})
    params = meta.get("query", {}) if query is None else query
    return InboundRequest(
        method=meta.get("method", "POST"),
        source=source,
        path="",
        query=tuple(params.items()),
        headers={k.lower(): v for k, v in all_headers.items()},
        body=raw,
        url=f"https://hub.example/hooks/{source}",
    )


def payload_names(plugin: str) -> list[str]:
    metas = (PAYLOADS / plugin).glob("*.meta.json")
    return sorted(p.name.removesuffix(".meta.json") for p in metas)
