"""Business.Ru's REST client: token repair, signed requests, signed responses verified.

Everything here follows the official PHP SDK, business-ru/business-online-sdk-php
``src/Client.php`` (v1.4.14), step by step:

- **Token.** ``GET /api/rest/repair.json?app_id=…&app_psw=md5(secret + "app_id=…")``
  (``getNewToken``: the token is set to ``""`` first, so the ordinary signing gives
  ``md5("" + secret + query)``); the answer carries a 32-character ``token`` and is signed
  with the empty token. The token is kept until a request is answered **401**, then
  repaired and the request sent again (``request``). Like the SDK's file cache (key
  ``md5(account + app_id)``), the token is kept in a file under ``data_dir`` that every
  process of the hub shares: a repair may end the previous token, so a process answered
  401 first takes a newer token another process wrote, and repairs only when there is
  none. Threads share one repair the same way.
- **Signing.** ``app_id`` added, ``ksort``, nulls → ``""``, PHP ``http_build_query``, then
  ``&app_psw=md5(token + secret + query)`` appended; GET puts it in the query string, other
  methods send it as the form body (``sendRequest``; ``plugins/businessru/php.py``).
- **Verifying.** A 200 answer's ``app_psw`` must equal ``md5(token + secret +
  json_encode(body without app_psw))`` with PHP's ``json_encode`` defaults; the SDK turns
  a mismatch into ``{"error_code": "auth:1"}``. Here a mismatch is an error: certain for a
  GET (nothing changed; retried), **uncertain** for a POST/PUT/DELETE (the record may exist:
  the destination looks it up before creating it again).
- **Limit.** Over its request limit Business.Ru answers **HTTP 503**. The SDK sleeps 30 s
  and resends when built ``$sleepy`` (``rSleep``). The destination raises
  ``RateLimited(retry_after=Retry-After or 30)`` so the engine waits without holding a
  worker; the reader, in the middle of paging, waits itself (``limit_wait_s``, at most
  ``limit_waits`` times) and then raises.

``hub.sdk.ConnectorClient`` carries every request (limiter slot, transport errors as
certain/uncertain ``RetryableError``, secret masking): 401 and 503 are ``accept``-ed and
handled here, every other status takes its standard mapping (5xx uncertain for writes,
4xx permanent). Where it does not fit: it cannot build the query string (httpx encodes
parameters its own way, and the signature covers the exact bytes), so the query is built
here and passed in the URL or as ``content``; and the token (a run-time secret) never
appears in a message because no answer body of the repair is ever quoted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from hub.sdk import (
    ConnectorClient,
    ConnectorConfig,
    ConnectorContext,
    PermanentError,
    RateLimited,
    RetryableError,
    parse_retry_after,
)
from plugins.businessru.php import http_build_query, json_encode, ksort, nulls_to_empty

log = logging.getLogger(__name__)
API = "/api/rest"
SDK_SLEEP_S = 30.0  # the SDK's rSleep
TOKEN_LEN = 32
MAX_RENEWALS = 3  # other processes may repair (and so end) the token in between
FORM = "application/x-www-form-urlencoded"


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def signed_query(params: Mapping[str, Any], app_id: str, token: str, secret: str) -> str:
    """The SDK's request string: ``app_id`` added, ksort, nulls → "", http_build_query,
    ``&app_psw=md5(token + secret + query)``."""
    full = nulls_to_empty(ksort({**params, "app_id": app_id}))
    query = http_build_query(full)
    return f"{query}&app_psw={md5(token + secret + query)}"


def response_signature(body: Mapping[str, Any], token: str, secret: str) -> str:
    """What a response's ``app_psw`` must be: md5(token + secret + json_encode(body))."""
    return md5(token + secret + json_encode(body))


class SignatureMismatch(RetryableError):
    """A 200 answer whose ``app_psw`` is wrong (the SDK's ``auth:1``): not Business.Ru's
    word, or tampered with. Uncertain after a write."""


