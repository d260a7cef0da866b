"""Dependencies of the HTTP routers, as ``Annotated`` aliases in one place."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.api.errors import ApiError
from hub.api.state import AppState

_bearer = HTTPBearer(auto_error=False, description="The [hub] admin_token")


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.hub
    return state


State = Annotated[AppState, Depends(get_state)]


def require_admin(
    request: Request,
    state: State,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer token for the API; the web admin's cookie carries the same token."""
    token = state.rt.config.hub.admin_token.get_secret_value()
    if not token:
        raise ApiError(403, "admin_disabled", "the admin API is off: set [hub] admin_token")
    given = creds.credentials if creds else request.cookies.get("leadhub_admin", "")
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token")


Admin = Depends(require_admin)
