"""How a LeadHub lead becomes an amoCRM deal, contact, company and note (pure functions).

Our idempotency marker ``lh:<idempotency key>`` goes into a text custom field of the deal
("LeadHub key"), and the attempt marker ``lha:<attempt id>`` into a second one ("LeadHub
attempt"), so a later look-up finds a deal an uncertain attempt may have created (see
``plugin``: amoCRM's ``query`` searches field values, never tags); a note on an existing
deal carries the marker in its text for the same reason.
"""

from __future__ import annotations

from typing import Any

from hub.sdk import DeliveryItem, Lead

MARKER_PREFIX = "lh:"

#: Lead tracking fields (type ``tracking_data``) every amoCRM account has, by field code.
#: ``UTM_REFERRER`` is the ``utm_referrer`` tag; ``REFERRER`` the page the visitor came from.
UTM_CODES = {
    "source": "UTM_SOURCE", "medium": "UTM_MEDIUM", "campaign": "UTM_CAMPAIGN",
    "content": "UTM_CONTENT", "term": "UTM_TERM",
}
CLICK_ID_CODES = {"gclid": "GCLID", "yclid": "YCLID", "fbclid": "FBCLID"}
CHANNEL_TITLES = {"form": "Заявка", "email": "Письмо", "messenger": "Сообщение", "call": "Звонок"}


def attempt_marker(attempt_id: str) -> str:
    """The value shared by the deals of one delivery attempt (one ``leads/complex`` call)."""
    return f"lha:{attempt_id}"


def marker(item: DeliveryItem) -> str:
    return f"{MARKER_PREFIX}{item.idempotency_key}"


def _who(lead: Lead) -> str | None:
    contact = lead.contact
    if contact.name:
        return contact.name
    if contact.phones:
        return contact.phones[0]
    if contact.emails:
        return contact.emails[0]
    for m in contact.messengers:
        return f"{m.kind} @{m.username}" if m.username else f"{m.kind} {m.id}"
    return None


def deal_name(lead: Lead) -> str:
    """``<product or "Заявка с <source>"> — <name, phone or email>``."""
    head = lead.product or f"{CHANNEL_TITLES[lead.channel]} с {lead.source}"
    who = _who(lead)
    return (f"{head} — {who}" if who else head)[:255]


def responsible_user(lead: Lead) -> int | None:
    assigned = (lead.assigned_to or "").strip()
    return int(assigned) if assigned.isdigit() else None


def _text_field(code: str, value: str) -> dict[str, Any]:
    return {"field_code": code, "values": [{"value": value}]}


def tracking_fields(lead: Lead) -> list[dict[str, Any]]:
    out = [_text_field(code, value) for key, code in UTM_CODES.items()
           if (value := getattr(lead.utm, key))]
    out += [_text_field(code, value) for key, code in CLICK_ID_CODES.items()
            if (value := getattr(lead.click_ids, key))]
    utm_referrer = lead.fields.get("utm_referrer")
    if isinstance(utm_referrer, str) and utm_referrer:
        out.append(_text_field("UTM_REFERRER", utm_referrer))
    if lead.referrer:
        out.append(_text_field("REFERRER", lead.referrer))
    return out


def contact_body(lead: Lead, user: int | None) -> dict[str, Any]:
    values: list[dict[str, Any]] = []
    for code, items in (("PHONE", lead.contact.phones), ("EMAIL", lead.contact.emails)):
        if items:
            values.append({"field_code": code,
                           "values": [{"value": v, "enum_code": "WORK"} for v in items]})
    body: dict[str, Any] = {"name": _who(lead) or "Без имени"}
    if values:
        body["custom_fields_values"] = values
    if user is not None:
        body["responsible_user_id"] = user
    return body


