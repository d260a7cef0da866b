"""Request bodies decoded one way for every source: bounded nesting, no lone surrogates.

Whatever a provider (or anyone who found the URL) sends reaches a plugin's ``verify`` and
``parse`` through ``InboundRequest.json()`` and ``InboundRequest.form_items()``, which call
these functions. Three things go wrong with the standard library alone:

* **Nesting.** ``json.loads`` recurses once per ``[``/``{``: a 40 kB body of brackets
  raises ``RecursionError`` (not ``ValueError``), and plugins that walk the result recurse
  again. A linear pre-scan refuses more than ``MAX_DEPTH`` levels before ``json.loads``
  runs; no real provider payload comes near it (the deepest we know, Meta's webhooks, has 7).
* **Lone surrogates.** JSON may escape half a UTF-16 pair (``"\\udc80"``); Python keeps it
  as a ``str`` that cannot be encoded as UTF-8, so the first ``.encode()`` downstream (the
  admin API's JSON, a JSONL line, an HTTP body, PostgreSQL) fails, again and again. Each
  lone surrogate becomes U+FFFD: a visitor's name loses one unreadable character and the
  lead with its valid phone goes through. Quarantine would hold the whole lead for a
  character no one can read, and reprocessing would not help (the body stays the same);
  the raw body is stored byte for byte either way, so nothing is lost for an audit.
* **Numbers.** ``1e999`` becomes ``inf`` and ``NaN`` is accepted, neither of which is
  JSON any more when the lead is stored (PostgreSQL refuses it); an integer of more than
  4300 digits raises ``ValueError``. All are refused as unparseable: the contract's
  quarantine (422, or 200 for providers that retry).

Invalid UTF-8 (raw surrogate bytes included) is unparseable JSON as well. Forms keep their
lenient reading (cp1251 fallback, ``%``-escapes replaced when invalid), only cleaned.
Pure functions; every failure is a ``ParseError``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from itertools import accumulate
from typing import Any

from hub.errors import ParseError

#: Deepest JSON accepted: arrays and objects inside each other, counted together.
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")
#: A ``\\uD800``-``\\uDFFF`` escape: only then can ``json.loads`` produce a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: A complete JSON string (possessive: linear, no backtracking) — its brackets are text.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def clean_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (a no-op for normal text)."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of text whose charset a sender may or may not have declared: in ``charset``,
    else UTF-8, else windows-1251 (the Russian web's other charset; every byte decodes),
    cleaned. For e-mail parts and urlencoded form values alike."""
    for name in (charset, "utf-8"):
        if name:
            try:
                # a declared utf-7 can hold lone surrogates: never let one into a lead
                return clean_text(data.decode(name))
            except (LookupError, UnicodeDecodeError, ValueError):  # ValueError: NUL in the name
                continue
    return data.decode("cp1251", errors="replace")


def storable_text(text: str) -> str:
    """``clean_text`` that also replaces NUL, which PostgreSQL refuses in text columns:
    for what the core stores from a request as text (event ids, reasons, paths)."""
    text = clean_text(text)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def clean_value(value: Any) -> Any:
    """``value`` with every string in it (dict keys too) passed through ``clean_text``.

    Recursive: call it on decoded JSON (at most ``MAX_DEPTH`` deep) or on our own models.
    """
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(clean_value(v) for v in value)
    return value


def clean_items(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Form fields with lone surrogates replaced in names and values."""
    return [(clean_text(k), clean_text(v)) for k, v in items]


def too_deep(text: str, max_depth: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects in JSON ``text`` nest more than ``max_depth`` deep
    (brackets inside strings do not count). Linear, and nearly free for ordinary bodies:
    the count of opening brackets bounds the depth, so only a body with more than
    ``max_depth`` of them is scanned."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(_DEPTH_STEP[c] for c in brackets), default=0) > max_depth


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ParseError(f"number out of range: {text[:40]}")
    return number


def _no_constant(name: str) -> Any:
    raise ParseError(f"{name} is not a JSON number")


def loads_json(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Decode a JSON document safely; ``ParseError`` for anything that is not plain JSON.

    Bytes may be UTF-8 (with or without BOM), UTF-16 or UTF-32, as ``json.loads`` allows;
    undecodable bytes, nesting over ``max_depth``, numbers out of range, ``NaN`` and
    ``Infinity`` are refused; lone surrogates come back as U+FFFD.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode(json.detect_encoding(data))
        except UnicodeDecodeError as exc:
            raise ParseError(f"body is not valid JSON: not {exc.encoding} "
                             f"(byte {exc.start})") from None
    else:
        text = data
    if too_deep(text, max_depth):
        raise ParseError(f"body is not valid JSON: nested more than {max_depth} levels deep")
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except ParseError as exc:
        raise ParseError(f"body is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: a deep stack already
        raise ParseError(f"body is not valid JSON: {exc}") from None
    if _SURROGATE_ESCAPE.search(text) or (not isinstance(data, bytes) and _SURROGATE.search(text)):
        value = clean_value(value)
    return value
