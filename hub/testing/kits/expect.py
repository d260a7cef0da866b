"""What a payload file's ``expect`` says, and how the kits compare and record it.

``expect`` in a payload's sidecar (``hub.testing.payloads``)::

    "expect": {
      "events": [{"event_id": "evt-1", "lead": {"channel": "form",
                  "contact": {"name": "Иван", "phones": ["+79161234567"], ...}}},
                 {"event_id": null, "lead": null}],
      "parse_error": false,
      "answer": {"status": 200, "body": {"id": "<id>", "status": "accepted"}}
    }

``events`` is what ``Source.parse`` returns, one entry per event, the lead shown as the
hub normalizes it (its channel and contact); ``parse_error: true`` says the body is
garbage by design (``ParseError``). ``answer`` is the hub's HTTP answer to the signed
request: the status, and the body (JSON or text). Expected dicts match a subset of the
actual keys; ``"<id>"`` matches any id the hub made (a ULID). Run the kits with
``LEADHUB_KIT_RECORD=1`` to write what the connector does now into the sidecars, then
review the diff: a recorded expectation is only as right as the reader who checked it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import UTC, datetime
from typing import Any

from hub.connectors import ParsedEvent
from hub.normalize import normalize_lead

ANY_ID = "<id>"
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
RECORD_ENV = "LEADHUB_KIT_RECORD"
#: The parts of a normalized lead an expectation shows: what the source read from the body.
LEAD_KEYS = ("channel", "contact")


def recording() -> bool:
    return os.environ.get(RECORD_ENV, "") not in ("", "0")


def mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Where ``actual`` differs from ``expected`` (dicts compare the expected keys only)."""
    if expected == ANY_ID:
        ok = actual == ANY_ID or (isinstance(actual, str) and bool(_ULID.match(actual)))
        return [] if ok else [f"{where}: expected a hub id, got {actual!r}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                out.append(f"{where}.{key}: missing")
            else:
                out += mismatches(value, actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {len(expected)} item(s), got {actual!r}"]
        return [m for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for m in mismatches(e, a, f"{where}[{i}]")]
    return [] if expected == actual else [f"{where}: expected {expected!r}, got {actual!r}"]


def event_summary(event: ParsedEvent, source: str = "kit", region: str = "RU") -> dict[str, Any]:
    """An event as an expectation shows it: its id, and the lead the hub would normalize."""
    if event.lead is None:
        return {"event_id": event.event_id, "lead": None}
    lead = normalize_lead(event.lead, lead_id="01KIT000000000000000000000", source=source,
                          received_at=datetime(2026, 1, 1, tzinfo=UTC), default_region=region)
    shown = lead.to_json_dict()
    return {"event_id": event.event_id, "lead": {k: shown[k] for k in LEAD_KEYS if k in shown}}


def _ids_hidden(value: Any) -> Any:
    if isinstance(value, str) and _ULID.match(value):
        return ANY_ID
    if isinstance(value, dict):
        return {k: _ids_hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ids_hidden(v) for v in value]
    return value


def answer_summary(status: int, content_type: str, body: bytes) -> dict[str, Any]:
    """The hub's answer as an expectation shows it (ids the hub made become ``"<id>"``)."""
    shown: Any = body.decode("utf-8", "replace")
    if "json" in content_type and body:
        with contextlib.suppress(ValueError):  # a body that only says it is JSON
            shown = json.loads(body)
    return {"status": status, "body": _ids_hidden(shown)}
