"""The fast path for common Russian shapes (``hub/normalize/phones.py::_russian``) gives
exactly what libphonenumber's parser gives, for every input it accepts.

The fast path exists for speed only; if it ever disagreed with the parser, a lead's phone
would differ by how it was typed, and dedup and CRM look-ups would miss. Hypothesis writes
numbers in the accepted alphabet (digits, a leading ``+``, the separators) with every
prefix and first digit, valid or not, under several default regions.
"""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat

from hub.normalize.phones import _russian, _valid_national, normalize_phone

REGIONS = ("RU", "KZ", "US", "DE", "ru", "")


def parser(text: str, region: str) -> str | None:
    """E.164 as libphonenumber's general parser reads ``text`` (the slow path)."""
    try:
        number = phonenumbers.parse(text, region.strip().upper() or None)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def written(digits: str, separators: list[str]) -> str:
    """``digits`` with a separator (possibly empty) after each character."""
    return "".join(d + s for d, s in zip(digits, separators + [""] * len(digits), strict=False))


prefixes = st.sampled_from(["", "+7", "7", "8", "+8", "+", "87", "78", "+77", "810", "07"])
nationals = st.text(alphabet="0123456789", min_size=7, max_size=12)
separator = st.sampled_from(["", "", "", " ", "-", "(", ")", ".", " (", ") ", "  "])


@settings(max_examples=2000, deadline=None)
@given(prefix=prefixes, national=nationals, seps=st.lists(separator, max_size=16),
       region=st.sampled_from(REGIONS))
def test_the_fast_path_agrees_with_the_parser(prefix: str, national: str, seps: list[str],
                                              region: str) -> None:
    text = written(prefix + national, seps).strip()
    fast = _russian(text, region)
    if fast is not None:
        assert fast == parser(text, region), text


@settings(max_examples=1000, deadline=None)
@given(first=st.sampled_from("3489"), rest=st.text(alphabet="0123456789", min_size=9, max_size=9),
       prefix=st.sampled_from(["", "+7", "7", "8", "+7 ", "8 "]), seps=st.lists(separator, max_size=12))
def test_valid_russian_numbers_take_the_fast_path(first: str, rest: str, prefix: str,
                                                  seps: list[str]) -> None:
    """Most real numbers do take it (else it would save nothing), and agree."""
    text = prefix + written(first + rest, seps)
    expected = parser(text.strip(), "RU")
    fast = _russian(text.strip(), "RU")
    if first in "349" and expected is not None and text.strip()[:1] in "+0123456789":
        assert fast == expected, text
    assert normalize_phone(text, "RU") == expected, text


@pytest.mark.parametrize(("text", "e164"), [
    ("8 (916) 123-45-67", "+79161234567"),
    ("+7 916 123 45 67", "+79161234567"),
    ("79161234567", "+79161234567"),
    ("9161234567", "+79161234567"),
    ("8.495.123.45.67", "+74951234567"),
])
def test_common_shapes(text: str, e164: str) -> None:
    assert _russian(text, "RU") == e164 == parser(text, "RU")


@pytest.mark.parametrize(("text", "region"), [
    ("88001234567", "RU"),      # 8 800: left to the parser (a second trunk prefix)
    ("8 10 49 30 1234567", "RU"),  # 810: Russia's international prefix
    ("87012345678", "KZ"),      # Kazakhstan's ranges
    ("89161234567", "US"),      # "8" is a trunk prefix only at home
    ("+7 916 123 45 67 ext 5", "RU"),
])
def test_shapes_left_to_the_parser(text: str, region: str) -> None:
    assert _russian(text, region) is None


def _library_valid(country_code: int, national: str) -> bool:
    return phonenumbers.is_valid_number(PhoneNumber(country_code=country_code,
                                                    national_number=int(national)))


@pytest.mark.parametrize("country_code", [7, 1, 44, 49, 375])
def test_the_compiled_validity_check_is_the_librarys(country_code: int) -> None:
    """``_valid_national`` (libphonenumber's metadata, compiled once) against
    ``is_valid_number`` itself: every 5-digit prefix of the Russian ranges the fast path
    takes, and for other codes (several regions, one region) every 4-digit prefix, each
    with pseudo-random tails of every length libphonenumber may accept."""
    rng = random.Random(country_code)
    firsts = "349" if country_code == 7 else "123456789"
    width = 5 if country_code == 7 else 4
    checked = agreed_valid = 0
    for first in firsts:
        for n in range(10 ** (width - 1)):
            prefix = first + f"{n:0{width - 1}d}"
            for length in ((10,) if country_code == 7 else (7, 9, 10, 11)):
                national = prefix + "".join(rng.choice("0123456789") for _ in range(length - width))
                expected = _library_valid(country_code, national)
                assert _valid_national(country_code, national) == expected, national
                checked += 1
                agreed_valid += expected
    assert agreed_valid > 100  # the ranges hold valid numbers too, not only refusals
