"""``/openapi.json``, ``/docs`` and ``/redoc``: they list every configured source (the
open ones included), so they are the admin's (bearer token or a web-admin session) unless
``[hub] public_docs = true``. FastAPI's own routes for them are switched off in
``create_app`` because they cannot take a dependency.

The two pages load their bundles from the jsDelivr CDN, as FastAPI's do; their CSP allows
exactly that, and Swagger UI's one inline script by its hash rather than by
``'unsafe-inline'``. Both UIs set inline style attributes, hence ``style-src 'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hub.api.deps import DocsAccess

router = APIRouter(include_in_schema=False, dependencies=[DocsAccess])
OPENAPI_URL = "/openapi.json"
CDN = "https://cdn.jsdelivr.net"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(page: str) -> list[str]:
    """CSP sources (``'sha256-...'``) for each inline ``<script>`` of ``page``."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(page)
    ]


def _page(response: HTMLResponse, csp: str) -> Response:
    response.headers["content-security-policy"] = csp
    return response


@router.get(OPENAPI_URL)
def openapi_json(request: Request) -> Response:
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@router.get("/docs")
def swagger_ui(request: Request) -> Response:
    page = get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - Swagger UI")
    scripts = " ".join([CDN, *inline_script_hashes(bytes(page.body).decode())])
    return _page(page, (
        f"default-src 'none'; script-src {scripts}; style-src {CDN} 'unsafe-inline'; "
        "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ))


@router.get("/redoc")
def redoc(request: Request) -> Response:
    page = get_redoc_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - ReDoc")
    return _page(page, (
        f"default-src 'none'; script-src {CDN}; worker-src blob:; "
        "style-src https://fonts.googleapis.com 'unsafe-inline'; font-src https://fonts.gstatic.com; "
        "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ))
