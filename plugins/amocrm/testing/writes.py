"""The writing endpoints of ``FakeAmoCRM``: ``leads/complex``, ``leads`` and ``leads/notes``.

Each validates the whole request first and creates nothing when any item is invalid,
answering 400 in the ``validation-errors`` shape with one entry per failing ``request_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.testing import RecordedRequest, Response
from plugins.amocrm.testing.account import NOTE_TYPES, AmoAccount, Problem, problem

HAL = "application/hal+json"
PROBLEM = "application/problem+json"
MAX_COMPLEX = 50
NOT_A_CHOICE = "The value you selected is not a valid choice."


def validation_error(by_request: list[tuple[str, list[Problem]]]) -> Response:
    body = {
        "validation-errors": [{"request_id": rid, "errors": errs} for rid, errs in by_request],
        "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
        "detail": "Request validation failed",
    }
    return Response.json(body, 400, PROBLEM)


def problem_response(status: int, title: str, detail: str) -> Response:
    body = {"title": title, "type": f"https://httpstatus.es/{status}", "status": status,
            "detail": detail}
    return Response.json(body, status, PROBLEM)


def json_array(request: RecordedRequest) -> list[Any] | None:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, list) else None


def request_id(raw: Any, index: int) -> str:
    """The client's ``request_id``, else the item's index, as the real API echoes it."""
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return str(rid) if rid is not None else str(index)


def _not_an_array() -> Response:
    return validation_error([("0", [problem("InvalidType", "", "Expected a non-empty array.")])])


def complex_leads(acc: AmoAccount, request: RecordedRequest, duplicate_control: bool) -> Response:
    """``POST /api/v4/leads/complex``: leads with one contact and one company each."""
    body = json_array(request)
    if not body:
        return _not_an_array()
    if len(body) > MAX_COMPLEX:
        detail = f"At most {MAX_COMPLEX} leads per request."
        return validation_error([("0", [problem("CountOutOfRange", "", detail)])])
    errors: list[tuple[str, list[Problem]]] = []
    for i, raw in enumerate(body):
        probs = acc.check_lead(raw)
        embedded = (raw.get("_embedded") or {}) if isinstance(raw, dict) else {}
        for kind in ("contacts", "companies"):
            items = embedded.get(kind) or []
            if len(items) > 1:
                probs.append(problem("TooMany", f"_embedded.{kind}", f"At most 1 of {kind}."))
            for j, item in enumerate(items):
                where = f"_embedded.{kind}.{j}"
                if "id" in item and int(item["id"]) not in getattr(acc, kind):
                    probs.append(problem("NotFound", f"{where}.id", "Not found."))
                probs += acc.check_custom_fields(
                    kind, item.get("custom_fields_values"), f"{where}.custom_fields_values")[1]
        if probs:
            errors.append((request_id(raw, i), probs))
    if errors:
        return validation_error(errors)
    answer = []
    for i, raw in enumerate(body):
        embedded = raw.get("_embedded") or {}
        contact = (embedded.get("contacts") or [None])[0]
        company = (embedded.get("companies") or [None])[0]
        rid = request_id(raw, i)
        if duplicate_control and contact and "id" not in contact:
            existing = acc.find_duplicate(contact)
            lead_id = next((lid for lid, cs in acc.lead_contacts.items() if existing in cs), None)
            if existing is not None and lead_id is not None:
                answer.append({"id": lead_id, "contact_id": existing, "company_id": None,
                               "request_id": [rid], "merged": True})
                continue
        contact_id = company_id = None
        if contact:
            contact_id = int(contact["id"]) if "id" in contact else acc.create_contact(contact)
        if company:
            company_id = int(company["id"]) if "id" in company else acc.create_company(company)
        lead_id = acc.create_lead(raw, [contact_id] if contact_id else [], company_id)
        answer.append({"id": lead_id, "contact_id": contact_id, "company_id": company_id,
                       "request_id": [rid], "merged": False})
    # A bare JSON array, not HAL (reference §1b).
    return Response.json(answer, 200, "application/json")


def add_leads(acc: AmoAccount, request: RecordedRequest, href: Callable[[str], str]) -> Response:
    """``POST /api/v4/leads``: leads linked to existing contacts by id."""
    body = json_array(request)
    if not body:
        return _not_an_array()
    errors: list[tuple[str, list[Problem]]] = []
    for i, raw in enumerate(body):
        probs = acc.check_lead(raw)
        contacts = ((raw.get("_embedded") or {}).get("contacts") or []
                    if isinstance(raw, dict) else [])
        for j, contact in enumerate(contacts):
            if int(contact.get("id", 0)) not in acc.contacts:
                probs.append(problem("NotFound", f"_embedded.contacts.{j}.id", "Not found."))
        if probs:
            errors.append((request_id(raw, i), probs))
    if errors:
        return validation_error(errors)
    out = []
    for i, raw in enumerate(body):
        contact_ids = [int(c["id"]) for c in (raw.get("_embedded") or {}).get("contacts") or []]
        lid = acc.create_lead(raw, contact_ids)
        out.append({"id": lid, "request_id": request_id(raw, i),
                    "_links": {"self": {"href": href(f"/api/v4/leads/{lid}")}}})
    return Response.json({"_links": {"self": {"href": href("/api/v4/leads")}},
                          "_embedded": {"leads": out}}, 200, HAL)


def add_notes(acc: AmoAccount, request: RecordedRequest, href: Callable[[str], str]) -> Response:
    """``POST /api/v4/leads/notes``: notes on existing leads."""
    body = json_array(request)
    if not body:
        return _not_an_array()
    errors: list[tuple[str, list[Problem]]] = []
    for i, raw in enumerate(body):
        probs = []
        if not isinstance(raw, dict) or raw.get("entity_id") not in acc.leads:
            probs.append(problem("NotFound", "entity_id", "Entity not found."))
        elif raw.get("note_type") not in NOTE_TYPES:
            probs.append(problem("NotSupportedChoice", "note_type", NOT_A_CHOICE))
        elif raw["note_type"] == "common" and not (raw.get("params") or {}).get("text"):
            probs.append(problem("FieldMissing", "params.text", "This field is missing."))
        if probs:
            errors.append((request_id(raw, i), probs))
    if errors:
        return validation_error(errors)
    out = []
    for i, raw in enumerate(body):
        nid = acc.add_note(raw["entity_id"], raw["note_type"], raw.get("params") or {})
        out.append({"id": nid, "entity_id": raw["entity_id"], "request_id": request_id(raw, i),
                    "_links": {"self": {"href": href(f"/api/v4/leads/notes/{nid}")}}})
    return Response.json({"_links": {"self": {"href": href("/api/v4/leads/notes")}},
                          "_embedded": {"notes": out}}, 200, HAL)


def add_custom_fields(
    acc: AmoAccount, entity: str, request: RecordedRequest, href: Callable[[str], str],
) -> Response:
    """``POST /api/v4/{entity}/custom_fields`` with ``[{"name": "...", "type": "text"}]``.

    Answer (Kommo "Add custom fields", https://developers.kommo.com/reference/add-custom-fields;
    amoCRM "Поля и группы полей", https://www.amocrm.ru/developers/content/crm_platform/
    custom-fields): HAL ``{"_total_items": n, "_embedded": {"custom_fields": [field model +
    "request_id"]}}``. Invalid items: 400 in the ``validation-errors`` shape, nothing created.
    The docs say the method is for administrators only; the fake's token is one.
    """
    body = json_array(request)
    if not body:
        return _not_an_array()
    errors = [(request_id(raw, i), probs) for i, raw in enumerate(body)
              if (probs := acc.check_new_field(raw))]
    if errors:
        return validation_error(errors)
    out = []
    for i, raw in enumerate(body):
        cf = acc.create_field(entity, raw)
        row = cf.model(entity)
        row["request_id"] = request_id(raw, i)
        row["_links"] = {"self": {"href": href(f"/api/v4/{entity}/custom_fields/{cf.id}")}}
        out.append(row)
    return Response.json({"_total_items": len(out),
                          "_embedded": {"custom_fields": out}}, 200, HAL)
