"""What every Meta (Graph API) webhook shares: WhatsApp Cloud API and Facebook Lead Ads.

* The verification GET (``hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``)
  is answered with the challenge as ``text/plain`` when the token matches, else ``403``.
* Every POST carries ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>``.
  Meta signs the bytes it sent (non-ASCII escaped as ``\\uXXXX``): the check runs over
  the raw body, never over re-serialized JSON.

Source: https://developers.facebook.com/docs/graph-api/webhooks/getting-started
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from pydantic import SecretStr

from hub.connectors import HookResponse, InboundRequest
from hub.errors import AuthError, ParseError
from hub.sdk.auth import expected_secret
from hub.sdk.auth import same_secret as same

SIGNATURE_HEADER = "x-hub-signature-256"


def handshake(request: InboundRequest, verify_token: SecretStr) -> HookResponse | None:
    """Answer Meta's verification GET; None for any other request."""
    if request.method != "GET":
        return None
    query = request.query_dict()
    if query.get("hub.mode") != "subscribe":
        raise AuthError("not a Meta verification request (hub.mode=subscribe)", status_code=403)
    expected = expected_secret(verify_token, "verify_token", status_code=403)
    if not same(query.get("hub.verify_token", ""), expected):
        raise AuthError("wrong hub.verify_token", status_code=403)
    return HookResponse(200, query.get("hub.challenge", ""), media_type="text/plain")


def verify_signature(request: InboundRequest, app_secret: SecretStr) -> None:
    """Raise ``AuthError`` unless ``X-Hub-Signature-256`` is the HMAC of the raw body."""
    header = request.headers.get(SIGNATURE_HEADER, "").strip()
    algo, _, given = header.partition("=")
    if algo.lower() != "sha256" or not given:
        raise AuthError("missing or malformed X-Hub-Signature-256")
    key = expected_secret(app_secret, "app_secret")  # an HMAC under "" is anyone's to make
    expected = hmac.new(key.encode(), request.body, hashlib.sha256)
    if not hmac.compare_digest(given.strip().lower().encode(), expected.hexdigest().encode()):
        raise AuthError("X-Hub-Signature-256 does not match the body")


def sign(body: bytes, app_secret: str) -> str:
    """The header value Meta would send for ``body`` (for tests and replays)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def changes(request: InboundRequest, expected_object: str) -> list[dict[str, Any]]:
    """The ``entry[].changes[]`` items of a notification for ``expected_object``, with
    ``entry_id`` and ``entry_time`` copied into each. ``ParseError`` for any other shape."""
    data = request.json()
    if not isinstance(data, dict):
        raise ParseError("expected a JSON object")
    if data.get("object") != expected_object:
        raise ParseError(f"expected object {expected_object!r}, got {data.get('object')!r}")
    entries = data.get("entry")
    if not isinstance(entries, list) or not entries:
        raise ParseError("no entry[] in the notification")
    out: list[dict[str, Any]] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            raise ParseError("entry without changes[]")
        for change in entry["changes"]:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise ParseError("change without a value object")
            out.append({**change, "entry_id": entry.get("id"), "entry_time": entry.get("time")})
    if not out:
        raise ParseError("the notification holds no changes")
    return out
