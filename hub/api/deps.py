"""Dependencies of the HTTP routers, as ``Annotated`` aliases in one place."""

from __future__ import annotations

import hmac
from typing import Annotated

import redis
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.csrf import SAFE_METHODS, check_write
from hub.api.errors import ApiError
from hub.api.sessions import COOKIE, CSRF_HEADER, Session, SessionStore
from hub.api.state import AppState
from hub.api.throttle import FailedSignIns

_bearer = HTTPBearer(auto_error=False, description="The [hub] admin_token")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.hub
    return state


State = Annotated[AppState, Depends(get_state)]
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def admin_token(state: AppState) -> str:
    """The configured token; 403 when there is none (the admin is off)."""
    token = state.rt.config.hub.admin_token.get_secret_value()
    if not token:
        raise ApiError(403, "admin_disabled", "the admin API is off: set [hub] admin_token")
    return token


def client_address(request: Request) -> str:
    """Who is signing in: the peer, or the client a trusted proxy names (uvicorn applies
    ``X-Forwarded-For`` from ``FORWARDED_ALLOW_IPS`` before we see the request)."""
    return request.client.host if request.client else "unknown"


def token_matches(given: str, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def refuse_if_locked_out(failures: FailedSignIns, client: str) -> None:
    wait = failures.retry_after(client)
    if wait is not None:
        raise HTTPException(429, "too many wrong admin tokens from this address; try later",
                            headers={"Retry-After": str(wait)})


def current_session(state: AppState, request: Request) -> Session | None:
    """The session of the request's cookie; 503 when Redis (which holds sessions) is down."""
    try:
        return SessionStore(state.rt.redis, admin_token(state)).get(request.cookies.get(COOKIE))
    except redis.RedisError:
        raise ApiError(503, "unavailable", "admin sessions are kept in Redis, which is "
                       "not reachable; use the bearer token") from None


def require_admin(request: Request, state: State, creds: Bearer) -> None:
    """The bearer token (API clients), or a session cookie of the web admin. A cookie
    rides along with any request the browser makes, so a write with it must also pass the
    CSRF check (``hub/api/csrf.py``); a bearer token is sent only on purpose."""
    token = admin_token(state)
    if creds is not None:
        failures = FailedSignIns(state.rt.redis)
        client = client_address(request)
        refuse_if_locked_out(failures, client)
        if not token_matches(creds.credentials, token):
            failures.record(client)
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")
        return
    session = current_session(state, request)
    if session is None:
        raise ApiError(401, "unauthorized", "missing or wrong bearer token")
    if request.method not in SAFE_METHODS:
        check_write(request, session.csrf_token, request.headers.get(CSRF_HEADER))


def require_docs_access(request: Request, state: State, creds: Bearer) -> None:
    """``/docs``, ``/redoc``, ``/openapi.json``: they list every source, so the admin's
    unless ``[hub] public_docs``."""
    if not state.rt.config.hub.public_docs:
        require_admin(request, state, creds)


def require_metrics_access(request: Request, state: State, creds: Bearer) -> None:
    """``/metrics`` names every source: the admin's unless ``[hub] public_metrics``."""
    if not state.rt.config.hub.public_metrics:
        require_admin(request, state, creds)


Admin = Depends(require_admin)
DocsAccess = Depends(require_docs_access)
MetricsAccess = Depends(require_metrics_access)
