"""``/admin/``: the web admin for people. Signing in with the admin token opens a
server-side session (``hub/api/sessions.py``); the cookie holds only its random id. The
page itself only calls the admin API, so there is one implementation of every admin
action, and every write it makes carries the session's CSRF token (``hub/api/csrf.py``).
The page's script and style are files, so its Content-Security-Policy allows no inline
code (``hub/api/headers.py``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Annotated

import redis
from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from hub.api.csrf import check_origin, check_write
from hub.api.deps import (
    State,
    admin_token,
    client_address,
    current_session,
    token_matches,
)
from hub.api.errors import ApiError
from hub.api.sessions import COOKIE, SESSION_TTL_S, SessionStore
from hub.api.throttle import FailedSignIns

router = APIRouter(prefix="/admin", include_in_schema=False)
STATIC = Path(__file__).with_name("static")
ASSETS = {"admin.js": "text/javascript", "admin.css": "text/css"}
#: the cookie of releases before sessions, which held the admin token itself
LEGACY_COOKIE = "leadhub_admin"


def _login_page(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = (STATIC / "login.html").read_text(encoding="utf-8")
    message = f"<p>{html.escape(error)}</p>" if error else ""
    return HTMLResponse(text.replace("{{error}}", message), status_code=status, headers=headers)


def _is_https(request: Request) -> bool:
    """uvicorn sets the scheme from ``X-Forwarded-Proto`` when a trusted proxy sends it."""
    return request.url.scheme == "https"


@router.get("/", response_class=HTMLResponse)
def admin_page(request: Request, state: State) -> Response:
    admin_token(state)
    session = current_session(state, request)
    if session is None:
        return _login_page()
    page = (STATIC / "admin.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace("{{csrf_token}}", html.escape(session.csrf_token)))


@router.get("/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ApiError(404, "not_found", "no such file")
    return FileResponse(STATIC / name, media_type=ASSETS[name])


@router.post("/login")
def login(request: Request, state: State, token: Annotated[str, Form()]) -> Response:
    expected = admin_token(state)
    check_origin(request)  # a sign-in forced by another origin is refused too
    failures = FailedSignIns(state.rt.redis)
    client = client_address(request)
    wait = failures.retry_after(client)
    if wait is not None:
        return _login_page("Too many wrong tokens from your address; try again later.", 429,
                           {"Retry-After": str(wait)})
    if not token_matches(token, expected):
        failures.record(client)
        return _login_page("Wrong token.", 401)
    store = SessionStore(state.rt.redis, expected)
    try:
        store.delete(request.cookies.get(COOKIE))  # a new sign-in never keeps an old id
        session_id, _ = store.create()
    except redis.RedisError:
        return _login_page("Sessions are kept in Redis, which is not reachable.", 503)
    resp = RedirectResponse("/admin/", status_code=303)
    resp.set_cookie(COOKIE, session_id, max_age=SESSION_TTL_S, path="/", httponly=True,
                    samesite="strict", secure=_is_https(request))
    if LEGACY_COOKIE in request.cookies:  # no copy of the token left in the browser
        resp.delete_cookie(LEGACY_COOKIE, path="/", httponly=True, samesite="strict")
    return resp


@router.post("/logout")
def logout(request: Request, state: State,
           csrf_token: Annotated[str, Form()] = "") -> Response:
    session = current_session(state, request)
    if session is not None:
        check_write(request, session.csrf_token, csrf_token)
        SessionStore(state.rt.redis, admin_token(state)).delete(request.cookies.get(COOKIE))
    resp = RedirectResponse("/admin/", status_code=303)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_is_https(request))
    return resp
