"""Form fields to a ``LeadDraft``: one alias table for every form-like source.

Sites name their inputs every way (``Phone``, ``tel``, ``Ваш телефон``, ``e-mail``,
``phone[]``); admins should not have to map the common ones, so names are matched
case-insensitively after folding (``ё`` as ``е``, spaces and dashes as ``_``, a PHP
``[]`` suffix and edge underscores dropped). An admin's ``field_map`` is applied first
for the rest. Whatever is not recognized stays in ``draft.fields`` under its original
name, so nothing the visitor typed is lost.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from hub.connectors import LeadDraft
from hub.models import CLICK_ID_KEYS, UTM_KEYS, Channel
from hub.normalize.utm import CLICK_ID_ALIASES

#: Canonical names that fill one slot of the draft; the first non-empty value wins and
#: a later one stays in ``fields`` under its own name.
SINGLE_FIELDS = (
    "name", "first_name", "middle_name", "last_name", "message", "company", "product",
    "page_url", "referrer", "cookies",
)
#: Canonical names that collect every value.
MULTI_FIELDS = ("phone", "email")
UTM_FIELDS = tuple(f"utm_{key}" for key in UTM_KEYS)

#: What ``field_map`` values may name.
CANONICAL_FIELDS = frozenset((*SINGLE_FIELDS, *MULTI_FIELDS, *UTM_FIELDS, *CLICK_ID_KEYS))

_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("name", "fio", "full_name", "fullname", "your_name", "contact_name", "client_name",
             "customer_name", "имя", "фио", "ваше_имя", "имя_фамилия", "контактное_лицо"),
    "first_name": ("first_name", "firstname", "fname", "given_name"),
    "middle_name": ("middle_name", "middlename", "patronymic", "отчество"),
    "last_name": ("last_name", "lastname", "lname", "surname", "family_name", "фамилия"),
    "phone": ("phone", "phones", "tel", "telephone", "mobile", "phone_number", "phonenumber",
              "mobile_phone", "cellphone", "телефон", "тел", "ваш_телефон", "номер_телефона",
              "мобильный", "мобильный_телефон"),
    "email": ("email", "emails", "e_mail", "mail", "email_address", "your_email", "почта",
              "электронная_почта", "эл_почта", "ваш_email", "ваш_e_mail", "емейл"),
    "message": ("message", "comment", "comments", "text", "msg", "question", "комментарий",
                "комментарии", "сообщение", "вопрос", "ваш_вопрос", "ваш_комментарий", "текст"),
    "company": ("company", "company_name", "organization", "organisation", "компания",
                "организация", "название_компании"),
    "product": ("product", "product_name", "товар", "продукт"),
    "page_url": ("page_url", "pageurl", "page", "url", "page_uri", "landing_url", "current_url"),
    "referrer": ("referrer", "referer", "http_referer", "document_referrer"),
    "cookies": ("cookies", "cookie"),
}

#: Technical fields dropped on purpose: secrets, CSRF and anti-bot tokens. They are of no
#: use in a CRM, some are long, and a secret must not travel on to destinations.
DROPPED_FIELDS = frozenset((
    "token", "csrf_token", "csrfmiddlewaretoken", "authenticity_token", "wpnonce",
    "g_recaptcha_response", "h_captcha_response", "cf_turnstile_response", "smart_token",
    "submit",
))

_BUILTIN: dict[str, str] = {alias: canon for canon, names in _ALIASES.items() for alias in names}
_BUILTIN.update({name: name for name in UTM_FIELDS})
_BUILTIN.update({key.strip("_"): key for key in CLICK_ID_KEYS})
_BUILTIN.update(CLICK_ID_ALIASES)
_SEPARATORS = re.compile(r"[\s\-]+")
_NUMBERED = re.compile(r"_?\d{1,2}$")


@lru_cache(maxsize=4096)  # pure; a form sends the same few names with every lead
def field_key(name: str) -> str:
    """The folded form names are compared in: ``" Ваш-Телефон[] "`` → ``ваш_телефон``."""
    key = unicodedata.normalize("NFKC", name).casefold().strip().replace("ё", "е")
    key = key.removesuffix("[]")
    return _SEPARATORS.sub("_", key).strip("_:. ")


def canonical_name(name: str, field_map: Mapping[str, str] | None = None) -> str | None:
    """The canonical name a field stands for, or None for a field to keep as it is.

    ``field_map`` keys are compared folded like field names. ``phone2`` and ``email_2``
    count as phones and emails: forms with a second number are common.
    """
    return _canonical(field_key(name), field_map)


def _canonical(key: str, field_map: Mapping[str, str] | None) -> str | None:
    """``canonical_name`` of a name already folded (``field_key``)."""
    if field_map:
        for alias, canonical in field_map.items():
            if field_key(alias) == key:
                return canonical
    if key in _BUILTIN:
        return _BUILTIN[key]
    base = _NUMBERED.sub("", key)
    return _BUILTIN[base] if _BUILTIN.get(base) in MULTI_FIELDS else None


def add_field(fields: dict[str, Any], name: str, value: Any) -> None:
    """Store a value under ``name``; a repeated name (checkbox groups) becomes a list."""
    if name not in fields:
        fields[name] = value
    elif isinstance(fields[name], list):
        fields[name].append(value)
    else:
        fields[name] = [fields[name], value]


def draft_from_fields(
    items: Iterable[tuple[str, str]],
    *,
    channel: Channel = "form",
    field_map: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> LeadDraft:
    """Read (name, value) pairs, in order, into a draft; empty values count as absent.

    ``field_map`` maps an admin's alias to a name of ``CANONICAL_FIELDS`` and wins over
    the built-in table. Names in ``DROPPED_FIELDS`` are left out. ``extra``: values that
    are no text (a JSON body's nested objects, ``hub.sdk.fields_of``), kept in
    ``lead.fields`` as they are where no pair took the name.
    """
    draft = LeadDraft(channel=channel)
    slots: dict[str, tuple[str, str]] = {}  # canonical single field -> (original name, value)
    for name, value in items:
        key = field_key(name)
        if key in DROPPED_FIELDS or not value.strip():
            continue
        canonical = _canonical(key, field_map)
        if canonical in SINGLE_FIELDS and canonical not in slots:
            slots[canonical] = (name, value)
        elif canonical == "phone":
            draft.phones.append(value)
        elif canonical == "email":
            draft.emails.append(value)
        elif canonical in UTM_FIELDS and canonical[4:] not in draft.utm:
            draft.utm[canonical[4:]] = value
        elif canonical in CLICK_ID_KEYS and canonical not in draft.click_ids:
            draft.click_ids[canonical] = value
        else:
            add_field(draft.fields, name, value)
    _fill_slots(draft, slots)
    for key, value in (extra or {}).items():
        draft.fields.setdefault(key, value)
    return draft


def _fill_slots(draft: LeadDraft, slots: dict[str, tuple[str, str]]) -> None:
    """Put single values in place; name parts make the name only when no full name came."""
    value = {canon: pair[1] for canon, pair in slots.items()}
    draft.message = value.get("message")
    draft.company = value.get("company")
    draft.product = value.get("product")
    draft.page_url = value.get("page_url")
    draft.referrer = value.get("referrer")
    draft.cookies = value.get("cookies")
    parts = [slots[p] for p in ("first_name", "middle_name", "last_name") if p in slots]
    if "name" in slots:
        draft.name = value["name"]
        for original, part in parts:
            add_field(draft.fields, original, part)
    elif parts:
        draft.name = " ".join(part for _, part in parts)
