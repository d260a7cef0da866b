"""The log masker is at least as permissive as the phone parser (issue 8, finding 12):
whatever ``normalize_phone`` accepts as a phone, written inside a log message, leaves no
readable run of the national number's digits — whatever its separators, digit script or
letters. Masking too much is allowed; too little is a leak."""

from __future__ import annotations

import io
import json
import logging
import unicodedata
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from hub.logs import configure_logging
from hub.normalize.masking import PHONE_PUNCTUATION, PLUS_CHARS, mask_text
from hub.normalize.phones import normalize_phone

KEYPAD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                       "22233344455566677778889999" * 2)
LETTERS_FOR = {str(d): [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c.translate(KEYPAD) == str(d)]
               for d in range(2, 10)}
#: Each script's zero: libphonenumber reads any decimal digits.
ZEROS = [0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0x1040]


def _expand(char_class: str) -> list[str]:
    """The characters of a regex character class body like ``a-c\\]x``."""
    out, i = [], 0
    while i < len(char_class):
        ch = char_class[i]
        if ch == "\\":
            out.append(char_class[i + 1])
            i += 2
        elif i + 2 < len(char_class) and char_class[i + 1] == "-":
            out += [chr(c) for c in range(ord(ch), ord(char_class[i + 2]) + 1)]
            i += 3
        else:
            out.append(ch)
            i += 1
    return out


#: What the parser takes between digits (its own punctuation, "x" aside: a letter to it).
SEPARATORS = [c for c in _expand(PHONE_PUNCTUATION) if c != "x"] + ["\u2007", "\u202f", "\t"]
#: Message text around the phone: no digits and no Latin letters (those could be read as
#: keypad digits), so every digit left in the output is the phone's.
AROUND = st.sampled_from(["", "Заявка: ", "тел.", "«", "Клиент просил перезвонить: ", "\n",
                          " — ", "(", "№ "])
AFTER = st.sampled_from(["", "»", ", спасибо", ".", ")", " доб. ", "; имя: Иван", "\n"])


def test_our_separators_are_libphonenumbers() -> None:
    """The masker copies the parser's private character sets: an upgrade that widens them
    must widen the masker too."""
    from phonenumbers import phonenumberutil as u

    assert PHONE_PUNCTUATION == u._VALID_PUNCTUATION + u._STAR_SIGN
    assert PLUS_CHARS == u._PLUS_CHARS


