"""Masking of personal data for logs: enough left to recognise a lead, not to call it.

Logs travel further than the store (aggregators, support tickets), so a phone or an
email never appears there whole. Masks keep a fixed ``***`` whatever the hidden length,
so the mask does not leak the length either.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

import phonenumbers

from hub.normalize.emails import EMAIL_CANDIDATE

_MASK = "***"

#: What libphonenumber (``hub/normalize/phones.py``) accepts between the digits of one
#: number: its ``_VALID_PUNCTUATION`` and ``_STAR_SIGN`` (phonenumbers 9, copied because
#: they are private; tests/unit/test_masking.py fails if the library's grow), any whitespace,
#: and the invisible characters people paste (zero-width space, word joiner, soft hyphen).
PHONE_PUNCTUATION = ("-x\u2010-\u2015\u2212\u30fc\uff0d-\uff0f \u00a0\u00ad\u200b\u2060\u3000()"
                     "\uff08\uff09\uff3b\uff3d.\\[\\]/~\u2053\u223c\uff5e*")
PLUS_CHARS = "+\uff0b"
_SEP = f"[{PHONE_PUNCTUATION}\\s]"
_DIGIT_START = f"(?<![\\d{PLUS_CHARS}])[{PLUS_CHARS}]?\\d"
#: Digits (any script: ``\\d`` is Unicode) joined by any run of separators, with up to two
#: ASCII letters in a gap: libphonenumber drops up to two letters from a number, and reads
#: three or more as a vanity number (``_VANITY``). Possessive runs keep the search linear;
#: the lookbehind makes a match start only where a digit run starts. Wider than phone
#: syntax on purpose: masking too much is harmless, too little is a leak.
_PHONE_RUN = re.compile(f"{_DIGIT_START}(?:{_SEP}*+(?:[A-Za-z]{_SEP}*+){{0,2}}\\d)*+")
#: A vanity number: three digits at least, then letters and digits ("8 800 FLOWERS").
_VANITY = re.compile(f"(?<![\\dA-Za-z{PLUS_CHARS}])[{PLUS_CHARS}]?\\d(?:{_SEP}*+\\d){{2}}"
                     f"(?:{_SEP}*+[A-Za-z\\d])++")
_LETTER = re.compile("[A-Za-z]")
_HELD_MASK = "\ue000"  # a private-use character: neither a digit nor a separator
#: A date starting a match ("2026-11-23 18" from "2026-11-23 18:30") is not a phone.
_DATE_PREFIX = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
                          r"|(?:0[1-9]|[12]\d|3[01])\.(?:0[1-9]|1[0-2])\.(?:19|20)\d\d")
#: Seconds with their fraction after a time of day ("18:30:15.123456"), not a phone.
_TIME_BEFORE = re.compile(r"\d:\d\d:$")
_SECONDS = re.compile(r"\d\d[.,]\d{1,9}")
#: A piece of a URL or an urlencoded form between its delimiters ("ivan%40mail.ru" in
#: "?email=ivan%40mail.ru&x=1"), matched without backtracking (a token is read once).
_URL_TOKEN = re.compile(r"[^\s&=?#\"'<>,;]+")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
#: Digits a run needs to be masked: 7 (the shortest national number with its trunk or
#: area code), or 5 after a "+" (a short number of a small country with its code).
_MIN_DIGITS, _MIN_DIGITS_PLUS = 7, 5
#: Where a vanity number without "+code" is looked up (the hub's default region).
VANITY_REGION = "RU"
_KEYPAD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                        "22233344455566677778889999" * 2)


def mask_phone(phone: str) -> str:
    """``+79161234567`` → ``+7916***4567``; at least three digits are always hidden."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    n = len(digits)
    if n < 5:
        return _MASK
    tail = 4 if n >= 10 else 2
    head = max(0, min(4, n - tail - 3))
    plus = "+" if phone.lstrip().startswith("+") else ""
    return f"{plus}{digits[:head]}{_MASK}{digits[n - tail:]}"


