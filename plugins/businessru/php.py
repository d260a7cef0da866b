"""PHP's own encodings, as Business.Ru's signatures need them byte for byte.

Business.Ru signs with md5 over strings PHP builds (business-ru/business-online-sdk-php
``src/Client.php``, ``sendRequest``): the request's ``http_build_query`` of the ``ksort``-ed
parameters, and the response's ``json_encode`` of the decoded body. Python's ``urlencode``
and ``json.dumps`` differ from both in small ways (``~``, nested keys, ``\\/``, lists vs
objects), and any difference is a failed signature, so these are written out here:

- ``http_build_query``: PHP_QUERY_RFC1738 (``urlencode``: letters, digits and ``-_.`` kept,
  space as ``+``, the rest ``%XX`` upper-case, ``~`` included); nested arrays as
  ``a%5Bb%5D=...``; ``null`` skipped, ``true``/``false`` as ``1``/``0``; empty arrays
  produce nothing.
- ``ksort``: PHP 8 ``SORT_REGULAR`` on keys: integer-like keys (PHP stores ``"12"`` as int
  12) compare numerically with each other, anything else as strings.
- ``json_encode`` with default flags: ``\\uXXXX`` (lower-case hex) for every non-ASCII
  character, ``\\/`` for ``/``, no spaces; a PHP array whose keys are 0..n-1 is a JSON list
  (so ``{}`` decoded into an array comes back as ``[]``: ``json_decode($s, true)`` in the
  SDK loses the difference); floats as PHP 7.1+ prints them (``10.0``, ``1.0e+25``).
- ``parse_str`` (for the fake): ``a[b]=1&a[]=2`` into nested dicts, as PHP fills ``$_GET``.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus, unquote_plus

_INT_KEY = re.compile(r"-?[1-9][0-9]*|0")


def urlencode(text: str) -> str:
    """PHP ``urlencode``: ``quote_plus`` keeps ``~``, PHP encodes it."""
    return quote_plus(text, safe="").replace("~", "%7E")


def scalar(value: Any) -> str:
    """A scalar as PHP turns it into a query-string value."""
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _php_key(key: Any) -> int | str:
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    text = str(key)
    return int(text) if _INT_KEY.fullmatch(text) else text


def _compare(a: int | str, b: int | str) -> int:
    if isinstance(a, int) and isinstance(b, int):
        return (a > b) - (a < b)
    x, y = str(a).encode(), str(b).encode()
    return (x > y) - (x < y)


def ksort(params: Mapping[Any, Any]) -> dict[Any, Any]:
    """The top level sorted by key as PHP 8 ``ksort`` does (not recursive, as in the SDK)."""
    keys = sorted(params, key=functools.cmp_to_key(lambda a, b: _compare(_php_key(a), _php_key(b))))
    return {k: params[k] for k in keys}


def nulls_to_empty(value: Any) -> Any:
    """``array_walk_recursive``: every null becomes ``""`` (the SDK does it before signing)."""
    if isinstance(value, Mapping):
        return {k: nulls_to_empty(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nulls_to_empty(v) for v in value]
    return "" if value is None else value


def http_build_query(params: Mapping[Any, Any], prefix: str | None = None) -> str:
    parts: list[str] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix is not None else str(key)
        if value is None:
            continue
        if isinstance(value, Mapping):
            inner = http_build_query(value, name)
        elif isinstance(value, list | tuple):
            inner = http_build_query(dict(enumerate(value)), name)
        else:
            inner = urlencode(name) + "=" + urlencode(scalar(value))
        if inner:
            parts.append(inner)
    return "&".join(parts)


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("json_encode: INF and NAN cannot be encoded")
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text if "." in text else text + ".0"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
            "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif code < 0x80:
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:  # a UTF-16 surrogate pair, as PHP writes it
            code -= 0x10000
            out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}")
    out.append('"')
    return "".join(out)


def _is_list(value: Mapping[Any, Any]) -> bool:
    return all(str(k) == str(i) for i, k in enumerate(value))


def json_encode(value: Any) -> str:
    """PHP ``json_encode($value)`` with default flags, ``$value`` as ``json_decode(..., true)``
    gives it (objects are PHP arrays)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_encode(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if _is_list(value):
            return "[" + ",".join(json_encode(v) for v in value.values()) + "]"
        return "{" + ",".join(_string(str(k)) + ":" + json_encode(v) for k, v in value.items()) + "}"
    raise TypeError(f"json_encode: cannot encode {type(value).__name__}")


def parse_str(query: str) -> dict[str, Any]:
    """PHP ``parse_str``: ``a[b][c]=1`` nests, ``a[]=x`` appends; later values win."""
    result: dict[str, Any] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        head, bracket, rest = name.partition("[")
        if not head:
            continue
        path = [head]
        if bracket:
            path += re.findall(r"\[([^\]]*)\]", "[" + rest)
        node: dict[str, Any] = result
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return result