class BruClient:
    """One account's client; thread-safe (the token is shared under a lock)."""

    def __init__(
        self, config: ConnectorConfig, context: ConnectorContext, *, base_url: str,
        app_id: str, secret: str, timeout_s: float, wait_on_limit: bool = False,
        limit_wait_s: float = SDK_SLEEP_S, limit_waits: int = 5, token_file: Path | None = None,
    ) -> None:
        self.app_id = app_id
        self._secret = secret
        self._http = ConnectorClient(config, context, base_url=base_url, timeout_s=timeout_s)
        self._token = ""
        self._lock = threading.Lock()
        self._token_file = token_file
        self.wait_on_limit = wait_on_limit
        self.limit_wait_s = limit_wait_s
        self.limit_waits = limit_waits
        self.repairs = 0  # tokens obtained, for tests and logs
        self.writes = 0  # POST/PUT/DELETE answered ok: a caller tells a half-done attempt by it

    def close(self) -> None:
        self._http.close()

    # ------------------------------------------------------------ token

    def token(self) -> str:
        with self._lock:
            if not self._token:
                self._token = self._stored() or self._store(self._repair())
            return self._token

    def _renew(self, stale: str) -> str:
        with self._lock:
            if self._token == stale:  # no thread renewed it meanwhile
                stored = self._stored()
                self._token = stored if stored and stored != stale else self._store(self._repair())
            return self._token

    def _stored(self) -> str:
        if self._token_file is None:
            return ""
        try:
            text = self._token_file.read_text("utf-8").strip()
        except OSError:
            return ""
        return text if len(text) == TOKEN_LEN else ""

    def _store(self, token: str) -> str:
        if self._token_file is not None:
            try:
                self._token_file.parent.mkdir(parents=True, exist_ok=True)
                temp = self._token_file.with_suffix(f".{os.getpid()}.tmp")
                temp.write_text(token, "utf-8")
                os.chmod(temp, 0o600)
                os.replace(temp, self._token_file)
            except OSError as exc:  # a cache: the token still works from memory
                log.warning("Business.Ru: cannot keep the token in %s: %s", self._token_file, exc)
        return token

    def _repair(self) -> str:
        query = signed_query({}, self.app_id, "", self._secret)
        response = self._http.request("GET", f"{API}/repair.json?{query}", accept={401, 403, 503})
        if response.status_code in (401, 403):
            raise PermanentError(f"Business.Ru refused app_id {self.app_id} and its secret "
                                 f"(HTTP {response.status_code} on repair.json): check both")
        if response.status_code == 503:
            raise self._limited(response)
        body = self._verified(response, "", "GET", "repair")
        token = body.get("token")
        if not isinstance(token, str) or len(token) != TOKEN_LEN:
            raise PermanentError("Business.Ru's repair.json gave no 32-character token "
                                 f"(error_code {body.get('error_code')!r})")
        self.repairs += 1
        log.info("Business.Ru: new token for app_id %s", self.app_id)
        return token

    # ------------------------------------------------------------ requests

    def request(self, method: str, model: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One signed request to ``/api/rest/{model}.json``; the verified body (``status``,
        ``result``, ``request_count``). Raises ``hub.errors`` (see the module docstring)."""
        method = method.upper()
        waits = 0
        renewals = 0
        while True:
            token = self.token()
            response = self._send(method, model, params or {}, token)
            if response.status_code == 401:
                if renewals >= MAX_RENEWALS:  # certain: a 401 changed nothing
                    raise RetryableError(f"Business.Ru answered 401 to {method} {model} "
                                         f"{renewals + 1} times, each with a newer token")
                self._renew(token)
                renewals += 1
                continue
            if response.status_code == 503:
                limited = self._limited(response)
                if not self.wait_on_limit or waits >= self.limit_waits:
                    raise limited
                waits += 1
                wait = limited.retry_after if limited.retry_after is not None else self.limit_wait_s
                log.info("Business.Ru: over the request limit, waiting %.1f s", wait)
                time.sleep(wait)
                continue
            body = self._verified(response, token, method, model)
            if body.get("status") not in (None, "ok"):
                raise PermanentError(f"Business.Ru {method} {model}: {body.get('error_code')} "
                                     f"{body.get('error_text', '')}".rstrip())
            if method != "GET":
                self.writes += 1
            return body

    def _send(self, method: str, model: str, params: Mapping[str, Any], token: str) -> httpx.Response:
        query = signed_query(params, self.app_id, token, self._secret)
        url = f"{API}/{model}.json"
        if method == "GET":
            return self._http.request(method, f"{url}?{query}", accept={401, 503})
        return self._http.request(method, url, content=query, headers={"Content-Type": FORM},
                                  accept={401, 503})

    def _limited(self, response: httpx.Response) -> RateLimited:
        after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimited("Business.Ru: over the request limit (HTTP 503)",
                           after if after is not None else self.limit_wait_s)

    def _verified(self, response: httpx.Response, token: str, method: str, model: str) -> dict[str, Any]:
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("app_psw"), str):
            raise SignatureMismatch(f"Business.Ru {method} {model}: an unsigned or unreadable "
                                    "answer", uncertain=method != "GET")
        given = body.pop("app_psw")
        if response_signature(body, token, self._secret) != given:
            raise SignatureMismatch(f"Business.Ru {method} {model}: the answer's signature is "
                                    "wrong (auth:1): not taken as Business.Ru's word",
                                    uncertain=method != "GET")
        return body