def mask_email(email: str) -> str:
    """``ivan@example.ru`` → ``i***@example.ru``: the domain stays, it says which company."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        return _MASK
    return f"{local[0]}{_MASK}@{domain}"


def mask_text(text: str) -> str:
    """Mask every email and phone-like run in free text (a message, a log line).

    At least as permissive as ``normalize_phone``: whatever it accepts as a phone, written
    inside a longer text, is masked (tests/unit/test_masking.py checks this property), whatever
    the separators (non-breaking and ideographic spaces, slashes, dots, brackets, invisible
    characters), digits (full-width, Arabic-Indic, ...) or letters (two dropped, or a
    vanity number). Order numbers and other long digit runs are masked as well; dates
    (``2026-11-23``, ``23.11.2026``, with a time after them) are not.
    """
    if "%" in text or "+" in text:
        text = _URL_TOKEN.sub(_mask_url_token, text)
    return _mask_plain(text).replace(_HELD_MASK, _MASK)


def _mask_plain(text: str) -> str:
    """``mask_text`` on text as it is, the masks of the vanity numbers still held."""
    masked = EMAIL_CANDIDATE.sub(lambda m: mask_email(m.group(0)), text)
    if not _LETTER.search(masked):
        return _PHONE_RUN.sub(_mask_run, masked)
    # Vanity numbers first (a masked digit run must not start one), their masks held by a
    # placeholder: "*" separates digits too, so "8800***9377" would be masked again.
    masked = _VANITY.sub(_mask_vanity, masked)
    return _PHONE_RUN.sub(_mask_run, masked)


def _mask_url_token(match: re.Match[str]) -> str:
    """A token of a URL or an urlencoded form, decoded and masked where that hides more:
    ``ivan%40mail.ru``, ``phone=8+916+123-45-67`` (a form's "+" is a space) and
    ``%2B1%20415%20523%208886`` read as plain text show no address and no phone run long
    enough to mask (a log line may quote a URL, a form body or an error that echoes one).
    A "+" is read as a space only in a value after "=": elsewhere it is itself
    ("…15.123456+00:00"). The masks are held (``_HELD_MASK``): the plain pass after this
    one must not read "7916***4567" as digits joined by "*" and mask it again."""
    token, at = match.group(0), match.start()
    readings = []
    if _ESCAPE.search(token):
        readings.append(unquote(token))
    if "+" in token and at > 0 and match.string[at - 1] == "=":
        # in a form "+" is a space, yet "ivan+tag%40mail.ru" may be one address: the
        # reading that hides more wins
        readings.append(unquote_plus(token))
    masks = [masked for decoded in dict.fromkeys(readings)
             if (masked := _mask_plain(decoded)) != decoded]
    return min(masks, key=len).replace(_MASK, _HELD_MASK) if masks else token


def _mask_run(match: re.Match[str]) -> str:
    """Mask the parts of a digit run that can be one number: windows of digits with at
    most two letters between their first and last digit, long enough to be a phone.
    Linear: the windows' ends only move forward (two pointers)."""
    found = match.group(0)
    if _SECONDS.fullmatch(found) and _TIME_BEFORE.search(match.string, 0, match.start()):
        return found  # "15.123456" of "18:30:15.123456"
    digits = [i for i, ch in enumerate(found) if ch.isdecimal()]
    letters = [0] * len(digits)  # letters[k]: letters in the gap before digit k
    for k in range(1, len(digits)):
        letters[k] = sum(1 for ch in found[digits[k - 1] + 1:digits[k]] if _is_letter(ch))
    plus = found[0] in PLUS_CHARS
    hide = [False] * len(digits)
    j, inside, hidden_to = 0, 0, -1  # the window is digits[i..j] with ``inside`` letters
    for i in range(len(digits)):
        if j < i:
            j, inside = i, 0
        while j + 1 < len(digits) and inside + letters[j + 1] <= 2:
            j += 1
            inside += letters[j]
        if j - i + 1 >= (_MIN_DIGITS_PLUS if plus and i == 0 else _MIN_DIGITS):
            for k in range(max(i, hidden_to + 1), j + 1):
                hide[k] = True
            hidden_to = j
        if j > i:
            inside -= letters[i + 1]
    out, at, k = [], 0, 0
    while k < len(digits):
        if not hide[k]:
            k += 1
            continue
        end = k
        while end + 1 < len(digits) and hide[end + 1]:
            end += 1
        start = 0 if k == 0 and plus else digits[k]
        out += [found[at:start], _mask_span(found[start:digits[end] + 1])]
        at, k = digits[end] + 1, end + 1
    out.append(found[at:])
    return "".join(out)


def _is_letter(ch: str) -> bool:
    """A letter libphonenumber counts; "x" is also its extension mark and punctuation, so
    it is taken as a separator here (which can only mask more)."""
    return ch.isascii() and ch.isalpha() and ch not in "xX"


def _mask_span(span: str) -> str:
    date = _DATE_PREFIX.match(span)
    if date and sum(ch.isdecimal() for ch in span[date.end():]) < _MIN_DIGITS:
        return span
    return mask_phone(span)


def _mask_vanity(match: re.Match[str]) -> str:
    """Mask the longest start of ``match`` that libphonenumber reads as a valid number once
    its letters are keypad digits ("8 800 FLOWERS"); "HTTP 500 Internal" stays readable."""
    found = match.group(0)
    if sum(1 for ch in found if ch.isascii() and ch.isalpha()) < 3:
        return found
    ends = [i + 1 for i, ch in enumerate(found) if ch.isalnum()]
    for end in reversed(ends[:_MAX_PHONE_CHARS]):
        candidate = found[:end]
        # fewer than three letters are dropped, not read: the digit runs' business
        if sum(1 for ch in candidate if ch.isascii() and ch.isalpha()) >= 3 and (
                _valid_phone(candidate)  # "+8 916…" is read as "8 916…" (phones.py):
                or (candidate[0] in PLUS_CHARS and _valid_phone(candidate[1:]))):
            return mask_phone(candidate.translate(_KEYPAD)).replace(_MASK, _HELD_MASK) + found[end:]
    return found


#: libphonenumber reads at most 17 digits of a national number, plus a code or prefix.
_MAX_PHONE_CHARS = 21


def _valid_phone(text: str) -> bool:
    try:
        number = phonenumbers.parse(text, VANITY_REGION)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))
