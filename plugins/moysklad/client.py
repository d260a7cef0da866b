"""HTTP to MoySklad JSON API 1.2: gzip, Bearer, its error codes, its request budget.

Every request goes through ``hub.sdk``'s ``ConnectorClient`` (a slot of the hub's shared
limiter per request, secrets masked) with:

- ``Accept-Encoding: gzip``: mandatory; without it (or with another coding) MoySklad
  answers 415 with an empty body (``md/_general.md`` "Сжатие содержимого ответов").
  httpx decodes the gzipped answers;
- ``Authorization: Bearer <token>`` (``md/_general.md`` "Аутентификация").

``ms_error`` reads MoySklad's own answers (``{"errors": [{"error", "code", "moreInfo"}]}``,
codes from ``md/_errors.md``):

====================================  ==============================================
answer                                raised
====================================  ==============================================
429, code 1049 (requests per period)  ``RateLimited`` after ``X-Lognex-Retry-After``
429, code 1073 (over 5 parallel)      milliseconds (``md/_general.md``, headers list)
401 (code 1056: bad token)            ``RetryableError``: not processed; an admin
                                      fixes the token without losing leads
403, code 1061 (no API access: also   ``DestinationPaused`` for ``BLOCK_PAUSE_S``:
what an auto-ban looks like)          only MoySklad's support lifts a ban, and more
                                      failing requests only extend it
other 403 (missing rights)            ``RetryableError``: an admin grants them
anything else                         the standard mapping (5xx uncertain for writes,
                                      other 4xx permanent)
====================================  ==============================================

The budget (``md/_restrictions.md``): 45 requests per 3 s for a published solution's token,
as low as 11 for user tokens and draft solutions (a request "weighs" up to 4 units of the
45), at most 5 parallel requests per user or solution. The destination declares a rate
under the budget the admin states (``requests_per_3s``) and never more than 5 per second,
so the hub's limiter, which counts a request in flight in its window, never has more than
5 in flight; ``Budget`` adds what the headers say: every answer carries
``X-RateLimit-Remaining`` and ``X-Lognex-Reset`` (ms until the period resets), and when
what remains falls to ``RESERVE`` (another integration using the same token spends the
same budget) the next request of this process waits for the reset instead of meeting a
429. A 429 on a GET (a read changes nothing) is retried here after the asked wait, up to
``GET_RETRIES`` times; a write's 429 goes back to the engine, which holds every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from hub.sdk import (
    ConnectorClient,
    ConnectorConfig,
    ConnectorContext,
    DeliveryError,
    DestinationPaused,
    RateLimited,
    RetryableError,
    bearer_token,
    parse_retry_after,
)

log = logging.getLogger(__name__)
#: At most this many requests in flight per process (``md/_restrictions.md``: "не более 5
#: параллельных запросов от одного пользователя или решения").
MAX_PARALLEL = 5
#: Units left in the period at which the next request waits for the reset: one request of
#: the heaviest documented weight (4 units, ``md/_restrictions.md``).
RESERVE = 4
GET_RETRIES = 3
MAX_WAIT_S = 30.0
#: How long to stop after a 403 "no API access": MoySklad bans an integration that made
#: "более 200 запросов за минуту, которые завершились ошибкой 429" and only its support
#: restores access (``md/_restrictions.md`` "Автоматическое отключение доступа").
BLOCK_PAUSE_S = 3600.0
#: Rows a page: ``expand`` is only honoured with ``limit`` ≤ 100 ("Expand разрешен только на
#: размере выборки не более 100 ... expand будет игнорироваться", ``md/_general.md``).
PAGE_LIMIT = 100


def _codes(response: httpx.Response) -> list[int]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e["code"] for e in errors or [] if isinstance(e, dict) and isinstance(e.get("code"), int)]


def _messages(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    return "; ".join(f"{e.get('code')}: {e.get('error')}" for e in errors or [] if isinstance(e, dict))


def retry_after_s(response: httpx.Response) -> float | None:
    """``X-Lognex-Retry-After`` (milliseconds), else a standard ``Retry-After``."""
    value = response.headers.get("x-lognex-retry-after")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(response.headers.get("retry-after"))


def ms_error(response: httpx.Response) -> DeliveryError | None:
    """MoySklad's own meaning of an answer (see the module docstring), or None."""
    status = response.status_code
    codes = _codes(response)
    where = f"MoySklad {response.request.method} {response.request.url.path}"
    said = _messages(response)
    if status == 429:
        kind = "parallel requests (1073)" if 1073 in codes else "requests per period (1049)"
        return RateLimited(f"{where}: 429 over the limit of {kind}", retry_after_s(response))
    if status == 401:
        return RetryableError(f"{where}: 401, the token was refused ({said or 'no body'}); "
                              "set a valid token")
    if status == 403 and 1061 in codes:
        return DestinationPaused(f"{where}: 403, API access is disabled for this user ({said}); "
                                 "MoySklad's support restores it", BLOCK_PAUSE_S)
    if status == 403:
        return RetryableError(f"{where}: 403, missing rights ({said})")
    return None


