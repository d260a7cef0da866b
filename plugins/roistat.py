"""``roistat``: Roistat call-tracking webhooks.

In Roistat (Коллтрекинг → the script's settings → Webhook) the admin enters
``https://<hub>/hooks/<name>?token=<token>`` for the webhook at the moment of the call
(``webhook_start``) and/or after the call (``webhook``). Both POST a JSON object: ``id``
(the call, shared by both), ``caller`` (the customer), ``callee`` (the tracking number
dialled), ``visit_id``, ``marker``, ``date``, ``landing_page``, ``referrer``,
``utm_*`` (null when absent), ``roistat_param_1..5``, ``source_level_1/2``; the
after-call one adds ``status`` (``ANSWER``, ``NOANSWER``, ``BUSY`` ...), ``duration`` and
``link`` (the recording). Roistat signs nothing: the ``token`` is the only proof.

Both webhooks of one call make one lead, its ``call`` block completed by the second;
``visit_id`` is kept as the ``roistat`` click id and the UTM tags Roistat attributed are
the lead's. A request from Roistat's own lead forms (``phone``/``name``/``email`` without
``caller``) becomes a form lead.
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
    first,
    local_time,
    not_a_lead,
    payload,
    rest_fields,
    text,
    utm_tags,
)

ANSWERED = ("ANSWER", "ANSWERED", "SUCCESS")
CALL_FIELDS = ("id", "caller", "callee", "visit_id", "date", "landing_page", "referrer",
               "status", "duration", "link", "file_url")


class RoistatConfig(TrackingConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "roistat"``."""


class RoistatSource(Source[RoistatConfig]):
    """Roistat call-tracking webhooks (at the call and after it) → one call lead per call id."""

    Config = RoistatConfig
    description = "Roistat call-tracking webhooks (start and end of a call), Roistat's attribution."
    #: POST: the call-tracking webhooks (JSON); GET: what Roistat's lead handler for a
    #: custom CRM sends, the lead's ``phone``, ``name``, ``email``, ``visit`` as query
    #: parameters (help-en.roistat.com, "Integration with a custom CRM", pageId=14090762)
    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")

    def verify(self, request: InboundRequest) -> None:
        check_token(request, self.config.token)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        data = payload(request)
        if not data:
            raise ParseError("an empty Roistat webhook")
        call_id, caller = text(data.get("id")), text(data.get("caller"))
        if caller is None and text(data.get("callee")) is None:
            return [_lead_form(data)]
        ended = any(text(data.get(k)) is not None for k in ("status", "duration", "link"))
        event_id = f"{call_id}:{'end' if ended else 'start'}" if call_id else None
        if call_id is None and caller is None:
            return [not_a_lead("a call that names neither the caller nor the call", event_id)]
        status = (text(data.get("status")) or "").upper()
        answered = status in ANSWERED if status else None
        callee = text(data.get("callee"))
        info = CallInfo(
            call_id=call_id or f"caller:{caller}",
            from_number=caller,
            to_number=callee,
            tracking_number=callee,
            started_at=local_time(data.get("date"), self.config.timezone),
            duration_s=(as_int(data.get("duration")) or 0) if answered else (0 if ended else None),
            answered=answered,
            recording_url=first(data, "link", "file_url"),
            seq=2 if ended else 1,
        )
        used = set(CALL_FIELDS)
        utm = utm_tags(data, used)
        return [call_event(info, event_id=event_id, fields=rest_fields(data, used), utm=utm,
                           click_ids={"roistat": text(data.get("visit_id")) or ""},
                           page_url=text(data.get("landing_page")),
                           referrer=text(data.get("referrer")))]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(RoistatSource)


def _lead_form(data: Mapping[str, Any]) -> ParsedEvent:
    """A Roistat lead (lead hunter, forms): ``phone``, ``name``, ``email``, ``visit``."""
    used: set[str] = set()
    utm = utm_tags(data, used)
    items = [(str(k), v) for k, value in data.items() if k not in used and
             (v := text(value)) is not None]
    draft = draft_from_fields(items, channel="form", field_map={"visit": "roistat",
                                                                "text": "message"})
    draft.utm = utm
    if not (draft.phones or draft.emails):
        return not_a_lead("a Roistat webhook that is neither a call nor a lead")
    lead_id = text(data.get("id"))
    return ParsedEvent(event_id=f"lead:{lead_id}" if lead_id else None, lead=draft)
