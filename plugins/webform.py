"""``webform``: any landing-page form or JSON webhook, without a provider of its own.

Accepted bodies (what browsers and no-code tools send, per the WHATWG form submission rules):

* ``application/x-www-form-urlencoded`` and ``multipart/form-data`` as browsers send
  them (file inputs are ignored), and ``text/plain`` as ``<form enctype="text/plain">``
  sends it (one ``name=value`` per line);
* a JSON object (``application/json``, or ``text/plain`` as ``fetch(..., {mode:
  "no-cors"})`` and ``sendBeacon`` send it) with the same field names as a form::

      {"name": "Иван Петров", "phone": "8 916 123-45-67", "email": "ivan@example.ru",
       "message": "Перезвоните после 18:00", "page_url": "https://example.ru/?utm_source=x",
       "utm": {"source": "yandex", "medium": "cpc"},          # or flat "utm_source": ...
       "contact": {"phones": ["+79161234567"], "emails": []}, # optional, same names inside
       "event_id": "7f0c...", "any_custom_field": "kept in lead.fields"}

  Scalars are read as text (``true``/``false`` for booleans), lists of scalars as
  repeated fields; any other nested value is kept in ``lead.fields`` as it is.

Field names go through ``hub.normalize.fields`` (common English and Russian names,
case-insensitive) after the admin's ``field_map``. Query parameters of the hook URL
(``/hooks/site_form?product=Course``) are read as fields the body does not have, except
``token``, which is a secret and never reaches the lead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import Field, SecretStr, field_validator

from hub.sdk import (
    CANONICAL_FIELDS,
    FORM_TYPES,
    TOKEN_PARAM,
    WEBHOOK_ID_HEADER,
    Accepted,
    AuthError,
    Connector,
    HookResponse,
    InboundRequest,
    ParsedEvent,
    Source,
    SourceConfig,
    check_token,
    draft_from_fields,
    field_key,
    fields_of,
    holds_key,
    hookimpl,
    looks_like_json,
    scalar_texts,
    verify_standard_webhook,
)

EVENT_ID_FIELDS = ("event_id", "request_id")
_NESTED_AS_PREFIX = {"utm": "utm_", "click_ids": ""}


class WebformConfig(SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "webform"``."""

    token: SecretStr | None = Field(
        default=None,
        description="If set, every request must carry it as ?token= or header X-Leadhub-Token.",
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="If set, every request must carry a Standard Webhooks signature made with "
        "it (whsec_... or any string); requests older than 5 minutes are refused.",
    )
    field_map: dict[str, str] = Field(
        default_factory=dict,
        description="Extra field aliases, form field name -> canonical name (name, phone, email, "
        "message, company, product, page_url, referrer, utm_source, gclid, ...).",
    )
    redirect_url: str | None = Field(
        default=None,
        description="Answer an HTML form post with 303 to this page (a thank-you page) instead "
        "of JSON.",
    )

    _key_after_prefix = field_validator("signing_secret")(holds_key)

    @field_validator("field_map")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted({target for target in value.values() if target not in CANONICAL_FIELDS})
        if unknown:
            raise ValueError(
                f"unknown target(s) {', '.join(unknown)}; use one of "
                f"{', '.join(sorted(CANONICAL_FIELDS))}"
            )
        return value


