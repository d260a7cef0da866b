"""``tilda``: Tilda (tilda.cc) form webhooks ("Site settings → Forms → Webhook").

What Tilda sends (help-ru.tilda.cc/formsscript, help.tilda.cc/forms/script):

* ``POST``, ``application/x-www-form-urlencoded``; field names are the form's "variable
  names" (``Name``, ``Phone``, ``Email``, ``Textarea``, custom ones), case varying by
  site, so they go through the shared alias table case-insensitively;
* ``tranid`` (``<project id>:<sequence>``), the submission id: the event id, so Tilda's
  retries (it tries twice more, a minute apart, when no answer came within 5 s) never
  make a second lead; ``formid`` and ``formname`` stay in ``lead.fields``;
* ``COOKIES`` when "send cookies" is ticked: ``document.cookie``, whose ``TILDAUTM``
  cookie holds the UTM tags and ``_gcl_aw`` the gclid; the core reads both;
* ``utm_*``/click ids as fields only when the site added hidden fields for them;
* right after the webhook is added, the body ``test=test``: a connection test, answered
  200 ``ok``, stored, no lead.

The same fields as a JSON object (``{"Name": ..., "Phone": ..., "tranid": ...}``) are read
as well: Tilda's documented webhook is a form, but relays and integrations re-post it as
JSON, and a lead refused for its encoding would only sit in quarantine.

Tilda signs nothing: with ``token`` set the webhook URL must carry ``?token=...`` (or the
header ``X-Leadhub-Token``). Every accepted request is answered ``200`` with the body
``ok``; the answer leaves as soon as the raw request is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sdk import (
    Accepted,
    Connector,
    HookResponse,
    InboundRequest,
    ParsedEvent,
    ParseError,
    Source,
    TokenSourceConfig,
    check_token,
    draft_from_fields,
    field_key,
    fields_of,
    hookimpl,
)

#: Tilda's default variable names that the shared alias table does not know.
TILDA_FIELD_MAP = {"Textarea": "message", "Comment": "message"}


class TildaConfig(TokenSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "tilda"``."""


class TildaSource(Source[TildaConfig]):
    """Tilda form submissions, the ``test=test`` ping included."""

    Config = TildaConfig
    description = "Tilda form webhooks (urlencoded; UTM from TILDAUTM cookies)."

    def verify(self, request: InboundRequest) -> None:
        check_token(request, self.config.token)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        # the same fields as a JSON object too: relays and integrations re-post a
        # submission so; nested values (a ``payment`` block) are kept for lead.fields
        items, extra = fields_of(request, expected="Tilda's urlencoded form")
        if not items:
            raise ParseError("empty form")
        if is_test_ping(items):
            return [ParsedEvent(lead=None, reason="Tilda webhook test (test=test)")]
        tranid = next((v.strip() for k, v in items if field_key(k) == "tranid" and v.strip()), None)
        draft = draft_from_fields(items, channel="form", field_map=TILDA_FIELD_MAP, extra=extra)
        return [ParsedEvent(event_id=tranid, lead=draft)]

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        """``ok``, as Tilda's sample script answers, for leads, pings and retries alike."""
        return HookResponse(200, "ok", media_type="text/plain")


def is_test_ping(items: list[tuple[str, str]]) -> bool:
    """Tilda's connection test: the single field ``test=test``."""
    return [(field_key(k), v.strip().lower()) for k, v in items] == [("test", "test")]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(TildaSource)
