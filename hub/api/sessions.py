"""Sign-in sessions of the web admin, kept in Redis so every api process shares them.

The cookie carries a random session id, never the admin token: a cookie that leaks (a
proxy log, a shared browser profile) ends with the session, and the token itself never
travels again after the sign-in. Redis holds only the SHA-256 of the id, so a copy of
Redis's data holds no live cookie. Each session records a fingerprint of the admin token
it was made under: changing ``[hub] admin_token`` ends every session at the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import redis

COOKIE = "leadhub_session"
CSRF_HEADER = "X-CSRF-Token"
#: how long a sign-in lasts; not renewed by use (an admin signs in again each working day)
SESSION_TTL_S = 12 * 3600
_PREFIX = "leadhub:admin-session:"


@dataclass(frozen=True)
class Session:
    """A live session: what a write must present besides the cookie."""

    csrf_token: str


def _key(session_id: str) -> str:
    return _PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def token_fingerprint(admin_token: str) -> str:
    """Binds a session to the token it was made under, without keeping the token."""
    return hmac.new(admin_token.encode(), b"leadhub admin session", hashlib.sha256).hexdigest()


class SessionStore:
    """Create, find and end sessions. Redis errors propagate: without Redis no one can
    sign in, and the caller answers 503."""

    def __init__(self, conn: redis.Redis[bytes], admin_token: str,
                 ttl_s: int = SESSION_TTL_S) -> None:
        self.conn = conn
        self.fingerprint = token_fingerprint(admin_token)
        self.ttl_s = ttl_s

    def create(self) -> tuple[str, Session]:
        """A new session; returns the id for the cookie (shown nowhere else) and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf_token=secrets.token_urlsafe(32))
        record = {"csrf": session.csrf_token, "token": self.fingerprint}
        self.conn.set(_key(session_id), json.dumps(record), ex=self.ttl_s)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id, or None (unknown, expired, or made under another token)."""
        if not session_id or len(session_id) > 200:
            return None
        raw = self.conn.get(_key(session_id))
        if raw is None:
            return None
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(record, dict) or not hmac.compare_digest(
            str(record.get("token", "")), self.fingerprint
        ):
            return None
        return Session(csrf_token=str(record.get("csrf", "")))

    def delete(self, session_id: str | None) -> None:
        if session_id and len(session_id) <= 200:
            self.conn.delete(_key(session_id))
