"""Payload files: a provider's request bodies byte for byte, each with a JSON sidecar.

A payload ``NAME.EXT`` sits beside ``NAME.meta.json``::

    {"source": "where the bytes come from (a capture, or the documentation followed)",
     "method": "POST", "content_type": "...", "path": "events/call",
     "headers": {"x-signature": "..."}, "query": {"token": "..."},
     "expect": {"events": [...], "answer": {...}}}

``source`` is mandatory; ``method`` defaults to POST; ``expect`` is what the source kit
checks (``hub.testing.kits.expect``). Sources are tested with these files and no mocks:
``Payload.request()`` is the ``InboundRequest`` the hub would build from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.connectors import InboundRequest

SIDECAR = ".meta.json"


@dataclass(frozen=True)
class Payload:
    """One payload file and its sidecar."""

    name: str
    body_path: Path
    meta_path: Path
    meta: dict[str, Any]

    @property
    def body(self) -> bytes:
        return self.body_path.read_bytes()

    @property
    def method(self) -> str:
        return str(self.meta.get("method", "POST"))

    @property
    def subpath(self) -> str:
        """What follows ``/hooks/{source}/`` (Mango's ``events/call``), "" for nothing."""
        return str(self.meta.get("path", "") or "")

    @property
    def expect(self) -> dict[str, Any] | None:
        found = self.meta.get("expect")
        return found if isinstance(found, dict) else None

    def request(self, source: str = "kit", *, base_url: str = "https://hub.example") -> InboundRequest:
        """The request as the hub would receive it at ``base_url``/hooks/``source``."""
        headers = {k.lower(): str(v) for k, v in (self.meta.get("headers") or {}).items()}
        if self.meta.get("content_type"):
            headers["content-type"] = str(self.meta["content_type"])
        query = tuple((str(k), str(v)) for k, v in (self.meta.get("query") or {}).items())
        path = f"/hooks/{source}" + (f"/{self.subpath}" if self.subpath else "")
        return InboundRequest(method=self.method, source=source, path=self.subpath, query=query,
                              headers=headers, body=self.body, url=base_url + path)

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Rewrite the sidecar (the kits' record mode)."""
        self.meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", "utf-8")


def load_payload(directory: Path, name: str) -> Payload:
    meta_path = directory / f"{name}{SIDECAR}"
    meta = json.loads(meta_path.read_text("utf-8"))
    if not isinstance(meta, dict) or not meta.get("source"):
        raise ValueError(f"{meta_path} must say where the payload comes from (\"source\")")
    bodies = [p for p in directory.glob(f"{name}.*") if not p.name.endswith(SIDECAR)]
    if len(bodies) != 1:
        raise ValueError(f"expected one payload named {name!r} in {directory}, found {bodies}")
    return Payload(name, bodies[0], meta_path, meta)


def load_payloads(directory: Path) -> list[Payload]:
    """Every payload of ``directory``, by name."""
    names = sorted(p.name.removesuffix(SIDECAR) for p in directory.glob(f"*{SIDECAR}"))
    return [load_payload(directory, name) for name in names]
