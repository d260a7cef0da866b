"""``postmark``: Postmark's inbound webhook (JSON), one message per request.

Fields read (postmarkapp.com/developer/webhooks/inbound-webhook): ``FromFull``
(``Email``, ``Name``), ``ReplyTo``, ``ToFull``/``To``/``OriginalRecipient``, ``Subject``,
``StrippedTextReply`` (Postmark's reply-only text) else ``TextBody`` else ``HtmlBody``,
``MailboxHash`` (the ``+tag`` of the address it was sent to), ``Headers``
(``[{"Name", "Value"}]``) and ``MessageID``. ``RawEmail``, when the server is set to
include it, is used only when the parsed fields are missing.

* Event id: the message's own ``Message-ID`` header, else Postmark's ``MessageID``, so
  Postmark's retries never make a second lead.
* Auth: Postmark signs nothing; it supports credentials in the webhook URL
  (``https://postmark:TOKEN@hub.example/hooks/NAME``, sent as HTTP Basic auth) — the
  password is compared with ``token``; ``?token=`` and ``X-Leadhub-Token`` work too.
* Answers: 200 for leads and for auto-replies/bounces (no lead); 401 for a wrong token
  (Postmark retries, so a fixed token still gets the message); a quarantined request
  should get 403, the one code that stops Postmark's retries (``quarantined``).
"""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formataddr
from typing import Any

from hub.sdk import (
    Connector,
    HookResponse,
    InboundRequest,
    MailParts,
    ParsedEvent,
    ParseError,
    Source,
    TokenSourceConfig,
    check_token,
    event_from_parts,
    hookimpl,
    parse_message,
)


class PostmarkConfig(TokenSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "postmark"``."""


class PostmarkSource(Source[PostmarkConfig]):
    """Postmark inbound messages."""

    Config = PostmarkConfig
    description = "Postmark inbound webhook (JSON)."

    def verify(self, request: InboundRequest) -> None:
        check_token(request, self.config.token, basic=True)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        data = request.json()
        if not isinstance(data, dict):
            raise ParseError(f"expected a JSON object, got {type(data).__name__}")
        parts = parts_from_json(data)
        return [event_from_parts(parts, default_region=self.context.default_region)]

    def respond_quarantined(self, request: InboundRequest, reason: str) -> HookResponse:
        """403: Postmark stops retrying; the request is kept in quarantine."""
        return HookResponse(403, {"error": {"code": "unprocessable", "message": reason}})


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value.strip() else None


def parts_from_json(data: dict[str, Any]) -> MailParts:
    """The fields of Postmark's inbound JSON as ``MailParts``; ``ParseError`` if none are there."""
    raw = _text(data, "RawEmail")
    full = data.get("FromFull") if isinstance(data.get("FromFull"), dict) else {}
    address = _text(full, "Email") or _text(data, "From")
    if not (address or _text(data, "TextBody") or _text(data, "HtmlBody")):
        if raw:
            return parse_message(raw.encode("utf-8", "surrogateescape"))
        raise ParseError("not a Postmark inbound message: no From, TextBody or HtmlBody")
    name = _text(full, "Name") or _text(data, "FromName")
    # a header whose Value is null is no header ("None" as a Message-ID made every later
    # such message a retry of the first)
    headers = [(h["Name"], h["Value"]) for h in _list(data, "Headers")
               if isinstance(h, dict) and isinstance(h.get("Name"), str)
               and isinstance(h.get("Value"), str)]
    to = [_text(r, "Email") or "" for r in _list(data, "ToFull") if isinstance(r, dict)]
    to += [v for v in (_text(data, "OriginalRecipient"), _text(data, "To")) if v]
    parts = MailParts(
        sender=formataddr((name or "", address)) if address else None,
        reply_to=_text(data, "ReplyTo"),
        to=[t for t in to if t],
        subject=_text(data, "Subject"),
        text=_text(data, "TextBody"),
        html=_text(data, "HtmlBody"),
        stripped_text=_text(data, "StrippedTextReply"),
        headers=headers,
        mailbox_hash=_text(data, "MailboxHash") or next(
            (h for r in _list(data, "ToFull") if isinstance(r, dict)
             and (h := _text(r, "MailboxHash"))), None),
    )
    parts.message_id = parts.header("Message-ID") or _text(data, "MessageID")
    parts.content_type = (parts.header("Content-Type") or "").split(";")[0].strip().lower() or None
    return parts


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(PostmarkSource)
