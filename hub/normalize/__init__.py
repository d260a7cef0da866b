"""Normalization: a plugin's ``LeadDraft`` becomes the contract's ``Lead``. Pure, no I/O.

Every source goes through ``normalize_lead``, so phones, emails, names and UTM tags are
cleaned the same way whoever sent them, and plugins only read their payloads. It never
raises on what a visitor typed: anything it cannot use is kept in ``fields`` as written
(``phone_raw``, ``email_raw``, ``call_from_raw`` ...), never dropped. NUL characters are
removed from every text it produces, because PostgreSQL refuses them in JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from hub.connectors import CallInfo, LeadDraft
from hub.models import CHECKED_WHEN_STORED, Call, ClickIds, Contact, Lead, Messenger, Utm
from hub.normalize.emails import find_emails, normalize_email
from hub.normalize.fields import add_field, draft_from_fields
from hub.normalize.masking import mask_email, mask_phone, mask_text
from hub.normalize.phones import find_phones, normalize_phone
from hub.normalize.utm import classify, explicit_pairs, extract_marks

__all__ = [
    "draft_from_fields", "find_emails", "find_phones", "mask_email", "mask_phone", "mask_text",
    "normalize_email", "normalize_lead", "normalize_phone",
]

_SPACES = re.compile(r"\s+")
#: A phone or email field longer than this is not a list of a few contacts: searching it
#: would only cost time (megabytes of text), so it is kept as written instead.
_SEARCH_LIMIT = 1000


def normalize_lead(
    draft: LeadDraft, *, lead_id: str, source: str, received_at: datetime, default_region: str,
    checked_when_stored: bool = False,
) -> Lead:
    """Build the contract ``Lead`` (status ``received``) from what a source read.

    For a call, the caller (the callee of an outbound call) joins ``contact.phones``:
    telephony plugins need not repeat it, and a lead is never quarantined for lacking
    a number its own call block names. ``checked_when_stored``: the lone-surrogate check
    waits for ``Lead.stored_json`` (``hub/models.py``), for a caller that encodes the
    lead only through it.
    """
    fields: dict[str, Any] = {}
    for key, value in draft.fields.items():
        add_field(fields, _no_nul(str(key)), _clean_any(value))
    call = _call(draft.call, default_region, fields)
    phones = _phones(draft.phones, default_region, fields)
    party = _call_party(call)
    if party and party not in phones:
        phones.append(party)
    marks = extract_marks(
        fields=fields, page_url=draft.page_url, referrer=draft.referrer, cookies=draft.cookies,
        explicit_utm=draft.utm, explicit_click_ids=draft.click_ids,
    )
    for name in marks.used_fields:
        fields.pop(name, None)
    for name, value in explicit_pairs(draft.utm, draft.click_ids):
        if classify(name) is None and (text := clean_multiline(value)):
            add_field(fields, name, text)  # an unknown tag a plugin set: kept, not lost
    return Lead.model_validate(dict(
        id=lead_id,
        source=source,
        channel=draft.channel,
        received_at=received_at,
        contact=Contact(
            name=clean_line(draft.name),
            phones=phones,
            emails=_emails(draft.emails, fields),
            messengers=_messengers(draft.messengers),
        ),
        company=clean_line(draft.company),
        message=clean_multiline(draft.message),
        product=clean_line(draft.product),
        utm=Utm.model_validate(marks.utm),
        click_ids=ClickIds.model_validate(marks.click_ids),
        page_url=clean_line(draft.page_url),
        referrer=clean_line(draft.referrer),
        call=call,
        fields=fields,
        status="received",
    ), context=CHECKED_WHEN_STORED if checked_when_stored else None)


def clean_line(value: str | None) -> str | None:
    """One-line text: NULs removed, whitespace runs collapsed to a space; None when empty."""
    if value is None:
        return None
    text = _SPACES.sub(" ", _no_nul(str(value))).strip()
    return text or None


def clean_multiline(value: str | None) -> str | None:
    """Free text: NULs removed, line ends made ``\\n``, trimmed; None when empty."""
    if value is None:
        return None
    text = _no_nul(str(value)).replace("\r\n", "\n").replace("\r", "\n").strip()
    return text or None


def _no_nul(text: str) -> str:
    return text.replace("\x00", "")


def _clean_any(value: Any) -> Any:
    """Strip NULs from strings inside a ``fields`` value of any JSON shape."""
    if isinstance(value, str):
        return _no_nul(value)
    if isinstance(value, list):
        return [_clean_any(item) for item in value]
    if isinstance(value, dict):
        return {_no_nul(str(k)): _clean_any(v) for k, v in value.items()}
    return value


def _call_party(call: Call | None) -> str | None:
    """The person on the other end: the caller of an inbound call, the callee of an outbound."""
    if call is None:
        return None
    return call.from_ if call.direction == "inbound" else call.to


def _phones(raw_phones: Iterable[str], region: str, fields: dict[str, Any]) -> list[str]:
    """E.164, deduplicated in order; a field holding several numbers gives each of them."""
    out: list[str] = []
    for raw in raw_phones:
        e164 = normalize_phone(raw, region)
        found = [e164] if e164 else _search(find_phones, raw, region)
        if not found and (text := clean_line(raw)):
            add_field(fields, "phone_raw", text)
        out.extend(p for p in found if p not in out)
    return out


def _emails(raw_emails: Iterable[str], fields: dict[str, Any]) -> list[str]:
    """Lower-cased valid addresses, deduplicated; invalid input goes to ``email_raw``."""
    out: list[str] = []
    for raw in raw_emails:
        email = normalize_email(raw)
        found = [email] if email else _search(find_emails, raw)
        if not found and (text := clean_line(raw)):
            add_field(fields, "email_raw", text)
        out.extend(e for e in found if e not in out)
    return out


def _search(finder: Callable[..., list[str]], raw: str, *args: str) -> list[str]:
    return finder(raw, *args) if len(raw) <= _SEARCH_LIMIT else []


def _messengers(messengers: Iterable[Messenger]) -> list[Messenger]:
    out: list[Messenger] = []
    seen: set[tuple[str, str]] = set()
    for messenger in messengers:
        clean = messenger.model_copy(update={
            "id": _no_nul(messenger.id).strip(),
            "username": clean_line(messenger.username),
        })
        if clean.id and (clean.kind, clean.id) not in seen:
            seen.add((clean.kind, clean.id))
            out.append(clean)
    return out


def _call_number(raw: str | None, region: str, fields: dict[str, Any], key: str) -> str | None:
    """A call party in E.164; "anonymous" and the like go to ``fields[key]`` as written."""
    text = clean_line(raw)
    if text is None:
        return None
    e164 = normalize_phone(text, region)
    if e164 is None:
        add_field(fields, key, text)
    return e164


def _call(info: CallInfo | None, region: str, fields: dict[str, Any]) -> Call | None:
    """The contract's call block; talk time is 0 for an unanswered call."""
    if info is None:
        return None
    duration = max(0, info.duration_s or 0)
    answered = info.answered if info.answered is not None else duration > 0
    return Call(
        direction=info.direction or "inbound",
        from_=_call_number(info.from_number, region, fields, "call_from_raw"),
        to=_call_number(info.to_number, region, fields, "call_to_raw"),
        started_at=info.started_at,
        duration_s=duration if answered else 0,
        answered=answered,
        recording_url=clean_line(info.recording_url),
        tracking_number=_call_number(info.tracking_number, region, fields, "tracking_number_raw"),
    )