@st.composite
def phone_digits(draw: st.DrawFn) -> str:
    """A valid number's digits as someone would type them: "+<code><number>", a Russian
    national form ("8 916 ...", "7 916 ...", "916 ..."), or another country's example."""
    if draw(st.booleans()):
        nsn = draw(st.from_regex(r"9[0-9]{9}", fullmatch=True))
        return draw(st.sampled_from(["+7", "8", "7", "", "+8", "\uff0b7"])) + nsn
    region = draw(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
    kind = draw(st.sampled_from([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE,
                                 PhoneNumberType.TOLL_FREE]))
    number = phonenumbers.example_number_for_type(region, kind)
    assume(number is not None)
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@st.composite
def written_phones(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(the phone as written, its national number, whether it has vanity letters)."""
    digits = draw(phone_digits())
    plus = digits[0] if digits[0] in PLUS_CHARS else ""
    body = list(digits[len(plus):])
    vanity = False
    if draw(st.integers(0, 5)) == 0:  # the tail as letters: "8 800 FLOWERS"
        tail = [i for i in range(len(body) - 7, len(body)) if i > 2 and body[i] in LETTERS_FOR]
        if len(tail) >= 3:
            for i in tail:
                body[i] = draw(st.sampled_from(LETTERS_FOR[body[i]]))
            vanity = True
    zero = draw(st.sampled_from(ZEROS))
    body = [chr(zero + int(c)) if c.isdigit() else c for c in body]
    gaps = st.one_of(st.just(""), st.just(""), st.text(st.sampled_from(SEPARATORS), min_size=1,
                                                        max_size=4))
    written = plus + "".join(c + draw(gaps) for c in body[:-1]) + body[-1]
    if not vanity and draw(st.integers(0, 3)) == 0:  # up to two stray letters, which it drops
        for letter in draw(st.lists(st.sampled_from("abcdefghABZ"), min_size=1, max_size=2)):
            at = draw(st.integers(1, len(written)))
            written = written[:at] + letter + written[at:]
    if draw(st.booleans()):
        written = draw(st.sampled_from(["tel:", "", "\u00a0"])) + written
    e164 = normalize_phone(written, "RU")
    assume(e164 is not None)
    return written, str(phonenumbers.parse(e164).national_number), vanity


def longest_visible_run(masked: str, nsn: str, vanity: bool) -> int:
    """The longest run of the national number's digits readable in ``masked``: within the
    text between two masks, digits (and, for a vanity number, keypad letters) in order."""
    best = 0
    for segment in masked.split("*"):
        seen = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else
                       (c.translate(KEYPAD) if vanity and c.isascii() and c.isalpha() else "")
                       for c in segment)
        for length in range(best + 1, len(seen) + 1):
            if not any(seen[i:i + length] in nsn for i in range(len(seen) - length + 1)):
                break
            best = length
    return best


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(phone=written_phones(), before=AROUND, after=AFTER)
@example(phone=("8\u00a0916\u00a0111\u00a022\u00a038", "9161112238", False), before="тел.", after="")
@example(phone=("8/916/111/22/38", "9161112238", False), before="", after="")
@example(phone=("8 800 FLOWERS", "8003569377", True), before="", after="")
def test_whatever_the_parser_reads_as_a_phone_is_masked_in_a_message(
    phone: tuple[str, str, bool], before: str, after: str,
) -> None:
    written, nsn, vanity = phone
    masked = mask_text(f"{before}{written}{after}")
    # mask_phone shows at most four digits on each side of its "***" and hides three at least
    assert longest_visible_run(masked, nsn, vanity) <= min(4, len(nsn) - 2), (written, masked)


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(phone=written_phones(), plus_for_space=st.booleans(),
       where=st.sampled_from(["GET /hooks/uis?phone={}&x=1", "имя=Иван&phone={}",
                              '{{"error": "bad body: phone={}"}}', "/contacts/{}/notes"]))
@example(phone=("8 916 123-45-67", "9161234567", False), plus_for_space=True,
         where="имя=Иван&phone={}")
@example(phone=("+1 415 523 8886", "4155238886", False), plus_for_space=False,
         where="GET /hooks/uis?phone={}&x=1")
def test_a_phone_urlencoded_in_a_url_or_form_is_masked(
    phone: tuple[str, str, bool], plus_for_space: bool, where: str,
) -> None:
    """A log line may quote a URL or a form body (an error echoing what was sent): the
    phone is then escaped ("%2B7%20916…") or, in a form's value, joined by "+"
    ("8+916+123-45-67"), which read as plain text is no phone run at all. (In a path a "+"
    is itself, so there it is escaped.)"""
    written, nsn, vanity = phone
    in_form = where.endswith("={}&x=1") or "phone={}" in where  # a value after "="
    encoded = quote_plus(written) if plus_for_space and in_form else quote(written, safe="")
    masked = mask_text(where.format(encoded))
    assert longest_visible_run(masked, nsn, vanity) <= min(4, len(nsn) - 2), (encoded, masked)


def test_an_urlencoded_email_is_masked() -> None:
    for text in ("email=ivan.petrov%40mail.ru&phone=", "GET /contacts?query=ivan.petrov%40mail.ru",
                 "to=ivan%2Epetrov%40mail%2Eru", "e=ivan.petrov+tag%40mail.ru"):
        masked = mask_text(text)
        assert "ivan" not in masked and "petrov" not in masked, masked
        assert "***@mail" in masked, masked


def test_masking_keeps_what_is_not_a_phone() -> None:
    text = ("HTTP 500 Internal Server Error; attempt 3 of 12 in 4567 ms; at 2026-11-23 18:30:00, "
            "23.11.2026; lead 01JD3ABCDEF7K9QRST; next try 2026-12-07T17:57:15.123456+00:00")
    assert mask_text(text) == text
    form = "name=%D0%98%D0%B2%D0%B0%D0%BD&comment=call+me+back&utm_source=ya%2Bdirect"
    assert mask_text(form) == form
    assert mask_text("тел.8\u00a0916\u00a0111\u00a022\u00a038 и 8/916/111/22/38") == \
        "тел.8916***2238 и 8916***2238"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    configure_logging(json_logs=True)
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:] = saved
    root.setLevel(level)


def test_the_log_chain_masks_phones_with_nbsp_and_slashes(log_stream: io.StringIO) -> None:
    log = logging.getLogger("leadhub.test")
    log.warning("call back 8\u00a0916\u00a0111\u00a022\u00a038", extra={"phone": "8/916/111/22/38"})
    record = json.loads(log_stream.getvalue().splitlines()[-1])
    assert record["event"] == "call back 8916***2238"
    assert record["phone"] == "8916***2238"
    assert "111" not in log_stream.getvalue()


def test_the_log_chain_masks_an_urlencoded_body(log_stream: io.StringIO) -> None:
    log = logging.getLogger("leadhub.test")
    log.warning("unreadable: %s", "name=Ivan&phone=8+916+111-22-38&email=ivan.petrov%40mail.ru")
    line = log_stream.getvalue().splitlines()[-1]
    assert "111" not in line and "petrov" not in line, line
    assert "8916***2238" in json.loads(line)["event"]
