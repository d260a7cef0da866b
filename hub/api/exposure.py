"""The start check of ``leadhub serve`` and ``leadhub api``: never listen beyond this
machine with an admin token anyone can guess (issue 8, finding 9: the image shipped
``change-me`` and listened on ``0.0.0.0``).

On loopback the example token stays usable, so ``make run`` and the README's quick start
work as they are.
"""

from __future__ import annotations

import ipaddress

#: example values published in our own files; any of them is refused off loopback
EXAMPLE_TOKENS = frozenset({"change-me", "changeme", "change_me", "admin", "secret", "password"})
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach: ``localhost``, 127.0.0.0/8,
    ``::1``. A wildcard (``0.0.0.0``, ``::``, ``""``) or any other name is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def weak_token_reason(token: str) -> str | None:
    """Why ``token`` must not guard a reachable hub, or None. An empty token is fine:
    the admin API is then off altogether."""
    if not token:
        return None
    if token.strip().lower() in EXAMPLE_TOKENS:
        return "is an example value"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters"
    return None


def exposure_problem(host: str, token: str) -> str | None:
    """The message to refuse to start with, or None when listening on ``host`` is safe."""
    reason = weak_token_reason(token)
    if reason is None or is_loopback(host):
        return None
    shown = host or "all addresses"
    return (
        f"refusing to listen on {shown}: [hub] admin_token {reason}, and anyone who can reach "
        "this port could use the admin API. Set LEADHUB_ADMIN_TOKEN (or [hub] admin_token) to a "
        f"random value of at least {MIN_TOKEN_LENGTH} characters, e.g. `openssl rand -hex 24`, "
        "or listen on 127.0.0.1 only (--host 127.0.0.1)."
    )
