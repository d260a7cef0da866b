"""``calltouch``: Calltouch lead webhooks — calls and requests (заявки).

In Calltouch (Интеграции → Отправка данных во внешние системы → Вебхуки) the admin adds
a lead webhook to ``https://<hub>/hooks/<name>?token=<token>``, method GET or POST, at
the moments wanted (request received, call started, call ended), and ticks the
parameters to send. Values arrive URL-encoded, as query parameters (GET) or a form
(POST); a JSON body is read too. Calltouch signs nothing: webhooks come from
92.118.66.0/23 and the ``token`` in the URL is the only proof.

A call (``callId``) becomes a call lead: ``callerphone`` is the caller, ``phonenumber``
the tracking number dialled. Calltouch attributes the call itself, so ``utm_*`` (or its
own ``source``/``medium``/``keyword``) become the lead's UTM tags. Events of one call
(start, end) share ``callId`` and make one lead. A request (``requestId`` /
``requestNumber``, a site form or a callback order) becomes a form lead. Every other
parameter is kept in ``lead.fields``.

Talk time: ``duration`` minus ``waiting_time`` (or ``waitingConnect``) when both are
sent, else ``duration``; answered is ``successful`` (or ``callphase=callconnected``, or
a talk time above 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from hub.sdk import (
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

CALL_ID = ("callId", "call_id", "callid", "CallId")
CALLER = ("callerphone", "callerPhone", "callerNumber", "caller_phone", "caller")
TRACKING = ("phonenumber", "phoneNumber", "phone_number", "calledNumber", "callee")
#: the fields of a deal webhook (``dealId``, ``dealName``, ``dealStatus`` ...)
DEAL_PREFIX = "deal"
REQUEST_ID = ("requestId", "requestNumber", "request_id", "requestID")
STARTED = ("callTime", "calltime", "call_time", "date", "timestamp", "callDate")
RECORDING = ("callRecordUrl", "callRecord", "recordUrl", "record", "recording_url", "recordingUrl")
PAGE = ("callUrl", "url", "page_url", "landing")
#: Calltouch's own attribution names, used when no utm_* of that kind was sent.
FALLBACKS = {"source": ("source",), "medium": ("medium",), "term": ("keyword",)}
#: Request fields that mean something else than in the common form aliases.
REQUEST_FIELD_MAP = {"phoneNumber": "phone", "clientPhone": "phone", "requestUrl": "page_url",
                     "fio": "name", "clientName": "name"}


class CalltouchConfig(TrackingConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "calltouch"``."""


class CalltouchSource(Source[CalltouchConfig]):
    """Calltouch lead webhooks: calls (one lead per callId) and requests (form leads)."""

    Config = CalltouchConfig
    description = "Calltouch lead webhooks (calls and requests), with Calltouch's UTM attribution."
    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")

    def verify(self, request: InboundRequest) -> None:
        check_token(request, self.config.token)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        data = payload(request)
        if not data:
            raise ParseError("an empty Calltouch webhook: tick the parameters to send")
        call_id, caller = first(data, *CALL_ID), first(data, *CALLER)
        request_id = first(data, *REQUEST_ID)
        if not (call_id or request_id) and any(str(k).startswith(DEAL_PREFIX) for k in data):
            return [not_a_lead("a Calltouch deal webhook: stored, not a lead", content_id(data))]
        if (call_id and (caller or not request_id)) or (caller and not request_id):
            return [self._call(data, call_id, caller)]
        return [self._request(data)]

    def _call(self, data: Mapping[str, Any], call_id: str | None, caller: str | None) -> ParsedEvent:
        used = {*CALL_ID, *CALLER, *TRACKING, *STARTED, *RECORDING, *PAGE, "ref", "referrer",
                "duration", "waiting_time", "waitingConnect", "successful", "callphase"}
        if call_id is None and caller is None:
            return not_a_lead("a call that names neither the caller nor the call")
        tracking = first(data, *TRACKING)
        duration, waiting = as_int(data.get("duration")), as_int(
            data.get("waiting_time", data.get("waitingConnect")))
        talk = duration - waiting if duration is not None and waiting is not None and \
            0 <= waiting <= duration else duration
        # ``successful`` or the talk time, never ``callphase``: "callconnected" comes at the
        # start of a call that may still go unanswered, and a lead once answered stays so
        answered = flag(data.get("successful"))
        if answered is None and talk is not None:
            answered = talk > 0
        info = CallInfo(
            call_id=call_id or f"caller:{caller}",
            from_number=caller,
            to_number=tracking,
            tracking_number=tracking,
            started_at=local_time(first(data, *STARTED), self.config.timezone),
            duration_s=(talk or 0) if answered else (0 if answered is False else None),
            answered=answered,
            recording_url=first(data, *RECORDING),
        )
        utm = utm_tags(data, used, FALLBACKS)
        return call_event(info, event_id=content_id(data), fields=rest_fields(data, used), utm=utm,
                          page_url=first(data, *PAGE), referrer=first(data, "ref", "referrer"),
                          name=first(data, "name", "fio", "callerName"))

    def _request(self, data: Mapping[str, Any]) -> ParsedEvent:
        used: set[str] = set()
        utm = utm_tags(data, used, FALLBACKS)
        items = [(str(k), v) for k, value in data.items() if k not in used and
                 (v := text(value)) is not None]
        draft = draft_from_fields(items, channel="form", field_map=REQUEST_FIELD_MAP)
        draft.utm = utm
        request_id = first(data, *REQUEST_ID)
        if not (draft.phones or draft.emails or request_id):
            return not_a_lead("a Calltouch webhook that is neither a call nor a request",
                              content_id(data))
        return ParsedEvent(event_id=f"request:{request_id}" if request_id else content_id(data),
                           lead=draft)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(CalltouchSource)
