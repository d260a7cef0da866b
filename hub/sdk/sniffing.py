"""What kind of body a webhook holds, guessed the one way every source guesses it.

Providers and browsers label bodies loosely: ``fetch(..., {mode: "no-cors"})`` and
``sendBeacon`` send JSON as ``text/plain``, curl-built relays send a form with no
content type at all, vendors use ``application/vnd.x+json``. ``webform``, ``tilda``
and the call-tracking sources (``hub.sdk.telephony.payload``) each used to write these
rules out; they live here so a new source reads bodies the same way. Pure functions.
"""

from __future__ import annotations

from typing import Any, Literal

from hub.connectors import InboundRequest
from hub.errors import ParseError

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

BodyKind = Literal["json", "form"]


def looks_like_json(request: InboundRequest) -> bool:
    """A JSON content type (``application/json``, ``*+json``), or an unlabelled or
    ``text/plain`` body that starts with ``{``."""
    ctype = request.content_type
    return ctype == "application/json" or ctype.endswith("+json") or (
        ctype in ("", "text/plain") and request.body.lstrip()[:1] == b"{"
    )


def looks_like_form(request: InboundRequest) -> bool:
    """A form content type, or an unlabelled body with a ``name=value`` in it."""
    ctype = request.content_type
    return ctype in FORM_TYPES or (not ctype and b"=" in request.body)


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
