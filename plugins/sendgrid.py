"""``sendgrid``: Twilio SendGrid Inbound Parse, both of its modes.

SendGrid posts ``multipart/form-data`` (its own samples use the boundary ``xYzZY``)
(twilio.com/docs/sendgrid/for-developers/parsing-email/inbound-email):

* default ("parsed") mode: ``headers`` (the raw header block), ``from``, ``to``, ``cc``,
  ``subject``, ``text``, ``html``, ``envelope`` (JSON), ``charsets`` (JSON: the charset
  each field is encoded in — ``text`` may well be ``windows-1252`` or ``koi8-r``),
  ``attachments``, ``attachmentN`` files (ignored), ``spam_score``, ``SPF``, ``dkim``...;
* raw mode ("POST the raw, full MIME message"): the whole message in the field ``email``.

Both are read by ``hub.normalize.mail``: sender (RFC 2047 names), Reply-To, subject,
reply text without the quote, phones and UTM links in it. The Message-ID (from
``headers`` or the raw message) is the event id, so SendGrid's retries (it queues and
retries a post answered 5xx for up to 3 days; any other failure is not retried) never
make a second lead. Auto-replies and bounces are stored and answered 200 without a lead.

SendGrid signs nothing by default (its optional ECDSA "security policy" is not
supported): set ``token`` and give SendGrid the URL with ``?token=...`` (or as the
password of the URL's credentials, ``https://parse:TOKEN@host/...``).
"""

from __future__ import annotations

from collections.abc import Callable
from email.parser import BytesParser, HeaderParser
from email.policy import HTTP
from typing import Any

from hub.sdk import (
    Connector,
    InboundRequest,
    MailParts,
    ParsedEvent,
    ParseError,
    Source,
    TokenSourceConfig,
    check_token,
    clean_message_id,
    clean_text,
    event_from_parts,
    hookimpl,
    loads_json,
    parse_message,
)

TEXT_FIELDS = ("headers", "from", "to", "cc", "subject", "text", "html", "charsets")


class SendgridConfig(TokenSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "sendgrid"``."""


class SendgridSource(Source[SendgridConfig]):
    """Messages from SendGrid Inbound Parse (parsed or raw mode)."""

    Config = SendgridConfig
    description = "Twilio SendGrid Inbound Parse (multipart; parsed or raw mode)."

    def verify(self, request: InboundRequest) -> None:
        check_token(request, self.config.token, basic=True)  # also https://u:TOKEN@host/... in the URL

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        if request.content_type != "multipart/form-data":
            raise ParseError(f"expected multipart/form-data, got {request.content_type or 'nothing'}")
        fields = multipart_fields(request.headers.get("content-type", ""), request.body)
        raw = fields.get("email")
        if raw is not None and raw.strip():
            parts = parse_message(raw)
        elif any(fields.get(name, b"").strip() for name in ("from", "text", "html", "headers")):
            parts = parts_from_fields(fields)
        else:
            raise ParseError("not a SendGrid Inbound Parse post: no email, from, text or headers")
        return [event_from_parts(parts, default_region=self.context.default_region)]


def multipart_fields(content_type: str, body: bytes) -> dict[str, bytes]:
    """Non-file parts by name, as bytes (their charset is in ``charsets``, not in the part)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ParseError("multipart body without a valid boundary")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        fields.setdefault(name, payload if isinstance(payload, bytes) else b"")
    return fields


def _decoder(fields: dict[str, bytes]) -> Callable[[str], str | None]:
    try:
        charsets = loads_json(fields.get("charsets") or b"{}")
    except ParseError:
        charsets = {}
    if not isinstance(charsets, dict):
        charsets = {}

    def text(name: str) -> str | None:
        data = fields.get(name)
        if data is None:
            return None
        charset = charsets.get(name)
        for candidate in (charset if isinstance(charset, str) else None, "utf-8"):
            if candidate:
                try:
                    return clean_text(data.decode(candidate))  # utf-7 can hold lone surrogates
                except (LookupError, UnicodeDecodeError, ValueError):
                    continue
        return data.decode("cp1251", errors="replace")

    return text


def parts_from_fields(fields: dict[str, bytes]) -> MailParts:
    """Parsed-mode fields as ``MailParts``, each decoded with the charset ``charsets`` names."""
    text = _decoder(fields)
    header_block = text("headers") or ""
    headers = HeaderParser().parsestr(header_block.replace("\r\n", "\n").strip() + "\n\n")
    pairs = [(k, str(v)) for k, v in headers.items()]
    parts = MailParts(
        sender=text("from") or headers.get("From"),
        to=[v for v in (text("to"), *_envelope_to(fields)) if v],
        subject=text("subject"),
        text=text("text"),
        html=text("html"),
        headers=pairs,
    )
    parts.reply_to = parts.raw_header("Reply-To")
    parts.message_id = clean_message_id(parts.header("Message-ID"))
    parts.content_type = (parts.header("Content-Type") or "").split(";")[0].strip().lower() or None
    return parts


def _envelope_to(fields: dict[str, bytes]) -> list[str]:
    try:
        envelope = loads_json(fields.get("envelope") or b"{}")
    except ParseError:
        return []
    to = envelope.get("to") if isinstance(envelope, dict) else None
    return [t for t in to if isinstance(t, str)] if isinstance(to, list) else []


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(SendgridSource)
