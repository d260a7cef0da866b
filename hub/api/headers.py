"""Security headers on every answer of the admin, the admin API, docs and health.

Webhooks (``/hooks/*``) do not pass through here (``HubApp.__call__`` sends them straight
to their handler): providers read no such headers, and that path is the hot one.

- ``Content-Security-Policy``: the admin page runs only its own files (``'self'``), talks
  only to its own origin and cannot be framed; JSON answers allow nothing at all. A route
  that sets its own policy keeps it (``/docs`` allows the Swagger UI bundle and the hash
  of its one inline script: ``hub/api/apidocs.py``).
- ``X-Frame-Options: DENY`` for browsers without ``frame-ancestors`` (clickjacking).
- ``X-Content-Type-Options: nosniff``: a JSON answer holding lead text is never run as HTML.
- ``Referrer-Policy: same-origin``: the admin's addresses never leak to other sites, and
  its own requests keep the ``Referer`` the CSRF check may fall back on.
- ``Cache-Control: no-store`` on the admin and the API: leads hold personal data.
- ``Strict-Transport-Security`` when the request came over https.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=31536000"


def security_headers(path: str, https: bool) -> list[tuple[bytes, bytes]]:
    """The headers every answer to ``path`` gets (a pure function: the tests read it)."""
    csp = ADMIN_CSP if path == "/admin" or path.startswith("/admin/") else API_CSP
    headers = [
        (b"content-security-policy", csp.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]
    if path.startswith(("/admin", "/api/")):
        headers.append((b"cache-control", b"no-store"))
    if https:
        headers.append((b"strict-transport-security", HSTS.encode()))
    return headers


class SecurityHeaders:
    """Pure ASGI middleware (no BaseHTTPMiddleware: no extra task per request); adds each
    header the route did not set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"], scope.get("scheme") == "https")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
