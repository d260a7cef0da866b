"""``/admin/``: the web admin for people. The same admin token, kept in a cookie
(HttpOnly, SameSite=Strict, so another site cannot ride on it); the page itself only
calls the admin API, so there is one implementation of every admin action."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hub.api.deps import State

router = APIRouter(prefix="/admin", include_in_schema=False)
COOKIE = "leadhub_admin"
PAGE = Path(__file__).with_name("static") / "admin.html"
LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LeadHub admin</title>
<style>body{font:15px system-ui;margin:12vh auto;max-width:360px}
input,button{font:inherit;padding:6px;width:100%;margin:6px 0}</style>
</head><body><h1>LeadHub</h1><form method="post" action="/admin/login">
<label>Admin token<input type="password" name="token" autofocus required></label>
<button>Sign in</button>{error}</form></body></html>"""


def _valid(state: State, token: str | None) -> bool:
    expected = state.rt.config.hub.admin_token.get_secret_value()
    return bool(expected and token and hmac.compare_digest(token.encode(), expected.encode()))


@router.get("/", response_class=HTMLResponse)
def admin_page(request: Request, state: State) -> Response:
    if not _valid(state, request.cookies.get(COOKIE)):
        return HTMLResponse(LOGIN.replace("{error}", ""))
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.post("/login")
def login(state: State, token: Annotated[str, Form()]) -> Response:
    if not _valid(state, token):
        return HTMLResponse(LOGIN.replace("{error}", "<p>Wrong token.</p>"), status_code=401)
    resp = RedirectResponse("/admin/", status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600)
    return resp


@router.post("/logout")
def logout() -> Response:
    resp = RedirectResponse("/admin/", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp
