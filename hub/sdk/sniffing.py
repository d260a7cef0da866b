"""What kind of body a webhook holds, guessed the one way every source guesses it.

Providers and browsers label bodies loosely: ``fetch(..., {mode: "no-cors"})`` and
``sendBeacon`` send JSON as ``text/plain``, curl-built relays send a form with no
content type at all, vendors use ``application/vnd.x+json``. ``webform``, ``tilda``
and the call-tracking sources (``hub.sdk.telephony.payload``) each used to write these
rules out; they live here so a new source reads bodies the same way. Pure functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from hub.bodies import loads_json
from hub.connectors import InboundRequest
from hub.errors import ParseError

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

BodyKind = Literal["json", "form"]


def looks_like_json(request: InboundRequest) -> bool:
    """A JSON content type (``application/json``, ``*+json``), an unlabelled or
    ``text/plain`` body that starts with ``{``, or a JSON object labelled as a urlencoded
    form: PHP's curl labels any string it posts so (relays of Roistat and UIS
    notifications), and read as a form its JSON was one meaningless field name. A form
    never begins with ``{`` otherwise, and one that does and is not a JSON object stays a
    form."""
    ctype = request.content_type
    if ctype == "application/json" or ctype.endswith("+json"):
        return True
    braced = request.body.lstrip()[:1] == b"{"
    if ctype in ("", "text/plain"):
        return braced
    return braced and ctype == FORM_TYPES[0] and _is_json_object(request.body)


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(loads_json(body), dict)  # bounded: 10,000 "{" deep is no crash
    except ParseError:
        return False


def looks_like_form(request: InboundRequest) -> bool:
    """A form content type, or an unlabelled or ``text/plain`` body with a ``name=value``
    in it (``<form enctype="text/plain">`` posts one per line; JSON is tried first)."""
    ctype = request.content_type
    return ctype in FORM_TYPES or (ctype in ("", "text/plain") and b"=" in request.body)


def body_kind(request: InboundRequest) -> BodyKind | None:
    """``"json"`` or ``"form"`` (JSON wins when a body could be either), None for neither."""
    if looks_like_json(request):
        return "json"
    if looks_like_form(request):
        return "form"
    return None


def json_object(request: InboundRequest) -> dict[str, Any]:
    """The body as a JSON object (``InboundRequest.json``); ``ParseError`` for any other JSON."""
    data = request.json()
    if not isinstance(data, dict):
        raise ParseError(f"expected a JSON object, got {type(data).__name__}")
    return data


def json_pairs(data: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """A flat JSON object as form-style (name, value) pairs, and what is not flat.

    Scalars are read as text (``true``/``false`` for booleans, null as nothing), a list of
    scalars as the same name repeated, as a form repeats a multi-valued input; any other
    value (an object, a list holding one) is returned apart, for ``lead.fields`` as it is.
    So a source that takes a form takes the same fields posted as JSON.
    """
    items: list[tuple[str, str]] = []
    extra: dict[str, Any] = {}
    for key, value in data.items():
        texts = scalar_texts(value)
        if texts is None:
            extra[key] = value
        else:
            items += [(key, text) for text in texts]
    return items, extra


def scalar_texts(value: Any) -> list[str] | None:
    """A scalar or a list of scalars as texts (empty ones left out); None for anything else."""
    if isinstance(value, list):
        texts = [_scalar_text(v) for v in value]
        return None if any(t is None for t in texts) else [t for t in texts if t]
    text = _scalar_text(value)
    return None if text is None else [text] if text else []


def _scalar_text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def fields_of(
    request: InboundRequest,
    *,
    expected: str = "a form or a JSON object",
    flatten: Callable[[dict[str, Any]], tuple[list[tuple[str, str]], dict[str, Any]]] = json_pairs,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """A body's fields whichever way they came: a JSON object through ``flatten`` (pairs,
    and the values kept apart), or a form's (name, value) pairs; else ``ParseError``
    naming what was ``expected``."""
    if looks_like_json(request):
        return flatten(json_object(request))
    if looks_like_form(request):
        return request.form_items(), {}
    ctype = request.content_type
    raise ParseError(f"expected {expected}, got {ctype or 'no content type'}")
