"""``twilio``: Twilio Voice — the incoming-call webhook, call status callbacks and
recording status callbacks.

Give Twilio ``https://<hub>/hooks/<name>`` as a number's Voice URL (A call comes in)
and/or its Call status changes URL, and the recording status callback if calls are
recorded (any path may be appended: ``/hooks/<name>/status`` is the same source).

Every request carries ``X-Twilio-Signature`` = ``base64(HMAC-SHA1(auth_token, URL +
every POST parameter as key+value, sorted by key))``, where URL is the full URL Twilio
called, query included. Behind a proxy the hub does not see that URL, so set
``public_url`` to the address that stands for ``/hooks/<name>``: the signed URL is
``public_url`` + the rest of the path + the query string. Like Twilio's own libraries,
the URL is also tried with and without the scheme's default port. A GET webhook signs the
URL only; a JSON body signs the URL with its ``bodySHA256`` query parameter.

The Voice URL wants TwiML back: ``forward_to`` answers ``<Dial>`` to that number,
``voice_twiml`` answers a document of your own; with neither, the answer is an empty
``<Response/>`` (Twilio then hangs up — fine when the hub only receives status
callbacks). Status and recording callbacks get an empty ``<Response/>``.

With ``forward_to``, Twilio answers the call itself to run the ``<Dial>``, so the call's
own status says nothing of the sales phone: it is ``in-progress`` at once and
``completed`` however the dial ended, and its ``CallDuration`` counts the ringing. So the
``<Dial>`` names an ``action`` (``<hook URL>/dial``; ``public_url`` + ``/dial`` when set),
which Twilio calls when the dial ends with ``DialCallStatus`` (``completed``/``answered``
= picked up; ``busy``, ``no-answer``, ``failed``, ``canceled``) and ``DialCallDuration``
(twilio.com/docs/voice/twiml/dial, "action"): those give the lead's ``answered`` and talk
time, and the call's own ``in-progress``/``completed`` give neither. The answer to the
action is an empty ``<Response/>``: the call ends.

``CallSid`` is the call id. A ``<Dial>`` leg (``Direction=outbound-dial``) reports on the
call it belongs to (``ParentCallSid``): its answer and talk time are the call's. The
status orders events (queued < ringing < in-progress < final) as ``seq``.
``I-Twilio-Idempotency-Token`` identifies an event across Twilio's retries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from pydantic import Field, SecretStr

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
from hub.sdk.telephony import as_int, call_event, form_items, not_a_lead, text

SIGNATURE_HEADER = "x-twilio-signature"
IDEMPOTENCY_HEADER = "i-twilio-idempotency-token"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
STATUS_SEQ = {"queued": 0, "initiated": 0, "ringing": 1, "in-progress": 2, "completed": 3,
              "busy": 3, "no-answer": 3, "failed": 3, "canceled": 3}
FINAL = ("completed", "busy", "no-answer", "failed", "canceled")
_DEFAULT_PORTS = {"https": 443, "http": 80}


class TwilioConfig(CallSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "twilio"``."""

    auth_token: SecretStr = Field(
        description="The account's Auth Token (Console → Account info); Twilio signs with it.",
    )
    forward_to: str | None = Field(
        default=None,
        description="Answer the Voice URL with <Dial> to this number (the sales phone).",
    )
    voice_twiml: str | None = Field(
        default=None,
        description="Answer the Voice URL with this TwiML document instead (wins over forward_to).",
    )


