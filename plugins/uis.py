"""``uis``: UIS / CoMagic HTTP event notifications (Уведомления о событиях).

UIS imposes no payload: per event (incoming call, call answered, call ended, lost call,
recording ready, ...) the admin sets the method, the URL and a body template with
``{{placeholder}}`` variables (the "API Базовый" option must be on). Point every call
notification at ``https://<hub>/hooks/<name>?token=<token>`` (or put ``"token": "..."``
in the template) with this JSON body, keeping the placeholders you have::

    {"notification_mnemonic": "{{notification_mnemonic}}",
     "call_session_id": "{{call_session_id}}", "direction": "{{direction}}",
     "contact_phone_number": "{{contact_phone_number}}",
     "calling_phone_number": "{{calling_phone_number}}",
     "called_phone_number": "{{called_phone_number}}",
     "virtual_phone_number": "{{virtual_phone_number}}",
     "contact_full_name": "{{contact_full_name}}", "start_time": "{{start_time}}",
     "talk_time_duration": "{{talk_time_duration}}", "is_lost": "{{is_lost}}",
     "file_link": "{{file_link}}",
     "utm_source": "{{utm_source}}", "utm_medium": "{{utm_medium}}",
     "utm_campaign": "{{utm_campaign}}", "utm_term": "{{utm_term}}",
     "utm_content": "{{utm_content}}"}

A form body or GET query parameters with the same names work as well. Events of one call
share ``call_session_id`` and make one lead. ``contact_phone_number`` is the customer on
either direction; ``virtual_phone_number`` is the (tracking) number dialled. A
communication that is not a call (``communication_type`` ``chat``, ``offline_message``)
with a contact becomes a form lead. Placeholders left unfilled (``{{utm_source}}``) or
empty are ignored; other fields go to ``lead.fields``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from hub.sdk import (
    TOKEN_PARAM,
    CallInfo,
    Connector,
    InboundRequest,
    ParsedEvent,
    ParseError,
    Source,
    TrackingConfig,
    check_token,
    draft_from_fields,
    hookimpl,
)
from hub.sdk.telephony import (
    as_int,
    call_event,
    content_id,
    first,
    flag,
    local_time,
    not_a_lead,
    payload,
    rest_fields,
    text,
    utm_tags,
)

RECORDING = ("file_link", "full_record_file_link", "record_file_link", "record_url")
TALK = ("talk_time_duration", "talk_duration")
CALL_FIELDS = ("call_session_id", "direction", "contact_phone_number", "calling_phone_number",
               "called_phone_number", "virtual_phone_number", "contact_full_name", "start_time",
               *TALK, "is_lost", *RECORDING, "communication_type")
OTHER_CHANNEL_FIELDS = {"contact_phone_number": "phone", "contact_email": "email",
                        "contact_full_name": "name", "message": "message"}


class UisConfig(TrackingConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "uis"``."""


class UisSource(Source[UisConfig]):
    """UIS / CoMagic notifications: call events (one lead per call_session_id)."""

    Config = UisConfig
    description = "UIS / CoMagic HTTP event notifications built from the documented template."
    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")
    #: A ``"token"`` put in the template's body (the query's is never stored either).
    secret_fields: ClassVar[tuple[str, ...]] = (TOKEN_PARAM,)

    def verify(self, request: InboundRequest) -> None:
        try:
            body_token = text(_payload(request, skip=()).get(TOKEN_PARAM))
        except ParseError:
            body_token = None
        check_token(request, self.config.token, body_token=body_token)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        data = {k: v for k, v in _payload(request).items() if not _unfilled(v)}
        session = text(data.get("call_session_id"))
        kind = (text(data.get("communication_type")) or "call").lower()
        mnemonic = text(data.get("notification_mnemonic")) or text(data.get("notification_name"))
        communication = session or text(data.get("communication_id"))
        # without an id of the call, the digest of what was said: two calls never share one
        event_id = f"{communication}:{mnemonic}" if mnemonic and communication else content_id(data)
        if kind != "call":
            return [_other_channel(data, event_id)]
        inbound = (text(data.get("direction")) or "in").lower() not in ("out", "outgoing", "outbound")
        contact = first(data, "contact_phone_number")
        calling, called = first(data, "calling_phone_number"), first(data, "called_phone_number")
        virtual = first(data, "virtual_phone_number")
        if session is None and contact is None and (calling if inbound else called) is None:
            return [not_a_lead("a notification that names neither a caller nor a call", event_id)]
        talk = as_int(first(data, *TALK))
        lost = flag(data.get("is_lost"))
        answered = (not lost) if lost is not None else (talk > 0 if talk is not None else None)
        info = CallInfo(
            call_id=session or f"contact:{contact or calling}",
            direction="inbound" if inbound else "outbound",
            from_number=(contact or calling) if inbound else (virtual or calling),
            to_number=(virtual or called) if inbound else (contact or called),
            started_at=local_time(data.get("start_time"), self.config.timezone),
            duration_s=(talk or 0) if answered else (0 if answered is False else None),
            answered=answered,
            recording_url=first(data, *RECORDING),
            tracking_number=virtual if inbound else None,
        )
        used = {*CALL_FIELDS}
        utm = utm_tags(data, used)
        return [call_event(info, event_id=event_id, fields=rest_fields(data, used), utm=utm,
                           name=first(data, "contact_full_name"))]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(UisSource)


#: a quoted placeholder that UIS filled with a quoted JSON string: ``"x": ""in""``
_DOUBLY_QUOTED = re.compile(rb'(?<=[:\[,])(\s*)""((?:[^"\\]|\\.)*)""(?=\s*[,}\]])')


def _payload(request: InboundRequest, *, skip: tuple[str, ...] = (TOKEN_PARAM,)) -> dict[str, Any]:
    """``payload``, also of a template whose quoted placeholders UIS filled with JSON
    strings. Integrators' published templates leave placeholders unquoted
    (``"notification_mnemonic":{{notification_mnemonic}}``, Planfix's "Интеграция с UIS"),
    so UIS may well put a string in with its quotes; ours quotes them (what an unfilled
    or plain-text placeholder needs), and such a body reads ``""in""``."""
    try:
        return payload(request, skip=skip)
    except ParseError:
        if b'""' not in request.body:
            raise
        repaired = _DOUBLY_QUOTED.sub(rb'\1"\2"', request.body)
        if repaired == request.body:
            raise
        return payload(replace(request, body=repaired), skip=skip)


def _unfilled(value: Any) -> bool:
    """An empty value, or a ``{{placeholder}}`` UIS left as it was (no data for it)."""
    if isinstance(value, bool | int | float):
        return False
    if isinstance(value, dict | list):
        return not value
    raw = text(value)
    return raw is None or (raw.startswith("{{") and raw.endswith("}}"))


def _other_channel(data: Mapping[str, Any], event_id: str | None) -> ParsedEvent:
    used: set[str] = set()
    utm = utm_tags(data, used)
    items = [(str(k), v) for k, value in data.items() if k not in used and
             (v := text(value)) is not None]
    draft = draft_from_fields(items, channel="form", field_map=OTHER_CHANNEL_FIELDS)
    draft.utm = utm
    if not (draft.phones or draft.emails):
        return not_a_lead("a notification about something else than a call or a contact", event_id)
    return ParsedEvent(event_id=event_id, lead=draft)
