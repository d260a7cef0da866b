"""What the call sources (``mango``, ``zadarma``, ``twilio``, ``calltouch``, ``uis``,
``roistat``) share: reading loosely typed provider values, times, tokens, and the
call draft the core merges.

Telephony providers are loose with types: Mango sends ``"seq": "1"`` in one example and
``"seq": 1`` in the next, ``"to": {}`` where a number is unknown, timestamps as strings.
These readers accept all of that and return ``None`` for anything unusable, so a plugin
never raises on a value a provider typed differently than its documentation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from hub.connectors import CallInfo, InboundRequest, LeadDraft, ParsedEvent, SourceConfig
from hub.errors import ParseError
from hub.sdk.auth import TOKEN_PARAM
from hub.sdk.sniffing import body_kind, json_object

_LOCAL_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M",
                  "%d.%m.%Y %H:%M")


def valid_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Moscow)") from exc
    return value


def text(value: Any) -> str | None:
    """A provider value as trimmed text; None for null, empty, objects and lists."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    out = str(value).strip()
    return out or None


def as_int(value: Any) -> int | None:
    """``12``, ``"12"``, ``"12.0"`` → 12; anything else → None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    raw = text(value)
    if raw is None:
        return None
    try:
        number = float(raw)
    except ValueError:
        return None
    if number != number or abs(number) > 2**62:  # NaN or absurd
        return None
    return int(number)


def obj(value: Any) -> dict[str, Any]:
    """A nested object, or an empty one when the provider sent something else."""
    return value if isinstance(value, dict) else {}


def unix_time(value: Any) -> datetime | None:
    """Unix seconds (milliseconds tolerated) as an aware UTC time; None when unusable or 0."""
    seconds = as_int(value)
    if not seconds or seconds < 0:
        return None
    if seconds > 10**11:  # milliseconds
        seconds //= 1000
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def local_time(value: Any, zone: str) -> datetime | None:
    """A provider's wall-clock time (``2024-05-01 12:30:00``, ISO, ``01.05.2024 12:30:00``
    or unix seconds) in UTC; values without an offset are read in ``zone``."""
    raw = text(value)
    if raw is None:
        return None
    if raw.isdigit():
        return unix_time(raw)
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        for fmt in _LOCAL_FORMATS:
            try:
                parsed = datetime.strptime(raw, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        tz: tzinfo = ZoneInfo(zone)
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01 in a zone east of UTC: no such UTC time
        return None


def first(data: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` that ``data`` has as non-empty text."""
    for name in names:
        value = text(data.get(name))
        if value is not None:
            return value
    return None


def call_event(
    info: CallInfo,
    *,
    event_id: str | None,
    fields: Mapping[str, Any] | None = None,
    utm: Mapping[str, str] | None = None,
    click_ids: Mapping[str, str] | None = None,
    name: str | None = None,
    page_url: str | None = None,
    referrer: str | None = None,
) -> ParsedEvent:
    """One call event as the core wants it: the caller of an inbound call in ``phones``
    (the core adds the callee of an outbound one from the call block)."""
    phones = [info.from_number] if info.direction != "outbound" and info.from_number else []
    draft = LeadDraft(
        channel="call", name=name, phones=phones, call=info,
        fields={k: v for k, v in (fields or {}).items() if v is not None},
        utm={k: v for k, v in (utm or {}).items() if v},
        click_ids={k: v for k, v in (click_ids or {}).items() if v},
        page_url=page_url, referrer=referrer,
    )
    return ParsedEvent(event_id=event_id, lead=draft)


def not_a_lead(reason: str, event_id: str | None = None) -> ParsedEvent:
    return ParsedEvent(event_id=event_id, lead=None, reason=reason)


def form_items(request: InboundRequest) -> list[tuple[str, str]]:
    """``request.form_items()`` with every failure a ``ParseError`` (a multipart part may
    name a charset Python does not know, which the core lets through as ``LookupError``)."""
    try:
        return request.form_items()
    except ParseError:
        raise
    except (ValueError, LookupError) as exc:
        raise ParseError(f"unreadable form body: {exc}") from exc


def payload(request: InboundRequest, *, skip: tuple[str, ...] = (TOKEN_PARAM,)) -> dict[str, Any]:
    """A webhook's data as one dict: a JSON object, a form, or (for GET) the query.

    Query parameters other than ``skip`` fill names the body lacks. Raises ``ParseError``
    for any other body.
    """
    data: dict[str, Any]
    kind = body_kind(request)
    if not request.body.strip():
        data = {}
    elif kind == "json":
        data = dict(json_object(request))
    elif kind == "form":
        data = dict(form_items(request))
    else:
        ctype = request.content_type
        raise ParseError(f"expected JSON, a form or query parameters, got {ctype or 'no content type'}")
    for key, value in request.query:
        if key not in skip and key not in data:
            data[key] = value
    return data


UTM_NAMES = ("source", "medium", "campaign", "term", "content")


def utm_tags(data: Mapping[str, Any], used: set[str],
             fallbacks: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """``utm_*`` tags of a call-tracking payload (``utm_source`` or ``utmSource``), else the
    service's own attribution names in ``fallbacks`` (Calltouch ``source``, ``medium``)."""
    tags: dict[str, str] = {}
    for name in UTM_NAMES:
        names = (f"utm_{name}", f"utm{name.capitalize()}", *(fallbacks or {}).get(name, ()))
        for key in names:
            if key in data:
                used.add(key)
                value = text(data.get(key))
                if value and name not in tags:
                    tags[name] = value
    return tags


def rest_fields(data: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    """What the payload says beyond the names a plugin read: kept in ``lead.fields``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in used or key == TOKEN_PARAM or value in (None, "", [], {}):
            continue
        out[str(key)] = value
    return out


def flag(value: Any) -> bool | None:
    """``true``/``1``/``yes`` → True, ``false``/``0``/``no`` → False, else None."""
    if isinstance(value, bool):
        return value
    raw = (text(value) or "").lower()
    if raw in ("true", "1", "yes", "y", "да"):
        return True
    if raw in ("false", "0", "no", "n", "нет"):
        return False
    return None


class TrackingConfig(SourceConfig):
    """Settings shared by call-tracking services that do not sign their webhooks."""

    token: SecretStr = Field(
        description="Required secret the service must send as ?token= in the webhook URL "
        "(or header X-Leadhub-Token); compared in constant time.",
    )
    timezone: str = Field(
        default="Europe/Moscow",
        description="Time zone of the account: dates the service writes without one are read in it.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return valid_timezone(value)


def content_id(data: Mapping[str, Any]) -> str:
    """An event id for a provider that sends none: the digest of what it said.

    The core's own fallback hashes the body, and a GET webhook (Calltouch, UIS) has none:
    every GET would look like a retry of the first. The same data is the same event.
    """
    canon = json.dumps({str(k): v for k, v in data.items() if k != TOKEN_PARAM},
                       sort_keys=True, ensure_ascii=False, default=str)
    return "data:" + hashlib.sha256(canon.encode("utf-8")).hexdigest()
