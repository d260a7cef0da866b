"""``mango``: Mango Office virtual PBX, "API Realtime" events.

In the VPBX cabinet (Интеграции → API) the admin gives Mango the address
``https://<hub>/hooks/<name>``; Mango appends each event's path and POSTs a form with
three fields: ``vpbx_api_key``, ``sign`` and ``json`` (the event, a JSON string). The
signature is ``sha256_hex(vpbx_api_key + json + vpbx_api_salt)`` over the ``json`` field
exactly as received (not an HMAC), and ``vpbx_api_key`` must be our own.

Events (API MANGO OFFICE v1.9, §3.1):

* ``/events/call``: a call leg changes state (``Appeared``, ``Connected``, ``OnHold``,
  ``Disconnected``); ``seq`` orders the events of one leg (``call_id``) — they may
  arrive out of order;
* ``/events/summary``: the final event of the whole call (``entry_id``): create, talk
  and end times (unix times; ``talk_time`` is the moment of answer, ``0`` when nobody
  answered), ``entry_result`` (1 talked, 0 missed);
* ``/events/recording`` and ``/events/record/added``: a recording's id (the file is
  downloadable after ``record/added``).

``entry_id`` is shared by every leg of one call (IVR, queue, the employee who answered,
transfers), so it is the ``CallInfo.call_id``: all legs and the summary make ONE lead.
The summary, being final, is given the highest ``seq`` so a late leg event never
overwrites what it says; recording events the lowest, so they only fill blanks.
``dct.number`` is the call-tracking number.

Recordings: Mango gives a ``recording_id``, not a URL. Downloading needs a signed API
request (``/vpbx/queries/recording/post``) or an expiring link signed with the salt that
is off by default, so the lead keeps ``fields.mango_recording_id`` and ``call.recording_url``
stays empty.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from hub import hookimpl
from hub.connectors import CallInfo, CallSourceConfig, Connector, InboundRequest, ParsedEvent, Source
from hub.errors import AuthError, ParseError
from hub.source_auth import not_empty
from hub.source_auth import same_secret as same
from plugins.telephony import (
    as_int,
    call_event,
    form_items,
    not_a_lead,
    obj,
    text,
    unix_time,
)

#: The summary closes the call: nothing a leg event says after it may overwrite it.
SUMMARY_SEQ = 2**31 - 1
#: A recording only adds its id: as the "oldest" event it fills blanks, never overwrites
#: (CallInfo.direction always has a value, and a recording does not know it).
RECORDING_SEQ = 0
#: Paths of events that are about something else than a call's parties and times.
OTHER_EVENTS = ("events/dtmf", "events/sms", "events/record/tagged", "events/recognized/offline",
                "events/ping")


class MangoConfig(CallSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "mango"``."""

    api_key: SecretStr = Field(
        description="The VPBX's unique code (vpbx_api_key), from the cabinet: Интеграции → API.",
    )
    api_salt: SecretStr = Field(
        description="The signing key (vpbx_api_salt) shown beside it; never sent by Mango.",
    )

    @field_validator("api_key", "api_salt")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        return not_empty(value)