def comment_text(lead: Lead) -> str:
    """What has no field of its own in amoCRM: message, page, messengers, call, extra fields."""
    lines: list[str] = []
    if lead.message:
        lines.append(lead.message)
    if lead.page_url:
        lines.append(f"Страница: {lead.page_url}")
    for m in lead.contact.messengers:
        handle = f"@{m.username} ({m.id})" if m.username else m.id
        lines.append(f"{m.kind}: {handle}")
    if lead.call is not None:
        call = lead.call
        answered = "отвечен" if call.answered else "не отвечен"
        lines.append(f"Звонок {call.direction}: {call.from_ or '?'} → {call.to or '?'}, "
                     f"{answered}, {call.duration_s} с")
        if call.recording_url:
            lines.append(f"Запись: {call.recording_url}")
        if call.tracking_number:
            lines.append(f"Номер отслеживания: {call.tracking_number}")
    others = {k: v for k, v in lead.click_ids.model_dump(by_alias=True).items()
              if v and k not in CLICK_ID_CODES}
    lines += [f"{key}: {value}" for key, value in others.items()]
    lines += [f"{key}: {value}" for key, value in lead.fields.items()
              if key != "utm_referrer" and value not in (None, "")]
    return "\n".join(lines)


def complex_lead(
    item: DeliveryItem, request_id: str, *, tag: str, pipeline_id: int | None,
    status_id: int | None, comment_field_id: int | None, inn_field_id: int | None,
    key_field_id: int, attempt_field_id: int | None = None,
) -> dict[str, Any]:
    """One element of a ``POST /api/v4/leads/complex`` body; the markers go into the text
    fields ``key_field_id`` (``lh:<key>``) and ``attempt_field_id`` (``lha:<attempt>``)."""
    lead = item.lead
    user = responsible_user(lead)
    body: dict[str, Any] = {"name": deal_name(lead), "request_id": request_id}
    if pipeline_id is not None:
        body["pipeline_id"] = pipeline_id
    if status_id is not None:
        body["status_id"] = status_id
    if user is not None:
        body["responsible_user_id"] = user
    fields = tracking_fields(lead)
    comment = comment_text(lead)
    if comment_field_id is not None and comment:
        fields.append({"field_id": comment_field_id, "values": [{"value": comment}]})
    fields.append({"field_id": key_field_id, "values": [{"value": marker(item)}]})
    if item.attempt_id and attempt_field_id is not None:
        # One look-up finds every deal of an interrupted batch.
        fields.append({"field_id": attempt_field_id,
                       "values": [{"value": attempt_marker(item.attempt_id)}]})
    body["custom_fields_values"] = fields
    embedded: dict[str, Any] = {"contacts": [contact_body(lead, user)]}
    if tag:  # a visible label only: amoCRM cannot search or filter deals by tag
        embedded["tags"] = [{"name": tag}]
    if lead.company:
        company: dict[str, Any] = {"name": lead.company}
        inn = lead.fields.get("inn")
        if inn_field_id is not None and isinstance(inn, str | int) and str(inn):
            company["custom_fields_values"] = [
                {"field_id": inn_field_id, "values": [{"value": str(inn)}]}]
        embedded["companies"] = [company]
    body["_embedded"] = embedded
    return body


def duplicate_note_text(item: DeliveryItem) -> str:
    """A repeat inquiry, written on the deal it repeats; ends with our marker."""
    lead = item.lead
    lines = [f"Повторное обращение ({lead.source}, {lead.received_at:%Y-%m-%d %H:%M} UTC)"]
    if lead.contact.name:
        lines.append(f"Имя: {lead.contact.name}")
    lines += [f"Телефон: {p}" for p in lead.contact.phones]
    lines += [f"Email: {e}" for e in lead.contact.emails]
    if lead.product:
        lines.append(f"Продукт: {lead.product}")
    utm = ", ".join(f"{k}={v}" for k, v in lead.utm.model_dump().items() if v)
    if utm:
        lines.append(f"UTM: {utm}")
    comment = comment_text(lead)
    if comment:
        lines.append(comment)
    lines.append(f"LeadHub: {marker(item)}")
    return "\n".join(lines)


def new_deal_note_text(item: DeliveryItem) -> str | None:
    """The comment of a new deal as a note, when there is anything to say."""
    comment = comment_text(item.lead)
    return f"{comment}\nLeadHub: {marker(item)}" if comment else None
