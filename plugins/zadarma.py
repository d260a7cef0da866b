"""``zadarma``: Zadarma (and Novofon) PBX call notifications.

In the Zadarma cabinet (Settings → Integrations and API → notifications) the admin
enters ``https://<hub>/hooks/<name>``. Zadarma first checks the address with
``GET ?zd_echo=<random>`` and wants exactly that value back; then it POSTs a form per
event (``NOTIFY_START``, ``NOTIFY_INTERNAL``, ``NOTIFY_ANSWER``, ``NOTIFY_END``,
``NOTIFY_OUT_START``, ``NOTIFY_OUT_END``, ``NOTIFY_RECORD``, ...).

Each event is signed in the ``Signature`` header: ``base64(hex(HMAC-SHA1(secret, S)))``
— base64 of the 40-character lower-case hex digest, not of the raw digest — where ``S``
concatenates a few fields that depend on the event (official PHP SDK,
``lib/Webhook/Notify*.php``); the rest of the body is not signed.

``pbx_call_id`` stays the same through the whole call (IVR, extensions, recording), so it
is the ``CallInfo.call_id``. Zadarma gives no sequence number; the event types have a
natural order (start < internal < answer < end) used as ``seq``. ``call_start``
is the account's wall-clock time: set ``timezone`` to the account's. A recording is an id
(``call_id_with_rec``), downloadable through Zadarma's signed API only, so it is kept in
``fields.zadarma_call_id_with_rec``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from pydantic import Field, SecretStr, field_validator

from hub.sdk import (
    Accepted,
    AuthError,
    CallInfo,
    CallSourceConfig,
    Connector,
    HookResponse,
    InboundRequest,
    ParsedEvent,
    ParseError,
    Source,
    expected_secret,
    hookimpl,
)
from hub.sdk import (
    same_secret as same,
)
from hub.sdk.telephony import as_int, call_event, form_items, local_time, not_a_lead, text, valid_timezone

ECHO_PARAM = "zd_echo"
SIGNATURE_HEADER = "signature"
#: The fields each event signs, concatenated in this order (PHP SDK getSignatureString).
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_IVR": ("caller_id", "called_did", "call_start"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
    "NOTIFY_SMS": ("result",),
}
#: Order of the call events, used as ``CallInfo.seq``. NOTIFY_RECORD only adds an id and
#: does not know the direction: as the "oldest" event it fills blanks, never overwrites.
EVENT_SEQ = {"NOTIFY_START": 1, "NOTIFY_OUT_START": 1, "NOTIFY_INTERNAL": 2, "NOTIFY_ANSWER": 3,
             "NOTIFY_END": 4, "NOTIFY_OUT_END": 4, "NOTIFY_RECORD": 0}
#: A destination this short is an extension: an internal call, not a customer.
MIN_EXTERNAL_DIGITS = 6


class ZadarmaConfig(CallSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "zadarma"``."""

    secret: SecretStr = Field(
        description="The API secret (Settings → Integrations and API → Keys and API); signs events.",
    )
    timezone: str = Field(
        default="Europe/Moscow",
        description="Time zone of the Zadarma account; call_start is written in it (the "
        "default matches the other Russian telephony sources; set yours).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return valid_timezone(value)


class ZadarmaSource(Source[ZadarmaConfig]):
    """Zadarma/Novofon PBX notifications: every event of one call (pbx_call_id) → one lead."""

    Config = ZadarmaConfig
    description = "Zadarma / Novofon PBX call notifications (zd_echo, base64-of-hex HMAC-SHA1)."
    retries_non_2xx: ClassVar[bool] = True
    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")

    def handshake(self, request: InboundRequest) -> HookResponse | None:
        """``?zd_echo=X`` (the URL check when the address is saved) → ``X`` as the body."""
        echo = request.query_dict().get(ECHO_PARAM)
        if echo is None:
            return None
        return HookResponse(200, echo, media_type="text/plain")

    def verify(self, request: InboundRequest) -> None:
        form = _form(request, AuthError)
        given = request.headers.get(SIGNATURE_HEADER, "").strip()
        if not given:
            raise AuthError("missing Signature header")
        event = form.get("event", "").strip().upper()
        known = SIGNED_FIELDS.get(event)
        # An event the SDK does not list yet: accept it when one known formula matches.
        candidates = [known] if known else list(dict.fromkeys(SIGNED_FIELDS.values()))
        key = expected_secret(self.config.secret, "secret").encode("utf-8")
        ok = False
        for names in candidates:
            ok |= same(given, signature(key, "".join(form.get(n, "") for n in names)))
        if not ok:
            raise AuthError("wrong Signature")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        form = _form(request, ParseError)
        event = form.get("event", "").strip().upper()
        if not event:
            raise ParseError("a Zadarma notification without an event field")
        if event not in EVENT_SEQ:
            return [not_a_lead(f"zadarma {event} is not a call event",
                               f"{form.get('pbx_call_id', '')}:{event}")]
        return [self._call(event, form)]

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        # NOTIFY_START's answer may be a routing command (JSON): an empty body changes nothing.
        return HookResponse(200, b"", media_type="text/plain")

    def _call(self, event: str, form: Mapping[str, str]) -> ParsedEvent:
        pbx = text(form.get("pbx_call_id"))
        internal = text(form.get("internal"))
        event_id = f"{pbx}:{event}"
        if event in ("NOTIFY_INTERNAL", "NOTIFY_ANSWER") and internal:
            event_id += f":{internal}"  # one per extension that rings
        if event == "NOTIFY_RECORD":
            event_id += f":{form.get('call_id_with_rec', '')}"
        outbound = event.startswith("NOTIFY_OUT_")
        caller = text(form.get("caller_id"))
        callee = text(form.get("destination")) if outbound else text(form.get("called_did"))
        if outbound and callee and sum(c.isdigit() for c in callee) < MIN_EXTERNAL_DIGITS:
            return not_a_lead("internal call to an extension", event_id)
        if pbx is None and not (callee if outbound else caller):
            return not_a_lead("a call event that names neither the caller nor the call", event_id)
        disposition = (text(form.get("disposition")) or "").lower()
        ended = event in ("NOTIFY_END", "NOTIFY_OUT_END")
        answered: bool | None = None
        if event == "NOTIFY_ANSWER":
            answered = True
        elif ended:
            answered = disposition == "answered"
        info = CallInfo(
            call_id=pbx or f"{event}:{caller or callee}",
            direction="outbound" if outbound else "inbound",
            from_number=caller,
            to_number=callee if event != "NOTIFY_ANSWER" else None,
            started_at=local_time(form.get("call_start"), self.config.timezone),
            duration_s=(as_int(form.get("duration")) or 0) if answered else (0 if ended else None),
            answered=answered,
            seq=EVENT_SEQ[event],
        )
        fields: dict[str, Any] = {}
        if ended:
            fields["zadarma_disposition"] = disposition or None
        recording = text(form.get("call_id_with_rec"))
        if recording and (event == "NOTIFY_RECORD" or text(form.get("is_recorded")) == "1"):
            fields["zadarma_call_id_with_rec"] = recording
        return call_event(info, event_id=event_id, fields=fields)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(ZadarmaSource)


def signature(key: bytes, signed: str) -> str:
    """Zadarma's signature: base64 of the HEX digest of HMAC-SHA1 (as PHP's
    ``base64_encode(hash_hmac('sha1', S, SECRET))``)."""
    digest = hmac.new(key, signed.encode("utf-8"), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def _form(request: InboundRequest, error: type[Exception]) -> dict[str, str]:
    try:
        return dict(form_items(request))
    except ParseError as exc:
        raise error(f"expected Zadarma's form body: {exc}") from exc
