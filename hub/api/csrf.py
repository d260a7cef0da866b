"""Cross-site request forgery: what a cookie-authenticated write must show.

``SameSite=Strict`` keeps the cookie from other *sites*, but a site is the registrable
domain: a page on another port of the same host, or on a sibling subdomain, is the same
site and its requests carry the cookie (issue 8, finding 4). So every write made with the
session cookie must also come from the hub's own *origin* (``Origin``, else ``Referer``)
and carry the session's CSRF token in ``X-CSRF-Token`` (the admin page reads it from its
``<meta name="csrf-token">``). Bearer-token requests carry no ambient credential and are
not checked.

The hub's own origin is the request's scheme (``https`` behind a proxy that says so with
``X-Forwarded-Proto``, from an address uvicorn trusts: ``FORWARDED_ALLOW_IPS``) and its
``Host`` header; a proxy must pass ``Host`` through.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request

from hub.api.errors import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-case, default port dropped; None for
    anything that is not an http(s) URL (``null``, an opaque origin, garbage)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(request: Request) -> str | None:
    """The origin this request was sent to, as the browser sees it."""
    host = request.headers.get("host", "")
    return normalize_origin(f"{request.url.scheme}://{host}") if host else None


def sender_origin(request: Request) -> str | None:
    """The origin the request came from: ``Origin``, else ``Referer`` (browsers drop
    ``Origin`` on some same-origin requests, never both with our Referrer-Policy)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return normalize_origin(origin)
    referer = request.headers.get("referer")
    return normalize_origin(referer) if referer else None


def check_origin(request: Request) -> None:
    """403 unless the request comes from the hub's own origin."""
    mine, theirs = own_origin(request), sender_origin(request)
    if mine is None or theirs is None or theirs != mine:
        raise ApiError(403, "cross_origin", "a write with the admin cookie must come from the "
                       "hub's own page (Origin or Referer of this origin)")


def check_write(request: Request, expected_token: str, given_token: str | None) -> None:
    """The full check of a cookie-authenticated write: own origin, then the session's token."""
    check_origin(request)
    if not given_token or not hmac.compare_digest(given_token.encode(), expected_token.encode()):
        raise ApiError(403, "csrf_token", "missing or wrong X-CSRF-Token of the session")
