"""Phone numbers to E.164, the one form dedup, routing and every CRM can compare.

People type numbers every way there is: ``8 (916) 123-45-67`` (the Russian trunk
prefix), ``+7 916 ...``, ``7916...``, ``tel:`` links, masks with parens and dashes.
``phonenumbers`` (Google's libphonenumber metadata) knows every country's rules, so
we never hand-roll them; we only add the one Russian habit it cannot know.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat

#: libphonenumber refuses longer input anyway; cutting first keeps huge strings cheap.
_MAX_INPUT = 250


@lru_cache(maxsize=8192)  # pure and ~20 µs a call: tracking numbers, retries, repeat visitors
def normalize_phone(raw: str, default_region: str) -> str | None:
    """Return the number in E.164 (``+79161234567``), or None when it is not a valid number.

    ``default_region`` (ISO 3166 alpha-2, e.g. ``RU``) is the country assumed for a number
    written without ``+code``. A number that is only "possible" (right length, unknown
    range) is refused: callers keep such input as written instead of guessing.
    """
    text = _prepare(raw)
    if not text:
        return None
    number = _parse_valid(text, default_region)
    if number is None and text.startswith("+8"):
        # "+8 916 ..." is a common Russian slip for the trunk prefix "8 916 ...".
        number = _parse_valid(text[1:], default_region)
    if number is None:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def find_phones(text: str, default_region: str) -> list[str]:
    """Every valid phone number in free text (an email, a chat message), E.164, first seen first."""
    found: list[str] = []
    try:
        matcher = phonenumbers.PhoneNumberMatcher(
            text.replace("\x00", " "), _region(default_region), leniency=phonenumbers.Leniency.VALID
        )
        for match in matcher:
            e164 = phonenumbers.format_number(match.number, PhoneNumberFormat.E164)
            if e164 not in found:
                found.append(e164)
    except NumberParseException:
        pass
    return found


def _prepare(raw: str) -> str:
    """Drop NULs and surrounding space; refuse what is too long to be a phone."""
    text = raw.replace("\x00", "").strip()
    return text if len(text) <= _MAX_INPUT else ""


def _region(default_region: str) -> str:
    return (default_region or "").strip().upper()


def _parse_valid(text: str, default_region: str) -> PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, _region(default_region))
    except NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None
