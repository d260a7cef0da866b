"""Secrets a provider puts in the request body, taken out before the raw request is stored.

Some providers authenticate with a secret inside the body itself: Mango's form carries
the VPBX's ``vpbx_api_key``, VK's events carry the community's ``secret`` (enough to
forge VK events), UIS templates may carry ``"token"``. A source declares those field
names (``Source.secret_fields``); the core stores ``[redacted]`` in their place, so
neither the store, a backup, nor ``/api/quarantine`` holds them. ``verify`` and ``parse``
run on the request as received; reprocessing a quarantined request runs ``parse`` on the
stored (redacted) body and never ``verify``.

The rewrite is surgical: only the value of a named top-level field changes, every other
byte stays as received (a cp1251 form stays cp1251, a JSON body keeps its layout), so
what the admin sees is still what the provider sent. Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from urllib.parse import unquote_plus

from hub.connectors import InboundRequest

REDACTED = "[redacted]"
_WS = " \t\n\r"
_NAME = re.compile(rb'(?:^|;)\s*name\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.IGNORECASE)


def redact_body(request: InboundRequest, fields: Collection[str]) -> bytes:
    """``request.body`` with the values of ``fields`` replaced by ``[redacted]``: top-level
    members of a JSON object, fields of a urlencoded or multipart form. A body in no such
    shape is returned as it is (then no field could be read from it either)."""
    body = request.body
    if not fields or not body:
        return body
    if request.content_type == "multipart/form-data":
        return _multipart(body, request.headers.get("content-type", ""), fields)
    if body.lstrip(_WS.encode())[:1] == b"{":
        redacted = _json(body, fields)
        if redacted is not None:
            return redacted
    if b"=" in body:
        return _urlencoded(body, fields)
    return body


def _json(body: bytes, fields: Collection[str]) -> bytes | None:
    """The object with each named member's value replaced; None when the body is no JSON
    object. Values are located by scanning the top level (the rest keeps its bytes); a
    body the scanner cannot read but ``json.loads`` can (UTF-16, say) is re-serialized."""
    try:
        text = body.decode("utf-8")
        spans = _member_spans(text, fields)
    except (ValueError, RecursionError):
        spans = None
    if spans is not None:
        out, at = [], 0
        for start, end in spans:
            out += [text[at:start], json.dumps(REDACTED)]
            at = end
        out.append(text[at:])
        return "".join(out).encode("utf-8", "surrogatepass")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if not any(name in data for name in fields):
        return body
    data.update({name: REDACTED for name in fields if name in data})
    return json.dumps(data).encode("ascii")


def _skip_ws(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WS:
        at += 1
    return at


def _member_spans(text: str, fields: Collection[str]) -> list[tuple[int, int]]:
    """(start, end) of the value of every top-level member named in ``fields``, in order.
    Raises ``ValueError`` for anything that is not one JSON object."""
    decoder = json.JSONDecoder()
    at = _skip_ws(text, 0)
    if text[at:at + 1] != "{":
        raise ValueError("not an object")
    at = _skip_ws(text, at + 1)
    spans: list[tuple[int, int]] = []
    if text[at:at + 1] == "}":
        return spans
    while True:
        if text[at:at + 1] != '"':
            raise ValueError("expected a member name")
        name, at = decoder.raw_decode(text, at)
        at = _skip_ws(text, at)
        if text[at:at + 1] != ":":
            raise ValueError("expected ':'")
        start = _skip_ws(text, at + 1)
        _, end = decoder.raw_decode(text, start)
        if name in fields:
            spans.append((start, end))
        at = _skip_ws(text, end)
        if text[at:at + 1] == ",":
            at = _skip_ws(text, at + 1)
            continue
        if text[at:at + 1] == "}" and not text[at + 1:].strip(_WS):
            return spans
        raise ValueError("expected ',' or the end of the object")


def _field_name(raw: bytes) -> str:
    name = unquote_plus(raw.decode("latin-1"), encoding="latin-1")
    try:
        return name.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return name.encode("latin-1").decode("cp1251", errors="replace")


def _urlencoded(body: bytes, fields: Collection[str]) -> bytes:
    """Each ``name=value`` pair whose name is in ``fields`` becomes ``name=[redacted]``."""
    pairs = body.split(b"&")
    for i, pair in enumerate(pairs):
        name, eq, _ = pair.partition(b"=")
        if eq and _field_name(name) in fields:
            pairs[i] = name + b"=" + REDACTED.encode()
    return b"&".join(pairs)


def _multipart(body: bytes, content_type: str, fields: Collection[str]) -> bytes:
    """Each part named in ``fields`` gets ``[redacted]`` as its content (RFC 7578)."""
    match = re.search(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', content_type, re.IGNORECASE)
    if match is None:
        return body
    delimiter = b"--" + (match[1] or match[2]).encode("latin-1")
    parts = body.split(delimiter)
    for i, part in enumerate(parts[1:], start=1):
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = next((line for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-disposition:")), b"")
        found = _NAME.search(disposition.partition(b":")[2])
        if found is None:
            continue
        name = (found[1] if found[1] is not None else found[2]).decode("utf-8", "replace")
        if name in fields:
            tail = b"\r\n" if content.endswith(b"\r\n") else b""
            parts[i] = head + sep + REDACTED.encode() + tail
    return delimiter.join(parts)