class Budget:
    """What MoySklad's ``X-RateLimit-*`` headers say, shared by the destination and its
    reader in one process (one token, one budget); see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_before = 0.0
        self.parallel = threading.BoundedSemaphore(MAX_PARALLEL)
        self.limit: int | None = None
        self.remaining: int | None = None
        self.waits = 0

    def wait(self) -> None:
        with self._lock:
            delay = self._not_before - time.monotonic()
        if delay > 0:
            time.sleep(delay)

    def observe(self, headers: Mapping[str, str]) -> None:
        remaining = _int(headers.get("x-ratelimit-remaining"))
        limit = _int(headers.get("x-ratelimit-limit"))
        reset_ms = _int(headers.get("x-lognex-reset"))
        with self._lock:
            if limit is not None:
                self.limit = limit
            if remaining is None:
                return
            self.remaining = remaining
            if remaining <= RESERVE and reset_ms:
                self.waits += 1
                until = time.monotonic() + min(reset_ms / 1000.0, MAX_WAIT_S)
                self._not_before = max(self._not_before, until)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


_BUDGETS: dict[tuple[str, str], Budget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_for(name: str, base_url: str) -> Budget:
    with _BUDGETS_LOCK:
        return _BUDGETS.setdefault((name, base_url), Budget())


class MsClient:
    """A MoySklad client for one connector; JSON in, JSON out."""

    def __init__(self, config: ConnectorConfig, context: ConnectorContext, *, base_url: str,
                 token: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = ConnectorClient(
            config, context, base_url=self.base_url, timeout_s=timeout_s,
            auth=bearer_token(token), errors=ms_error, max_connections=MAX_PARALLEL,
            headers={"Accept-Encoding": "gzip", "Accept": "application/json;charset=utf-8"})
        self.budget = budget_for(context.name, self.base_url)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.budget.wait()
        with self.budget.parallel:
            response = self._http.request(method, path, accept=(429,), **kwargs)
        self.budget.observe(response.headers)
        if response.status_code == 429:
            error = self._http.error_for(response)
            assert error is not None
            raise error
        return response

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET ``path`` (under ``base_url``, or a full ``nextHref``); a 429 is waited out
        and retried up to ``GET_RETRIES`` times (a read changes nothing)."""
        for attempt in range(GET_RETRIES + 1):
            try:
                return self._send("GET", path, params=params).json()
            except RateLimited as exc:
                if attempt == GET_RETRIES:
                    raise
                wait = min(exc.retry_after if exc.retry_after is not None else 1.0, MAX_WAIT_S)
                log.info("MoySklad asked to wait %.2f s (%s)", wait, exc)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, json=body).json()

    def pages(self, path: str, params: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """The rows of a list, one page at a time, to the end: ``meta.nextHref`` when the
        answer has it (``md/_general.md`` "Мета коллекций"), else ``offset`` until ``size``."""
        query: dict[str, Any] | None = {**params, "limit": PAGE_LIMIT, "offset": 0}
        url: str = path
        while True:
            answer = self.get(url, query)
            rows = [r for r in answer.get("rows") or [] if isinstance(r, dict)]
            yield rows
            meta = answer.get("meta") or {}
            next_href = meta.get("nextHref")
            if isinstance(next_href, str) and next_href.startswith(self.base_url + "/"):
                url, query = next_href, None  # the link carries every parameter (an empty
                continue  # mapping would replace them: httpx then sends no query at all)
            size, offset = int(meta.get("size") or 0), int(meta.get("offset") or 0)
            limit = int(meta.get("limit") or PAGE_LIMIT)
            if not rows or offset + limit >= size:
                return
            url, query = path, {**params, "limit": PAGE_LIMIT, "offset": offset + limit}
