"""Email addresses: validated by syntax and lower-cased, so ``Ivan@Example.RU`` dedups.

``email-validator`` does the RFC work (internationalized addresses included). We never
ask DNS: normalization is pure, and a lead with a typo'd domain is still a lead.
Lower-casing the local part is not strictly RFC, but every mail provider a lead uses
ignores case there, and the contract asks for it.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

#: RFC 5321 caps an address at 254 octets; longer input is not an address.
_MAX_INPUT = 320

_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
#: Loose on purpose: it only finds candidates in text, ``normalize_email`` judges them.
#: The lookbehind starts a match only where a run of address characters starts, which
#: keeps the search linear on megabytes of text without an "@".
EMAIL_CANDIDATE = re.compile(rf"(?<!{_LOCAL}){_LOCAL}+@[\w-]+(?:\.[\w-]+)+")


def normalize_email(raw: str) -> str | None:
    """The address lower-cased, or None when it is not a syntactically valid address.

    Accepts ``mailto:`` links and ``Name <address>`` as mail headers write it.
    """
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[len("mailto:"):].split("?", 1)[0].strip()
    if text.endswith(">") and "<" in text:  # "Иван Петров <ivan@x.ru>", any display name
        text = text[text.rindex("<") + 1 : -1].strip()
    if not text or len(text) > _MAX_INPUT:
        return None
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.normalized.lower()


def find_emails(text: str) -> list[str]:
    """Every valid address in free text, normalized, first seen first."""
    found: list[str] = []
    for match in EMAIL_CANDIDATE.finditer(text):
        email = normalize_email(match.group(0).strip(".'`"))
        if email is not None and email not in found:
            found.append(email)
    return found
