r"""HTTP to the amoCRM API v4: authentication and the mapping of failures to ``hub.errors``.

Two ways to authenticate (reference §1): a long-lived token, or OAuth. With OAuth the
access token lives 24 h and each refresh token works once, so every rotation is written
to a JSON file (``data_dir/amocrm/<connector>.json``) before the new tokens are used,
under a file lock shared by all worker processes: a worker that finds the file already
rotated by another uses that instead of burning a refresh token twice.

Failure mapping: ``hub.sdk``'s ``ConnectorClient`` sends every request (holding a slot of
the shared limiter) and maps what all HTTP APIs share: 429 → ``RateLimited`` (with
``Retry-After`` when sent); 5xx, timeouts and broken connections after the request left →
``RetryableError(uncertain=True)`` for writes; connection failures before sending →
``RetryableError``. amoCRM's own rules are ``amo_error``, its hook: 401/402 and a 403 with
a JSON body (code 113: the IP is not allowed; or missing rights) → ``RetryableError`` (an
admin can fix credentials, billing or the IP list without losing leads); a 403 whose body
is not JSON, or says the account is blocked → ``DestinationPaused``: amoCRM blocks an
account "for repeatedly exceeding the number of requests per second" with a 403 (amoCRM's
error list as clients keep it: "403 — Аккаунт заблокирован, за неоднократное превышение
количества запросов в секунду", dotzero/amocrm-php ``AmoCRM\Exception``, whose tests map a
403 with a non-JSON body to exactly that; reference §1 (a2): "stop sending and wait
(minutes)"). The block's length is not documented: ``Retry-After`` when sent, else
``BLOCK_PAUSE_S``. 400 → ``AmoValidationError`` (permanent) with the API's
``validation-errors``. A 2xx whose body is not JSON is retried (uncertain for writes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hub.sdk import (
    ANY_STATUS,
    ConnectorClient,
    ConnectorConfig,
    ConnectorContext,
    DeliveryError,
    DestinationPaused,
    PermanentError,
    RetryableError,
    parse_retry_after,
)
from plugins.amocrm.lookup_timeout import LookupTimeout
from plugins.amocrm.state_file import StateFile

log = logging.getLogger(__name__)
EARLY_REFRESH_S = 300  # refresh this long before the access token expires
#: How long to stop sending after amoCRM's 403 "account blocked": the docs give no length
#: (NOT confirmed), and a few minutes is what they ask for ("wait", reference §1 (a2)).
BLOCK_PAUSE_S = 300.0
BLOCKED_WORDS = ("blocked", "заблокирован")


class AmoValidationError(PermanentError):
    """A 400 answer: ``errors`` holds the API's ``validation-errors`` entries."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors

    def by_request_id(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in self.errors:
            out.setdefault(str(entry.get("request_id", "")), []).extend(entry.get("errors") or [])
        return out


@dataclass(frozen=True)
class OAuthSettings:
    client_id: str
    client_secret: str
    refresh_token: str
    redirect_uri: str


class TokenFile(StateFile):
    """The rotated OAuth tokens of one connector, shared by every process on the host."""

    def __init__(self, path: Path, seed_refresh_token: str) -> None:
        super().__init__(path)
        # The file belongs to the refresh token the admin configured; a new one in the
        # config (after re-authorizing) makes the stored chain obsolete.
        self.seed = hashlib.sha256(seed_refresh_token.encode()).hexdigest()[:16]

    def load(self) -> dict[str, Any] | None:
        data = self.read()
        return data if data is not None and data.get("seed") == self.seed else None

    def save(self, access_token: str, refresh_token: str, expires_at: float) -> None:
        self.write({"seed": self.seed, "access_token": access_token,
                    "refresh_token": refresh_token, "expires_at": expires_at})


class AmoClient:
    """A synchronous amoCRM client; ``request`` returns parsed JSON, or None for 204."""

    def __init__(
        self, config: ConnectorConfig, context: ConnectorContext, *, base_url: str,
        timeout_s: float, access_token: str | None = None, oauth: OAuthSettings | None = None,
        token_file: Path | None = None,
    ) -> None:
        if (access_token is None) == (oauth is None):
            raise ValueError("give either access_token or oauth")
        # amoCRM counts every request against its 7/s, whatever it is: the client holds a
        # slot of the hub's shared limiter for each, from when it leaves until it is answered
        self._http = ConnectorClient(config, context, base_url=base_url, timeout_s=timeout_s,
                                     headers={"Accept": "application/json"}, errors=amo_error)
        self._static_token = access_token
        self._oauth = oauth
        self._tokens = (TokenFile(token_file, oauth.refresh_token)
                        if oauth is not None and token_file is not None else None)
        self._access: str | None = None
        self._expires_at = 0.0
        self._refresh_token = oauth.refresh_token if oauth is not None else ""
        self._lock = threading.Lock()
        self._lookups = LookupTimeout(timeout_s)

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None,
        json_body: Any = None, timeout: float | None = None,
    ) -> Any:
        token = self._bearer()
        response = self._send(method, path, token, params, json_body, timeout)
        if response.status_code == 401 and self._oauth is not None:
            # An access token can be revoked before it expires: rotate once and resend
            # (a 401 means the request was not processed, so resending is safe).
            response = self._send(method, path, self._rotate(rejected=token), params,
                                  json_body, timeout)
        return self._result(method, path, response)

    def find(self, path: str, params: dict[str, Any]) -> Any:
        """A ``GET`` that looks for what an uncertain attempt made, under the look-up
        timeout (``lookup_timeout``): given up sooner than a write, since it changes
        nothing."""
        limit = self._lookups.current()
        started = time.monotonic()
        try:
            answer = self.request("GET", path, params=params, timeout=limit)
        except RetryableError as exc:
            if isinstance(exc.__cause__, httpx.TimeoutException):
                self._lookups.ran_out()
            raise
        self._lookups.answered(time.monotonic() - started)
        return answer

    # ------------------------------------------------------------ transport

    def _send(
        self, method: str, path: str, token: str, params: dict[str, Any] | None, body: Any,
        timeout: float | None = None,
    ) -> httpx.Response:
        # a 401 comes back (not raised) so ``request`` can rotate the token and resend
        return self._http.request(method, path, params=params, json=body, accept=(401,),
                                  headers={"Authorization": f"Bearer {token}"},
                                  timeout=timeout)

    def _result(self, method: str, path: str, response: httpx.Response) -> Any:
        error = self._http.error_for(response)  # amo_error, then the standard mapping
        if error is not None:
            raise error
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise RetryableError(
                f"amoCRM {method} {path}: {response.status_code} with a body that is not JSON",
                uncertain=method != "GET") from exc

    # ------------------------------------------------------------ OAuth

    def _bearer(self) -> str:
        if self._static_token is not None:
            return self._static_token
        with self._lock:
            if self._access is not None and time.time() < self._expires_at - EARLY_REFRESH_S:
                return self._access
        return self._rotate(rejected=None)

    def _rotate(self, rejected: str | None) -> str:
        """A fresh access token: from the shared file if another process rotated, else refresh."""
        assert self._oauth is not None
        with self._lock, self._tokens.locked() if self._tokens else contextlib.nullcontext():
            stored = self._tokens.load() if self._tokens else None
            if stored is not None:
                self._refresh_token = str(stored["refresh_token"])
                fresh = time.time() < float(stored["expires_at"]) - EARLY_REFRESH_S
                if fresh and stored["access_token"] != rejected:
                    self._access, self._expires_at = stored["access_token"], stored["expires_at"]
                    return str(stored["access_token"])
            elif self._access is not None and self._access != rejected and rejected is not None:
                return self._access  # another thread of this process already rotated
            body = {"client_id": self._oauth.client_id, "client_secret": self._oauth.client_secret,
                    "grant_type": "refresh_token", "refresh_token": self._refresh_token,
                    "redirect_uri": self._oauth.redirect_uri}
            try:
                response = self._http.post("/oauth2/access_token", json=body, accept=ANY_STATUS)
            except RetryableError as exc:  # certain: the request this token was for never left
                raise RetryableError(f"amoCRM OAuth refresh failed: {exc}") from exc
            data = _json_or_none(response) if response.status_code == 200 else None
            if not isinstance(data, dict) or "access_token" not in data:
                raise RetryableError(self._http.masker.mask(
                    f"amoCRM OAuth refresh failed ({response.status_code} {_excerpt(response)}); "
                    "re-authorize the integration and set a new refresh_token"
                ))
            access, refresh = str(data["access_token"]), str(data["refresh_token"])
            expires_at = time.time() + float(data.get("expires_in", 86400))
            if self._tokens is not None:
                self._tokens.save(access, refresh, expires_at)  # before use: single-use token
            else:
                log.warning("amoCRM refresh token rotated but not persisted (no token file)")
            self._access, self._expires_at, self._refresh_token = access, expires_at, refresh
            return access


