"""``email_raw``: a whole e-mail message (RFC 5322) POSTed as the body.

For any relay that can hand a message over HTTP as it is: a Postfix/Exim pipe to
``curl --data-binary @- -H 'Content-Type: message/rfc822'``, a Cloudflare Email Worker,
an SMTP-to-HTTP bridge. The body is the message byte for byte; it is parsed by
``hub.normalize.mail`` (sender, Reply-To, subject, reply text, phones, UTM links).

* Content type ``message/rfc822`` (also accepted: ``text/plain``,
  ``application/octet-stream`` or none; and ``application/x-www-form-urlencoded``, what
  ``curl --data-binary`` sends without ``-H``, when the body starts like a header block).
* The Message-ID is the event id: a relay that retries never makes a second lead.
* Auto-replies and bounces (``Auto-Submitted``, ``multipart/report``, mailer-daemon)
  are stored and answered 200 without a lead.
* With ``token`` set, the URL must carry ``?token=...`` or the header ``X-Leadhub-Token``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hub.sdk import (
    Connector,
    InboundRequest,
    ParsedEvent,
    ParseError,
    Source,
    TokenSourceConfig,
    check_token,
    event_from_parts,
    hookimpl,
    parse_message,
)

MESSAGE_TYPES = ("message/rfc822", "text/plain", "application/octet-stream", "")
#: the first line of a message: a header field (RFC 5322 field name, then ":"), or mbox's
#: "From " line
_HEADER_START = re.compile(rb"\A(?:From |[!-9;-~]+:)")


class EmailRawConfig(TokenSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "email_raw"``."""


class EmailRawSource(Source[EmailRawConfig]):
    """One raw e-mail message per request."""

    Config = EmailRawConfig
    description = "A raw e-mail message (message/rfc822) POSTed by a mail relay."

    def verify(self, request: InboundRequest) -> None:
        check_token(request, self.config.token, basic=True)  # also https://u:TOKEN@host/... in the URL

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        ctype = request.content_type
        if ctype not in MESSAGE_TYPES and not (
                ctype == "application/x-www-form-urlencoded" and _HEADER_START.match(request.body)):
            raise ParseError(f"expected message/rfc822, got {ctype}")
        parts = parse_message(request.body)
        if not (parts.sender or parts.text or parts.html):
            raise ParseError("not an e-mail message: no From and no text")
        return [event_from_parts(parts, default_region=self.context.default_region)]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(EmailRawSource)