class TwilioSource(Source[TwilioConfig]):
    """Twilio Voice webhooks: the incoming call, its status callbacks and its recording → one lead."""

    Config = TwilioConfig
    description = "Twilio Voice: incoming-call webhook (TwiML), status and recording callbacks."
    methods: ClassVar[tuple[str, ...]] = ("POST", "GET")
    kept_headers: ClassVar[tuple[str, ...]] = ("x-twilio-signature", IDEMPOTENCY_HEADER)

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get(SIGNATURE_HEADER, "").strip()
        if not given:
            raise AuthError("missing X-Twilio-Signature")
        params: list[tuple[str, str]] = []
        if request.method == "POST" and request.content_type != "application/json":
            try:
                params = form_items(request)
            except ParseError as exc:
                raise AuthError(f"unsigned body: {exc}") from exc
        elif request.body:
            body_hash = dict(_query_pairs(self._signed_url(request))).get("bodySHA256", "")
            if not same(body_hash.lower(), hashlib.sha256(request.body).hexdigest()):
                raise AuthError("bodySHA256 does not match the body")
        key = expected_secret(self.config.auth_token, "auth_token")
        ok = False
        for url in url_variants(self._signed_url(request)):
            ok |= same(given, signature(key, url, params))
        if not ok:
            raise AuthError("wrong X-Twilio-Signature (is public_url the address Twilio calls?)")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        params = _params(request)
        event_id = request.headers.get(IDEMPOTENCY_HEADER, "").strip() or None
        sid = text(params.get("CallSid"))
        recording = text(params.get("RecordingSid")) or text(params.get("RecordingUrl"))
        if recording and (text(params.get("RecordingStatus")) or not text(params.get("CallStatus"))):
            return [_recording(params, sid, event_id or _key(request, params, "recording"))]
        status = (text(params.get("CallStatus")) or "").lower()
        dial = (text(params.get("DialCallStatus")) or "").lower()
        event_id = event_id or _key(request, params, f"dial-{dial}" if dial else status)
        if sid is None:
            if text(params.get("MessageSid")):
                return [not_a_lead("a message, not a call", event_id)]
            return [not_a_lead("a Twilio request without a CallSid", event_id)]
        if dial:
            return [_dial_ended(params, sid, dial, event_id)]
        return [_call(params, sid, status, event_id, forwarded=self._forwards())]

    def _forwards(self) -> bool:
        """The hub answers calls with its own ``<Dial>`` (module doc)."""
        return bool(self.config.forward_to) and not self.config.voice_twiml

    def respond_quarantined(self, request: InboundRequest, reason: str) -> HookResponse:
        """TwiML, as for any other call: a 422 would make Twilio play its "application
        error" message to the caller (the request is stored either way)."""
        return self.respond(request, Accepted(lead_ids=[]))

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        try:
            params = _params(request)
        except ParseError:
            params = {}
        twiml = EMPTY_TWIML
        if _is_voice_webhook(params):
            if self.config.voice_twiml:
                twiml = self.config.voice_twiml
            elif self.config.forward_to:
                action = escape(self._dial_action(request), {'"': "&quot;"})
                twiml = ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                         f'<Dial action="{action}">{escape(self.config.forward_to)}</Dial>'
                         "</Response>")
        return HookResponse(200, twiml, media_type="text/xml")

    def _dial_action(self, request: InboundRequest) -> str:
        """Where Twilio reports how the ``<Dial>`` ended: ``/dial`` under this source.
        Relative to the URL Twilio called when there is no ``public_url`` (``action`` takes
        a "relative or absolute URL", twilio.com/docs/voice/twiml/dial): ``<name>/dial``
        from ``/hooks/<name>``, ``dial`` from ``/hooks/<name>/x``."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/") + "/dial"
        return "dial" if request.path else f"{self.context.name}/dial"

    def _signed_url(self, request: InboundRequest) -> str:
        """The URL Twilio signed: ``public_url`` + rest of the path + query, else the URL seen."""
        base = self.config.public_url
        if not base:
            return request.url
        url = base.rstrip("/") + (f"/{request.path}" if request.path else "")
        query = request.url.partition("?")[2].partition("#")[0]
        return f"{url}?{query}" if query else url


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(TwilioSource)


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature`` of a request: URL + sorted key/value pairs."""
    data = url
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        grouped.setdefault(key, []).append(value)
    for key in sorted(grouped):
        for value in sorted(grouped[key]):
            data += key + value
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> list[str]:
    """The URL as given, with the default port added, and with it removed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL Twilio could have called: only the exact string can match
        return [url]
    default = _DEFAULT_PORTS.get(parts.scheme)
    host = parts.hostname or ""
    if default is None or not host:
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    without = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    if port not in (None, default):
        return [url]
    return list(dict.fromkeys([url, with_port, without]))


def _query_pairs(url: str) -> list[tuple[str, str]]:
    return parse_qsl(url.partition("?")[2].partition("#")[0], keep_blank_values=True)


def _params(request: InboundRequest) -> dict[str, str]:
    """Twilio's parameters: the form body of a POST, the query of a GET."""
    if request.method == "GET":
        return dict(request.query)
    if request.content_type == "application/json":
        data = request.json()
        if not isinstance(data, dict):
            raise ParseError("expected a JSON object")
        return {str(k): str(v) for k, v in data.items() if v is not None}
    return dict(form_items(request))


