"""``mailgun``: Mailgun Routes with a ``forward("https://hub.example/hooks/NAME")`` action.

What Mailgun posts (documentation.mailgun.com, "Receiving messages via HTTP"):
``application/x-www-form-urlencoded``, or ``multipart/form-data`` when the message has
attachments (they are ignored), with ``recipient``, ``sender``, ``from``, ``subject``,
``body-plain``, ``body-html``, ``stripped-text``, ``stripped-signature``,
``message-headers`` (a JSON list of ``[name, value]``), decoded header copies
(``Message-Id``, ``Reply-To``, ...), and ``timestamp``, ``token``, ``signature``. A
route URL ending in ``mime`` gets ``body-mime`` (the raw message) instead of the parsed
fields; both are read. Field names are matched case-insensitively.

Signature: ``signature == hex(HMAC-SHA256(signing_key, timestamp + token))``, compared
in constant time; ``timestamp`` must not be older than ``timestamp_tolerance_s``. Mailgun
resends the original signature block when it retries (for 8 hours), so the default
tolerance covers its whole retry schedule. The signature does not cover the message, so
a token is good for one message (Mailgun, "Securing Webhooks": cache the token and do not
honor a later request with it): ``nonce`` hands it to the core's replay cache, which
refuses the same token with other fields (401, nothing stored) and lets Mailgun's own
retry (the same fields) through to the usual deduplication.

Answers:

* 200 — a lead, an auto-reply or bounce (stored, no lead), or a repeat of a stored message;
* 401 — a missing or wrong signature, or a timestamp outside the tolerance. Mailgun
  retries it for 8 hours, so mail that arrived while the key was wrong is still
  delivered once the admin fixes ``signing_key``; also a token already seen with other
  fields (a replay);
* 406 — authentic but quarantined (a post without any message fields, a ``body-mime``
  that is no message, a message without any contact): Mailgun never retries a 406, and
  retrying would not help; the request is kept in quarantine for reprocessing
  (``quarantined``; the core calls it once it supports per-source quarantine answers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field, SecretStr

from hub.sdk import (
    AuthError,
    Connector,
    HookResponse,
    InboundRequest,
    MailParts,
    Nonce,
    ParsedEvent,
    ParseError,
    Source,
    SourceConfig,
    event_from_parts,
    hookimpl,
    loads_json,
    parse_message,
)

#: Mailgun retries for 8 hours (10 min, 15 min, 30 min, 1 h, 2 h, 4 h) with the
#: original timestamp; an hour more for queues and clocks.
DEFAULT_TOLERANCE_S = 9 * 3600
#: A timestamp ahead of our clock by more than this is refused (clock skew allowance).
FUTURE_SKEW_S = 300
MESSAGE_FIELDS = ("from", "sender", "body-plain", "body-html", "stripped-text", "message-headers")


class MailgunConfig(SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "mailgun"``."""

    signing_key: SecretStr = Field(
        description="Mailgun's HTTP webhook signing key (Sending → Webhooks → HTTP webhook "
        "signing key); the signature is HMAC-SHA256 of timestamp + token with it.",
    )
    timestamp_tolerance_s: int = Field(
        default=DEFAULT_TOLERANCE_S, ge=60,
        description="Refuse a signed timestamp older than this many seconds. Mailgun retries "
        "with the original timestamp for 8 hours, so keep it above 8 h (default 9 h).",
    )


