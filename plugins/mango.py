"""``mango``: Mango Office virtual PBX, "API Realtime" events.

In the VPBX cabinet (Интеграции → API) the admin gives Mango the address
``https://<hub>/hooks/<name>``; Mango appends each event's path and POSTs a form with
three fields: ``vpbx_api_key``, ``sign`` and ``json`` (the event, a JSON string). The
signature is ``sha256_hex(vpbx_api_key + json + vpbx_api_salt)`` over the ``json`` field
exactly as received (not an HMAC), and ``vpbx_api_key`` must be our own.

Events (API MANGO OFFICE v1.9, §3.1,
https://www.mango-office.ru/upload/api/MangoOffice_VPBX_API_v1.9.pdf):

* ``/events/call``: a call leg changes state (``Appeared``, ``Connected``, ``OnHold``,
  ``Disconnected``) at a ``location`` (``ivr``, ``queue``, ``abonent``); ``seq`` orders
  the events of ONE leg (``call_id``) — they may arrive out of order;
* ``/events/summary``: the final event of the whole call (``entry_id``): ``create_time``,
  ``forward_time``, ``talk_time`` and ``end_time``, ``entry_result``;
* ``/events/recording`` and ``/events/record/added``: a recording's id (the file is
  downloadable after ``record/added``).

``entry_id`` is shared by every leg of one call (IVR, queue, the employee who answered,
transfers), so it is the ``CallInfo.call_id``: all legs and the summary make ONE lead.
``dct.number`` is the call-tracking number.

**Answered.** ``talk_time`` is the unix time the conversation began, ``0`` when there was
none; ``end_time`` the unix time the call ended. So a call was answered iff
``talk_time > 0``, and its talk time is ``end_time − talk_time`` seconds. ``entry_result``
is NOT "answered": a call that ends in the IVR (a menu or a recorded message, nobody
picked up) comes with ``entry_result = 1`` and ``talk_time = 0``. Likewise a leg that is
``Connected`` in the ``ivr`` (the IVR picked up) or ``queue`` is no conversation with a
person: only a ``Connected`` leg at ``abonent`` (or without a location) answers the call.
Integrations in the wild agree: the ``mango-vpbx`` library (github.com/Bobrovskih/mango-vpbx,
test/realtime.spec.js) filters "only successful incoming calls" as ``talk_time > 0``, with
a summary example where ``talk_time`` equals ``create_time`` (1516454940, a timestamp);
a NestJS call-centre integration found by code search computes the duration as
``end_time - talk_time`` ("talk_time и end_time - это Unix timestamps в секундах") — but
still counts ``entry_result === 1`` as answered, the mistake corrected here.

**Times.** The manual labels times "UTC+3" (Moscow), but the event times are unix
timestamps — seconds since the epoch, which have no time zone (the label can at most
mean that Mango's cabinet shows them in Moscow time). Integrations read them as plain
epoch seconds: the NestJS one above as ``new Date(create_time * 1000)``,
github.com/3dcafe/mango-office-client (Extensions/DateTimeHelper.cs) from the UTC epoch;
none shifts by three hours. A
recording-link example even signs ``Carbon::now()->addDays(1)->timestamp`` where the
manual says "timestamp (часовой пояс UTC+3)". So a number is read as a unix time; a
wall-clock string (not seen from Mango, accepted for safety) is Moscow time
(``Europe/Moscow``, UTC+3 all year since 2014). ``started_at`` is always UTC-aware.

**Order of events.** The core merges all events of one ``call_id`` (here the entry) and
keeps one high-water ``seq`` per call: a value from an event with a lower ``seq`` than one
already applied only fills blanks (``hub/engine/conversations.py``). Mango's ``seq`` counts the
events of one leg, so passing it would compare seq 3 of the IVR leg with seq 1 of the
employee's leg — meaningless, and it would keep whichever leg came first. ``None`` is no
better: an event without ``seq`` always overwrites, even the summary. Instead every leg
event gets ``LEG_SEQ_BASE − timestamp``: one order valid across legs, in which an EARLIER
event ranks higher. The values a leg event sets are the call's beginning as the customer
made it (direction, caller, number dialled, tracking number, and ``started_at`` from an
``Appeared``), so the earliest event must win: the IVR leg's ``Appeared`` gives
``started_at`` even when the employee's leg ``Appeared`` five seconds later arrives after
it, and a later transfer leg never rewrites who called whom. ``answered`` needs no order
(the core keeps it true once true). Within one leg this is the reverse of Mango's ``seq``,
which is what we want for these values (the leg's first state). The summary is final and
outranks every leg event (``SUMMARY_SEQ``); recordings rank lowest and only fill blanks.

Recordings: Mango gives a ``recording_id``, not a URL. Downloading needs a signed API
request (``/vpbx/queries/recording/post``) or an expiring link signed with the salt that
is off by default, so the lead keeps ``fields.mango_recording_id`` and ``call.recording_url``
stays empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from hub.sdk import (
    AuthError,
    CallInfo,
    CallSourceConfig,
    Connector,
    InboundRequest,
    ParsedEvent,
    ParseError,
    Source,
    expected_secret,
    hookimpl,
    loads_json,
)
from hub.sdk import (
    same_secret as same,
)
from hub.sdk.telephony import as_int, call_event, form_items, local_time, not_a_lead, obj, text

#: The summary closes the call: nothing a leg event says after it may overwrite it.
#: (The store keeps ``seq`` in a 32-bit column.)
SUMMARY_SEQ = 2**31 - 1
#: A leg event at unix time ``t`` gets ``LEG_SEQ_BASE - t``: the earlier event ranks higher
#: in every leg of the entry, and every leg event ranks below the summary (module doc).
LEG_SEQ_BASE = SUMMARY_SEQ - 1
#: A leg event without a usable timestamp: above a recording, below every timed leg event,
#: so it only fills blanks once anything else has been applied.
UNTIMED_LEG_SEQ = 1
#: A recording only adds its id: as the "oldest" event it fills blanks, never overwrites
#: (CallInfo.direction always has a value, and a recording does not know it).
RECORDING_SEQ = 0
#: Mango's wall clock (the manual's "UTC+3"); only for times given as strings.
MANGO_ZONE = "Europe/Moscow"
#: Where a Connected leg is a conversation with a person (not the IVR, not the queue).
TALKING_LOCATIONS = ("abonent", "")
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


class MangoSource(Source[MangoConfig]):
    """Mango Office VPBX realtime events: calls, summaries and recordings of one call → one lead."""

    Config = MangoConfig
    description = "Mango Office VPBX realtime call events (sha256 sign, event paths, seq)."
    retries_non_2xx: ClassVar[bool] = True
    #: The VPBX's unique code: half of the credentials of Mango's API; never stored.
    secret_fields: ClassVar[tuple[str, ...]] = ("vpbx_api_key",)

    def verify(self, request: InboundRequest) -> None:
        """``vpbx_api_key`` is ours and ``sign`` is sha256(key + json + salt)."""
        form = _form(request)
        key = expected_secret(self.config.api_key, "api_key")
        salt = expected_secret(self.config.api_salt, "api_salt")
        given_key, sign, body = form.get("vpbx_api_key", ""), form.get("sign", ""), form.get("json")
        if body is None or not given_key or not sign:
            raise AuthError("missing vpbx_api_key, sign or json")
        expected = hashlib.sha256(
            (key + body + salt).encode("utf-8")
        ).hexdigest()
        if not (same(given_key, key) & same(sign.strip().lower(), expected)):
            raise AuthError("wrong vpbx_api_key or sign")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        path = request.path.strip("/").lower()
        form = _form(request, error=ParseError)
        try:
            data = loads_json(form.get("json", ""))
        except ParseError as exc:
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
    location = (text(data.get("location")) or "").lower()
    seq = as_int(data.get("seq"))  # per leg: only for the event id (module doc, "Order")
    moment = mango_time(data.get("timestamp"))
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
        started_at=moment if state == "appeared" else None,
        # the IVR or the queue picking up is no conversation (module doc, "Answered")
        answered=True if state == "connected" and location in TALKING_LOCATIONS else None,
        tracking_number=text(dct.get("number")),
        seq=leg_seq(moment),
    )
    fields = {"mango_entry_id": entry}
    if state == "disconnected":
        fields["mango_disconnect_reason"] = text(data.get("disconnect_reason"))
    return call_event(info, event_id=event_id, fields=fields)


def _summary(data: dict[str, Any], path: str) -> ParsedEvent:
    """``/events/summary``: the call is over; answered iff ``talk_time > 0``, talk time is
    ``end_time − talk_time`` (both unix times; module doc, "Answered")."""
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
    created = mango_time(data.get("create_time"))
    answer_at, end_at = mango_time(data.get("talk_time")), mango_time(data.get("end_time"))
    # entry_result is 1 for a call that ended in the IVR too: it does not say "answered"
    answered = answer_at is not None
    talk: int | None = 0
    if answer_at is not None:
        talk = None  # answered, but how long is unknown unless the times make sense
        if end_at is not None and end_at >= answer_at and (created is None or answer_at >= created):
            talk = int((end_at - answer_at).total_seconds())
    info = CallInfo(
        call_id=entry or f"summary:{caller or callee}",
        direction="outbound" if outbound else "inbound",
        from_number=(caller or line) if outbound else caller,
        to_number=callee if outbound else (line or callee),
        started_at=created,
        duration_s=talk,
        answered=answered,
        seq=SUMMARY_SEQ,
    )
    fields = {"mango_entry_id": entry,
              "mango_disconnect_reason": text(data.get("disconnect_reason"))}
    return call_event(info, event_id=event_id, fields=fields)


def mango_time(value: Any) -> datetime | None:
    """A Mango time as UTC: unix seconds (what Mango sends; zone-free), or a wall-clock
    string read as Moscow time (the manual's "UTC+3"); None for 0, empty or garbage."""
    return local_time(value, MANGO_ZONE)


def leg_seq(moment: datetime | None) -> int:
    """The ``CallInfo.seq`` of a leg event: earlier ranks higher, across all legs of the
    entry; always below ``SUMMARY_SEQ`` and above ``RECORDING_SEQ`` (module doc, "Order").
    The store's 32-bit ``seq`` bounds this to times before 2038; later, leg events tie."""
    if moment is None:
        return UNTIMED_LEG_SEQ
    return max(UNTIMED_LEG_SEQ + 1, LEG_SEQ_BASE - int(moment.timestamp()))


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