def _key(request: InboundRequest, params: Mapping[str, str], what: str) -> str:
    sid = params.get("CallSid", "")
    extra = params.get("RecordingSid", "") if what == "recording" else ""
    return f"{request.path}:{sid}:{what}:{extra}"


def _is_voice_webhook(params: Mapping[str, str]) -> bool:
    """The "a call comes in" request (wants TwiML), not a status, recording or ``<Dial>``
    action callback (that one answered with ``<Dial>`` again would dial a second time)."""
    return bool(params.get("CallSid")) and not params.get("CallbackSource") and not (
        params.get("RecordingSid") or params.get("RecordingUrl") or params.get("DialCallStatus")
    ) and params.get("CallStatus", "").lower() not in FINAL


def _dial_ended(params: Mapping[str, str], sid: str, dial: str, event_id: str) -> ParsedEvent:
    """The ``<Dial>`` action callback: whether the sales phone picked up, and the talk time."""
    answered = dial in ("completed", "answered")
    talk = as_int(params.get("DialCallDuration"))
    info = CallInfo(call_id=sid, answered=answered,
                    duration_s=(talk or 0) if answered else 0, seq=STATUS_SEQ["completed"])
    return call_event(info, event_id=event_id, fields={"twilio_dial_status": dial})


def _call(params: Mapping[str, str], sid: str, status: str, event_id: str,
          forwarded: bool = False) -> ParsedEvent:
    direction = (text(params.get("Direction")) or "inbound").lower()
    parent = text(params.get("ParentCallSid"))
    final = status in FINAL
    answered: bool | None = None
    if status in ("in-progress", "completed"):
        answered = True
    elif final:
        answered = False
    duration = (as_int(params.get("CallDuration")) or 0) if final else None
    when = _rfc2822(params.get("Timestamp"))
    started = when if status in ("queued", "initiated", "ringing") else None
    if final and when is not None and duration is not None:
        started = when - timedelta(seconds=duration)  # the callback comes at the end
    if forwarded and not direction.startswith("outbound") and answered:
        # Twilio itself answered, to run our <Dial>: the action callback tells (module doc)
        answered, duration = None, None
    seq = STATUS_SEQ.get(status)
    if direction == "outbound-dial" and parent:
        # A <Dial> leg: whether the sales phone picked up, and the talk time, of the parent call.
        info = CallInfo(call_id=parent, answered=answered, duration_s=duration if answered else None,
                        seq=seq)
        return call_event(info, event_id=event_id)
    outbound = direction.startswith("outbound")
    info = CallInfo(
        call_id=sid,
        direction="outbound" if outbound else "inbound",
        from_number=text(params.get("From")) or text(params.get("Caller")),
        to_number=text(params.get("To")) or text(params.get("Called")),
        started_at=started,
        duration_s=duration,
        answered=answered,
        recording_url=text(params.get("RecordingUrl")),
        seq=seq,
    )
    fields = {"twilio_call_status": status or None}
    name = text(params.get("CallerName")) if not outbound else None
    return call_event(info, event_id=event_id, fields=fields, name=name)


def _recording(params: Mapping[str, str], sid: str | None, event_id: str) -> ParsedEvent:
    status = (text(params.get("RecordingStatus")) or "completed").lower()
    url = text(params.get("RecordingUrl"))
    if sid is None:
        return not_a_lead("a recording that names no call", event_id)
    if status != "completed" or url is None:
        return not_a_lead(f"recording {status}", event_id)
    # seq 0: the callback does not know the direction, so it must not overwrite it
    return call_event(CallInfo(call_id=sid, recording_url=url, seq=0), event_id=event_id,
                      fields={"twilio_recording_sid": text(params.get("RecordingSid"))})


def _rfc2822(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
