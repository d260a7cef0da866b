"""What kind of body a webhook holds, guessed the one way every source guesses it.

Providers and browsers label bodies loosely: ``fetch(..., {mode: "no-cors"})`` and
``sendBeacon`` send JSON as ``text/plain``, curl-built relays send a form with no
content type at all, vendors use ``application/vnd.x+json``. ``webform``, ``tilda``
and the call-tracking sources (``hub.sdk.telephony.payload``) each used to write these
rules out; they live here so a new source reads bodies the same way. Pure functions.
"""

from __future__ import annotations

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