class MailgunSource(Source[MailgunConfig]):
    """Messages forwarded by a Mailgun route."""

    Config = MailgunConfig
    description = "Mailgun Routes forward() of inbound e-mail (signed)."

    def verify(self, request: InboundRequest) -> None:
        try:
            fields = signature_fields(request)
        except ParseError as exc:
            raise AuthError("no Mailgun signature: the body is not a form") from exc
        check_signature(self.config.signing_key.get_secret_value(), fields,
                        tolerance_s=self.config.timestamp_tolerance_s, now=time.time())

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        fields = form_fields(request)
        mime = fields.get("body-mime")
        if mime is not None and mime.strip():
            # the message's own bytes: its 8-bit parts are in the charsets they name
            parts = parse_message(request.form_bytes("body-mime")
                                  or mime.encode("utf-8", "surrogateescape"))
        elif any(fields.get(name, "").strip() for name in MESSAGE_FIELDS):
            parts = parts_from_fields(fields)
        else:
            raise ParseError("not a Mailgun route post: no message fields")
        return [event_from_parts(parts, default_region=self.context.default_region)]

    def nonce(self, request: InboundRequest) -> Nonce:
        """``token``: the signature covers ``timestamp + token``, not the message, so a token
        is good for one message (``hub/engine/nonces.py``). The content is every form field
        in order, not the raw body: a retry is the same fields, whatever its multipart
        boundary. Kept as long as the timestamp is acceptable."""
        items = request.form_items()
        token = next((value for name, value in items if name == "token"), "")
        content = hashlib.sha256(
            json.dumps(items, ensure_ascii=True).encode("ascii")).hexdigest()
        return Nonce(token, self.config.timestamp_tolerance_s + FUTURE_SKEW_S, content)

    def respond_quarantined(self, request: InboundRequest, reason: str) -> HookResponse:
        """406: Mailgun never retries it; the request is kept in quarantine."""
        return HookResponse(406, {"error": {"code": "unprocessable", "message": reason}})


def signature_fields(request: InboundRequest) -> dict[str, str]:
    """Mailgun's own ``timestamp``, ``token`` and ``signature``, by their exact lower-case
    names: Mailgun also posts the message's headers as fields, capitalised (``Subject``),
    and a message with a ``Token:`` or ``Signature:`` header of its own must not stand in
    for them (read case-blind, it did: 401, and Mailgun retried for 8 h and dropped it)."""
    fields: dict[str, str] = {}
    for name, value in request.form_items():
        if name in SIGNATURE_FIELDS:
            fields.setdefault(name, value)
    return fields


SIGNATURE_FIELDS = ("timestamp", "token", "signature")


def form_fields(request: InboundRequest) -> dict[str, str]:
    """The form's fields by lower-cased name, the first value of a repeated name winning."""
    fields: dict[str, str] = {}
    for name, value in request.form_items():
        fields.setdefault(name.lower(), value)
    return fields


def check_signature(key: str, fields: dict[str, str], *, tolerance_s: float, now: float) -> None:
    """Raise ``AuthError`` unless ``signature`` is HMAC-SHA256(key, timestamp + token), fresh."""
    if not key.strip():  # an HMAC under "" is anyone's to make
        raise AuthError("signing_key is not configured (empty): every request is refused")
    timestamp, token = fields.get("timestamp", ""), fields.get("token", "")
    signature = fields.get("signature", "")
    if not (timestamp and token and signature):
        raise AuthError("missing Mailgun timestamp, token or signature")
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("utf-8", "replace")):
        raise AuthError("wrong Mailgun signature")
    try:
        age = now - float(timestamp)
    except ValueError as exc:
        raise AuthError("Mailgun timestamp is not a number") from exc
    if age > tolerance_s or age < -FUTURE_SKEW_S:
        raise AuthError("Mailgun timestamp outside the tolerance")


def parts_from_fields(fields: dict[str, str]) -> MailParts:
    """Mailgun's parsed fields as ``MailParts``."""
    headers: list[tuple[str, str]] = []
    try:
        listed = loads_json(fields.get("message-headers") or "[]")
    except ParseError:
        listed = []
    if isinstance(listed, list):
        headers = [(str(pair[0]), str(pair[1])) for pair in listed
                   if isinstance(pair, list) and len(pair) == 2]
    parts = MailParts(
        sender=fields.get("from") or fields.get("sender"),
        to=[v for v in (fields.get("to"), fields.get("recipient")) if v],
        subject=fields.get("subject"),
        text=fields.get("body-plain"),
        html=fields.get("body-html"),
        stripped_text=fields.get("stripped-text"),
        stripped_signature=fields.get("stripped-signature"),
        headers=headers,
    )
    parts.reply_to = fields.get("reply-to") or parts.raw_header("Reply-To")
    parts.message_id = fields.get("message-id") or parts.header("Message-Id")
    ctype = fields.get("content-type") or parts.header("Content-Type") or ""
    parts.content_type = ctype.split(";")[0].strip().lower() or None
    # Auto-Submitted & co. may only be in the decoded copies when message-headers is absent
    for name in ("auto-submitted", "x-autoreply", "x-autorespond", "precedence", "x-failed-recipients"):
        if fields.get(name) and parts.raw_header(name) is None:
            parts.headers.append((name, fields[name]))
    return parts


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(MailgunSource)