class WebformSource(Source[WebformConfig]):
    """Web forms and flat JSON webhooks: urlencoded, multipart or JSON bodies."""

    Config = WebformConfig
    description = "Landing-page forms (urlencoded, multipart, text/plain) and flat JSON webhooks."

    def verify(self, request: InboundRequest) -> None:
        """The contract's "either": with both ``token`` and ``signing_secret`` set, a plain
        HTML form proves itself with the token and a backend with a Standard Webhooks
        signature; with one set, that one is required; with neither, the form is open.
        (Requiring both refused every plain form of a site that also had a signed backend.)"""
        token, secret = self.config.token, self.config.signing_secret
        if secret is None:
            check_token(request, token)
            return
        if token is not None:
            try:
                check_token(request, token)
                return
            except AuthError:
                pass  # then the signature must hold, and its error is the answer
        verify_standard_webhook(secret.get_secret_value(), request.headers, request.body)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        """One lead per request; a body without any contact is still a draft (the core decides)."""
        items, extra = read_body(request)
        taken = {name for name, _ in items}
        items += [(k, v) for k, v in request.query if k != TOKEN_PARAM and k not in taken]
        draft = draft_from_fields(items, channel="form", field_map=self.config.field_map,
                                  extra=extra)
        return [ParsedEvent(event_id=event_id(request, items), lead=draft)]

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        """303 to ``redirect_url`` for a browser's form post; the contract's JSON otherwise."""
        url = self.config.redirect_url
        if url and is_html_form(request) and wants_page(request.headers):
            return HookResponse(303, headers={"Location": url})
        return super().respond(request, accepted)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(WebformSource)


def read_body(request: InboundRequest) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """(name, value) pairs of the body, and nested JSON values to keep in ``fields`` as they are.

    Raises ``ParseError`` for anything that is neither a form nor a JSON object.
    """
    return fields_of(request, flatten=json_items)


def json_items(data: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Flatten the documented JSON shape into form-style pairs."""
    items: list[tuple[str, str]] = []
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key == "contact" and isinstance(value, dict):
            sub_items, sub_extra = json_items(value)
            items += sub_items
            extra.update({k: v for k, v in sub_extra.items() if k not in extra})
        elif key in _NESTED_AS_PREFIX and isinstance(value, dict):
            prefix = _NESTED_AS_PREFIX[key]
            for sub_key, sub_value in value.items():
                name = sub_key if sub_key.lower().startswith(prefix) else prefix + sub_key
                items += [(name, text) for text in scalar_texts(sub_value) or []]
        elif (texts := scalar_texts(value)) is not None:
            items += [(key, text) for text in texts]
        else:
            extra[key] = value
    return items, extra


def event_id(request: InboundRequest, items: list[tuple[str, str]]) -> str | None:
    """The sender's id of this submission: ``webhook-id``, else an event_id/request_id field."""
    header = request.headers.get(WEBHOOK_ID_HEADER, "").strip()
    if header:
        return header
    for name, value in items:
        if field_key(name) in EVENT_ID_FIELDS and value.strip():
            return value.strip()
    return None


def is_html_form(request: InboundRequest) -> bool:
    """A body an HTML form posts: urlencoded, multipart, or ``enctype="text/plain"``."""
    ctype = request.content_type
    return ctype in FORM_TYPES or (ctype == "text/plain" and not looks_like_json(request))


def wants_page(headers: Mapping[str, str]) -> bool:
    """Whether the sender is a browser navigating (an HTML form), not a script wanting JSON.

    ``Sec-Fetch-Mode`` settles it where browsers send it (``navigate`` for a form post,
    ``cors`` for ``fetch``); else an XHR marker or an ``Accept`` preferring JSON means JSON.
    """
    mode = headers.get("sec-fetch-mode", "").lower()
    if mode:
        return mode == "navigate"
    if headers.get("x-requested-with", "").lower() == "xmlhttprequest":
        return False
    accept = headers.get("accept", "")
    html = _quality(accept, ("text/html", "application/xhtml+xml"))
    json_q = _quality(accept, ("application/json",))
    if json_q is None:
        return html != 0.0
    return html is not None and html >= json_q


def _quality(accept: str, types: tuple[str, ...]) -> float | None:
    """The best q an ``Accept`` header gives any of ``types`` by name, None when none is named."""
    best: float | None = None
    for media_range in accept.split(","):
        media, *params = (part.strip() for part in media_range.split(";"))
        if media.lower() not in types:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = q if best is None else max(best, q)
    return best