def amo_error(response: httpx.Response) -> DeliveryError | None:
    """amoCRM's own reading of a failed answer (see the module docstring); None leaves it
    to the standard mapping."""
    status = response.status_code
    where = f"amoCRM {response.request.method} {response.request.url.path}"
    if status == 403 and _account_blocked(response):
        pause = parse_retry_after(response.headers.get("retry-after")) or BLOCK_PAUSE_S
        return DestinationPaused(
            f"{where}: 403, the account is blocked for exceeding the request rate; "
            f"pausing {pause:.0f} s: {_excerpt(response)}", pause_s=pause)
    if status in (401, 402, 403):
        reason = {401: "the token is invalid or expired", 402: "the account is not paid",
                  403: "access denied (IP not allowed, code 113, or the user lacks "
                       "rights)"}[status]
        return RetryableError(f"{where}: {status}, {reason}: {_excerpt(response)}")
    if status == 400:
        errors = _json_or_none(response)
        entries = errors.get("validation-errors") if isinstance(errors, dict) else None
        if isinstance(entries, list):
            return AmoValidationError(f"{where}: 400 {json.dumps(entries, ensure_ascii=False)}",
                                      entries)
    return None


def _account_blocked(response: httpx.Response) -> bool:
    """A 403 for the request rate: its body is no JSON (a JSON 403 names the IP, code 113,
    or missing rights), or it says "blocked"."""
    text = response.text.lower()
    return (not isinstance(_json_or_none(response), dict)
            or any(word in text for word in BLOCKED_WORDS))


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _excerpt(response: httpx.Response) -> str:
    return response.text[:300].replace("\n", " ")