class MangoSource(Source[MangoConfig]):
    """Mango Office VPBX realtime events: calls, summaries and recordings of one call → one lead."""

    Config = MangoConfig
    description = "Mango Office VPBX realtime call events (sha256 sign, event paths, seq)."
    retries_non_2xx: ClassVar[bool] = True

    def verify(self, request: InboundRequest) -> None:
        """``vpbx_api_key`` is ours and ``sign`` is sha256(key + json + salt)."""
        form = _form(request)
        key = self.config.api_key.get_secret_value()
        given_key, sign, body = form.get("vpbx_api_key", ""), form.get("sign", ""), form.get("json")
        if body is None or not given_key or not sign:
            raise AuthError("missing vpbx_api_key, sign or json")
        expected = hashlib.sha256(
            (key + body + self.config.api_salt.get_secret_value()).encode("utf-8")
        ).hexdigest()
        if not (same(given_key, key) & same(sign.strip().lower(), expected)):
            raise AuthError("wrong vpbx_api_key or sign")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        path = request.path.strip("/").lower()
        form = _form(request, error=ParseError)
        try:
            data = json.loads(form.get("json", ""))
        except ValueError as exc:
            raise ParseError(f"the json field is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ParseError(f"the json field must be an object, got {type(data).__name__}")
        reader = _READERS.get(path)
        if reader is not None:
            return [reader(data, path)]
        if path in OTHER_EVENTS or path.startswith("result/"):
            return [not_a_lead(f"mango {path} is not about a call's parties")]
        raise ParseError(f"unknown Mango event path {path or '(none)'!r}; expected events/call, "
                         "events/summary, events/recording or events/record/added")


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(MangoSource)


def _form(request: InboundRequest, error: type[Exception] = AuthError) -> dict[str, str]:
    try:
        return dict(form_items(request))
    except ParseError as exc:
        raise error(f"expected Mango's form (vpbx_api_key, sign, json): {exc}") from exc


def _call(data: dict[str, Any], path: str) -> ParsedEvent:
    """``/events/call``: one leg's state; ``Connected`` means the call was answered."""
    entry, leg = text(data.get("entry_id")), text(data.get("call_id"))
    frm, to, dct = obj(data.get("from")), obj(data.get("to")), obj(data.get("dct"))
    state = (text(data.get("call_state")) or "").lower()
    seq = as_int(data.get("seq"))
    event_id = f"{path}:{leg or entry}:{seq if seq is not None else state}"
    caller_ext, callee_ext = text(frm.get("extension")), text(to.get("extension"))
    caller, callee = text(frm.get("number")), text(to.get("number"))
    if caller_ext and callee_ext:
        return not_a_lead("internal call between employees", event_id)
    call_id = entry or leg
    outbound = bool(caller_ext)
    if call_id is None and not (callee if outbound else caller):
        return not_a_lead("a call event that names neither the caller nor the call", event_id)
    line = text(to.get("line_number"))
    info = CallInfo(
        call_id=call_id or f"leg:{leg}",
        direction="outbound" if outbound else "inbound",
        from_number=caller,
        to_number=callee if outbound else (line or callee),
        started_at=unix_time(data.get("timestamp")) if state == "appeared" else None,
        answered=True if state == "connected" else None,
        tracking_number=text(dct.get("number")),
        seq=seq,
    )
    fields = {"mango_entry_id": entry}
    if state == "disconnected":
        fields["mango_disconnect_reason"] = text(data.get("disconnect_reason"))
    return call_event(info, event_id=event_id, fields=fields)


def _summary(data: dict[str, Any], path: str) -> ParsedEvent:
    """``/events/summary``: the call is over; talk time is end − answer."""
    entry = text(data.get("entry_id"))
    frm, to = obj(data.get("from")), obj(data.get("to"))
    direction = as_int(data.get("call_direction"))
    event_id = f"{path}:{entry}"
    if direction == 0:
        return not_a_lead("internal call between employees", event_id)
    outbound = direction == 2
    caller, callee = text(frm.get("number")), text(to.get("number"))
    line = text(data.get("line_number"))
    if entry is None and not (callee if outbound else caller):
        return not_a_lead("a summary that names neither the caller nor the call", event_id)
    answer_at, end_at = as_int(data.get("talk_time")) or 0, as_int(data.get("end_time")) or 0
    result = as_int(data.get("entry_result"))
    answered = result == 1 if result is not None else answer_at > 0
    talk = max(0, end_at - answer_at) if answered and answer_at and end_at else 0
    info = CallInfo(
        call_id=entry or f"summary:{caller or callee}",
        direction="outbound" if outbound else "inbound",
        from_number=(caller or line) if outbound else caller,
        to_number=callee if outbound else (line or callee),
        started_at=unix_time(data.get("create_time")),
        duration_s=talk,
        answered=answered,
        seq=SUMMARY_SEQ,
    )
    fields = {"mango_entry_id": entry,
              "mango_disconnect_reason": text(data.get("disconnect_reason"))}
    return call_event(info, event_id=event_id, fields=fields)


def _recording(data: dict[str, Any], path: str) -> ParsedEvent:
    """``/events/recording``: only a completed, saved recording adds anything."""
    rec, state = text(data.get("recording_id")), text(data.get("recording_state")) or ""
    event_id = f"{path}:{rec}:{state}:{text(data.get('seq'))}"
    code = as_int(data.get("completion_code"))
    if state.lower() != "completed" or rec is None:
        return not_a_lead(f"recording {state.lower() or 'event'}", event_id)
    if code not in (None, 1000):
        return not_a_lead(f"recording not saved (completion_code {code})", event_id)
    return _with_recording(text(data.get("entry_id")), rec, event_id)


def _record_added(data: dict[str, Any], path: str) -> ParsedEvent:
    """``/events/record/added``: the recording is in the cloud storage, downloadable now."""
    rec = text(data.get("recording_id"))
    event_id = f"{path}:{rec}"
    if rec is None:
        return not_a_lead("record/added without a recording_id", event_id)
    return _with_recording(text(data.get("entry_id")), rec, event_id)


def _with_recording(entry: str | None, recording_id: str, event_id: str) -> ParsedEvent:
    if entry is None:
        return not_a_lead("a recording that names no call", event_id)
    info = CallInfo(call_id=entry, seq=RECORDING_SEQ)
    return call_event(info, event_id=event_id,
                      fields={"mango_entry_id": entry, "mango_recording_id": recording_id})


_READERS: dict[str, Callable[[dict[str, Any], str], ParsedEvent]] = {
    "events/call": _call,
    "events/summary": _summary,
    "events/recording": _recording,
    "events/record/added": _record_added,
}
