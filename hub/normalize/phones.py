"""Phone numbers to E.164, the one form dedup, routing and every CRM can compare.

People type numbers every way there is: ``8 (916) 123-45-67`` (the Russian trunk
prefix), ``+7 916 ...``, ``7916...``, ``tel:`` links, masks with parens and dashes.
``phonenumbers`` (Google's libphonenumber metadata) knows every country's rules, so
we never hand-roll them; we only add the one Russian habit it cannot know.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, PhoneNumber, PhoneNumberFormat

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
    fast = _russian(text, default_region)
    if fast is not None:
        return fast
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


#: The shapes nearly every Russian form sends: ``+7``, ``7``, ``8`` (the trunk prefix) or
#: nothing before 10 national digits, with spaces, dashes, dots or parentheses between.
_WRITTEN = re.compile(r"\+?[0-9][0-9 ().-]*")
_NOT_DIGITS = re.compile(r"[^0-9+]")
#: After the separators are gone. The first national digit is 3, 4 or 9 (geographic and
#: mobile ranges): not 8, which libphonenumber may take for a second trunk prefix, not 1
#: (``810`` is Russia's international prefix), not 7 (Kazakhstan's ranges).
_RUSSIAN = re.compile(r"(?:\+7|7|8)?([349][0-9]{9})")


def _russian(text: str, default_region: str) -> str | None:
    """E.164 of a number in one of the common Russian shapes, validated by libphonenumber's
    own metadata (``is_valid_number``), without its general parser: parsing is about
    three quarters of a lead's normalization, and every webform lead has a number.

    None means "not this shape, or not valid": the full parser decides then. The shapes
    are those for which the parser is known to give the same answer (a property test
    compares the two on every shape this accepts: ``tests/unit/test_phone_fast_path.py``);
    without ``+7`` they are Russian only when the default region is ``RU``.
    """
    if _WRITTEN.fullmatch(text) is None:
        return None
    digits = _NOT_DIGITS.sub("", text)
    match = _RUSSIAN.fullmatch(digits)
    if match is None or (not digits.startswith("+") and _region(default_region) != "RU"):
        return None
    national = match[1]
    if not _valid_national(7, national):
        return None
    return "+7" + national


#: The number types ``is_valid_number`` tells apart (``_number_type_helper``); a number is
#: valid when it is any of them. The common ones first: only "any" matters here.
_TYPES = ("mobile", "fixed_line", "toll_free", "premium_rate", "shared_cost", "voip",
          "personal_number", "pager", "uan", "voicemail")
_Desc = tuple[frozenset[int], "re.Pattern[str]"]


def _desc(desc: Any) -> _Desc | None:
    """A ``PhoneNumberDesc`` as (possible lengths, compiled pattern); None when it matches
    nothing (libphonenumber's ``_is_number_matching_desc`` says False for it)."""
    if desc is None or not desc.national_number_pattern:
        return None
    return frozenset(desc.possible_length or ()), re.compile(desc.national_number_pattern)


def _matches(desc: _Desc | None, national: str) -> bool:
    if desc is None:
        return False
    lengths, pattern = desc
    return (not lengths or len(national) in lengths) and pattern.fullmatch(national) is not None


#: a region as ``_valid_national`` reads it: leading digits, general description, types
_Region = tuple["re.Pattern[str] | None", "_Desc | None", tuple[_Desc, ...]]


@lru_cache(maxsize=64)
def _regions(country_code: int) -> tuple[_Region, ...]:
    """Per region of ``country_code``, in libphonenumber's order: its leading-digits
    pattern, its general description and its number types, compiled once."""
    out: list[_Region] = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        meta = PhoneMetadata.metadata_for_region(region, None)
        if meta is None:
            continue
        leading = re.compile(meta.leading_digits) if meta.leading_digits else None
        types = tuple(d for d in (_desc(getattr(meta, name)) for name in _TYPES) if d is not None)
        out.append((leading, _desc(meta.general_desc), types))
    return tuple(out)


def _valid_national(country_code: int, national: str) -> bool:
    """``phonenumbers.is_valid_number`` for a number without leading zeros, from the same
    metadata, compiled once: the library walks its metadata objects on every call (27 µs,
    6 % of the api's CPU under load; this takes ~2 µs). The same steps: the region is the
    country code's only one, or the first whose leading digits match, or, for one without
    them, of which the number is some type; the number is valid when it is some type of
    that region. ``tests/unit/test_phone_fast_path.py`` compares the two on every national
    number shape the fast path takes."""
    regions = _regions(country_code)
    if len(regions) == 1:  # the one region, whatever its leading digits
        return _some_type(regions[0], national)
    for region in regions:
        leading = region[0]
        if leading is None:
            if _some_type(region, national):
                return True
        elif leading.match(national):
            return _some_type(region, national)
    return False


def _some_type(region: _Region, national: str) -> bool:
    """The number matches the region's general description and one of its number types."""
    _, general, types = region
    return _matches(general, national) and any(_matches(d, national) for d in types)


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
