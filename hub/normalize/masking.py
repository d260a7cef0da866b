"""Masking of personal data for logs: enough left to recognise a lead, not to call it.

Logs travel further than the store (aggregators, support tickets), so a phone or an
email never appears there whole. Masks keep a fixed ``***`` whatever the hidden length,
so the mask does not leak the length either.
"""

from __future__ import annotations

import re

from hub.normalize.emails import EMAIL_CANDIDATE

_MASK = "***"

#: A run of 7+ digits that may be split by spaces, dots, dashes or parens, with an
#: optional "+": wider than real phone syntax on purpose - masking too much is harmless.
#: The lookbehind keeps the search linear (a match starts only where a digit run starts).
_PHONE_LIKE = re.compile(r"(?<![\d+])\+?\d(?:[ \t.()\-]{0,3}\d){6,}")
#: A date starting a match ("2026-11-23 18" from "2026-11-23 18:30") is not a phone.
_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}|\d{2}\.\d{2}\.\d{4}")


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
    """Mask every email and phone-like digit run in free text (a message, a log line).

    Order numbers and other long digit runs are masked as well; dates (``2026-11-23``,
    ``23.11.2026``, with a time after them) are not.
    """
    masked = EMAIL_CANDIDATE.sub(lambda m: mask_email(m.group(0)), text)
    return _PHONE_LIKE.sub(_mask_phone_match, masked)


def _mask_phone_match(match: re.Match[str]) -> str:
    found = match.group(0)
    date = _DATE_PREFIX.match(found)
    if date and sum(ch.isdigit() for ch in found[date.end():]) < 7:
        return found
    return mask_phone(found)
