"""Phones and emails of 1C counterparties: the ``КонтактнаяИнформация`` tabular section.

Each row has ``Тип`` (an enumeration, sent as its name: ``Телефон``,
``АдресЭлектроннойПочты``, ``Адрес``, ``Факс``…), the human text ``Представление`` and, in
newer configurations, structured ``НомерТелефона``/``АдресЭП`` that are "often empty —
match on ``Представление``" (reference §3). The section is also an entity set of its own,
``Catalog_Контрагенты_КонтактнаяИнформация`` (filter by ``Ref_Key``, ``Тип``); rows cannot
be created there directly ("Cоздание строк табличной части напрямую не поддерживается",
1C's answer quoted in the errors24.ru thread on OData errors), so new rows go inline in the
counterparty's own POST, each with its ``LineNumber`` (the same thread: a row without it
fails with a 500).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hub.sdk import find_emails, find_phones, normalize_phone

PHONE = "Телефон"
EMAIL = "АдресЭлектроннойПочты"
CONTACTS = "КонтактнаяИнформация"


def contact_set(counterparties: str) -> str:
    return f"{counterparties}_{CONTACTS}"


def phones_of(rows: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """The phones of contact rows: ``НомерТелефона`` when filled, else ``Представление``."""
    out: list[str] = []
    for row in rows:
        if row.get("Тип") != PHONE:
            continue
        text = str(row.get("НомерТелефона") or "").strip() or str(row.get("Представление") or "").strip()
        if text and text not in out:
            out.append(text)
    return tuple(out)


def emails_of(rows: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """The emails of contact rows: ``АдресЭП`` when filled, else the addresses found in
    ``Представление`` (which may carry a name, ``Иван <ivan@example.ru>``)."""
    out: list[str] = []
    for row in rows:
        if row.get("Тип") != EMAIL:
            continue
        structured = str(row.get("АдресЭП") or "").strip()
        found = [structured] if structured else find_emails(str(row.get("Представление") or ""))
        out += [e for e in found if e and e not in out]
    return tuple(out)


def phone_presentation(e164: str) -> str:
    """How 1C's contact-information subsystem prints a Russian number: ``+7 916 123-45-67``;
    others stay as given."""
    digits = e164.lstrip("+")
    if e164.startswith("+7") and len(digits) == 11:
        return f"+7 {digits[1:4]} {digits[4:7]}-{digits[7:9]}-{digits[9:]}"
    return e164


def phone_spellings(e164: str) -> list[str]:
    """Ways a number is commonly written in 1C, for an exact ``eq`` filter (1C cannot
    normalize in a filter): E.164, bare digits, the trunk ``8`` form, 1C's own presentation
    and the bracketed forms managers type."""
    digits = e164.lstrip("+")
    forms = [e164, digits]
    if e164.startswith("+7") and len(digits) == 11:
        code, a, b, c = digits[1:4], digits[4:7], digits[7:9], digits[9:]
        forms += ["8" + digits[1:], digits[1:], phone_presentation(e164),
                  f"+7 ({code}) {a}-{b}-{c}", f"8 ({code}) {a}-{b}-{c}", f"8 {code} {a}-{b}-{c}"]
    return list(dict.fromkeys(forms))


def same_phone(text: str, e164: str, region: str) -> bool:
    """Whether a phone as written in 1C is ``e164``."""
    return e164 in find_phones(text, region) or normalize_phone(text, region) == e164
