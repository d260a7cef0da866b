"""HTTP for connectors: one client, so no plugin writes status mapping, ``Retry-After``
parsing, rate-limit slots or secret masking again.

``ConnectorClient`` wraps one ``httpx.Client`` built from a connector's config and context.
Each request

1. holds ``context.request_slot()`` from when it leaves until it is answered, so the
   limiter shared by every worker counts it (a destination using the client therefore
   declares ``Capability.COUNTS_OWN_REQUESTS``: otherwise the engine holds a slot around
   the whole ``deliver`` call as well, and each request is counted twice);
2. ends as a response (2xx, or a status the caller ``accept``\\s) or as a ``hub.errors``
   exception the engine acts on (``error_for``, ``transport_error``):

   ======================================  =========================================
   what happened                           raised
   ======================================  =========================================
   cannot connect (refused, DNS, connect   ``RetryableError``, certain: nothing was sent
   timeout, no pooled connection)
   timeout or broken connection after the  ``RetryableError(uncertain=True)``: it may have
   request left                            landed, the engine looks it up first
   429                                     ``RateLimited`` with ``Retry-After`` (seconds
                                           or an HTTP date, RFC 9110 §10.2.3)
   5xx                                     ``RetryableError(uncertain=True)``: the server
                                           may have acted before failing
   408                                     ``RetryableError``, certain: the server says it
                                           did not get the whole request (RFC 9110
                                           §15.5.9)
   any other 4xx, 1xx or 3xx (redirects    ``PermanentError``
   are not followed)
   ======================================  =========================================

   "Uncertain" only ever applies to methods that change something: a ``GET``, ``HEAD``
   or ``OPTIONS`` that may have arrived changed nothing (RFC 9110 §9.2.1), so its
   failures are certain. A plugin special-cases statuses with ``errors=`` (a function
   of the response returning the error to raise, or None for the standard mapping) or
   per request with ``accept=`` (those statuses are returned, not raised): a 409
   "already exists" that names the existing record is ``accept={409}`` and a success
   whose external id is that record's id;
3. never shows a secret: every ``SecretStr``/``SecretBytes`` value in the connector's
   config, every value the auth helpers send, the request's ``Authorization``/api-key
   style headers and ``token``-like query parameters are replaced by ``***`` in the text
   of every exception it raises (and of its cause), and in the ``httpx`` logger's lines.

``bearer_token``, ``api_key_header``, ``api_key_query`` and ``basic_auth`` are the auth
helpers (``httpx.Auth`` objects the masker knows about). ``parse_retry_after`` and
``error_for`` are pure and usable on their own.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import weakref
from collections.abc import Callable, Container, Generator, Iterable, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

import httpx
from pydantic import BaseModel, Field, SecretBytes, SecretStr, field_validator

from hub.connectors import ConnectorConfig, ConnectorContext, DestinationConfig
from hub.errors import DeliveryError, PermanentError, RateLimited, RetryableError

#: Methods that change nothing on the server (RFC 9110 §9.2.1): a failure is never uncertain.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: ``accept=ANY_STATUS`` returns every answer; the caller then reads it with ``error_for``.
ANY_STATUS = range(100, 600)
DEFAULT_TIMEOUT_S = 10.0
MASK = "***"
#: Shorter secrets are not masked: replacing every "ab" in a message would garble it and
#: still not hide a two-letter secret, which no API issues.
MIN_SECRET_LEN = 4
EXCERPT_CHARS = 300
#: Header names whose values are credentials.
SECRET_HEADER = re.compile(r"authorization|api[-_]?key|token|secret|password|cookie|signature", re.I)
#: Query parameter names whose values are credentials (``access_token``, ``apikey``, ``sig``...).
SECRET_PARAM = re.compile(r"token|secret|key|password|passwd|sig|proof|auth", re.I)
#: A credential-like parameter inside a URL in free text (an ``httpx`` log line, a message).
_URL_PARAM = re.compile(
    r"(?P<name>[?&;][^=&#\s\"'<>]*(?:token|secret|key|password|passwd|sig|proof|auth)"
    r"[^=&#\s\"'<>]*=)[^&#\s\"'<>]*", re.I)

#: The plugin's own reading of an answer: the error to raise, or None for the standard one.
ErrorHook = Callable[[httpx.Response], DeliveryError | None]
ExcT = TypeVar("ExcT", bound=BaseException)


# ---------------------------------------------------------------- config


class HttpSettings(BaseModel):
    """``base_url`` and ``timeout_s``, mixed into any connector config that talks to an HTTP
    API: ``class Config(HttpSettings, SourceConfig)`` for a source that polls or enriches;
    destinations subclass ``HttpConnectorConfig``. A subclass may redeclare either field
    (a default ``base_url`` for a cloud API, its own description)."""

    base_url: str = Field(
        description="The API's address, e.g. https://api.example.com (a self-hosted, regional "
                    "or test server); requests go to paths under it.",
    )
    timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S, gt=0, le=120,
        description="HTTP timeout of one request, in seconds (connecting, and each wait for "
                    "the server); a request that times out after it left is retried as "
                    "uncertain (looked up first).",
    )

    @field_validator("base_url")
    @classmethod
    def _leadhub_http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL, starting with https:// (or http://)")
        return value.rstrip("/")


class HttpConnectorConfig(HttpSettings, DestinationConfig):
    """The config base of a destination that talks to an HTTP API."""


# ---------------------------------------------------------------- pure helpers


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait: ``delay-seconds`` or an ``HTTP-date``
    (RFC 9110 §10.2.3; IMF-fixdate, and the obsolete RFC 850 and asctime forms); a date in
    the past is 0. None when absent or unreadable (the engine's backoff then applies).
    ``now`` is the moment the answer came (default: the clock), for the date form."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)  # lenient: "1.5" is not RFC syntax, but means what it says
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for(response: httpx.Response) -> DeliveryError | None:
    """The ``hub.errors`` exception an answer means (see the module docstring), or None
    for a 2xx. The message names method, path (never the query) and status, with the
    start of the body; credentials the request carried are masked in it."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    request = _request_of(response)
    method = request.method if request is not None else "POST"
    where = f"{method} {request.url.path}" if request is not None else "request"
    message = f"{where}: HTTP {status} {response.reason_phrase}".rstrip()
    excerpt = _excerpt(response)
    if excerpt:
        message += f": {excerpt}"
    uncertain = method not in SAFE_METHODS
    error: DeliveryError
    if status == 429:
        error = RateLimited(message, parse_retry_after(response.headers.get("retry-after")))
    elif status >= 500:
        error = RetryableError(message, uncertain=uncertain)
    elif status == 408:
        error = RetryableError(message, uncertain=False)
    elif 300 <= status < 400:
        error = PermanentError(f"{message} (redirects are not followed: check the URL)")
    else:
        error = PermanentError(message)
    return _mask_error(error, SecretMasker.of_request(request)) if request is not None else error


def transport_error(exc: httpx.HTTPError, method: str, where: str) -> RetryableError:
    """What a request that got no answer means: certain when it never left (cannot
    connect, no pooled connection, an unusable URL), else uncertain unless the method is
    safe. Not masked: ``ConnectorClient`` masks what it raises."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                  | httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL):
        return RetryableError(f"{where}: not sent, cannot connect: {name}: {exc}", uncertain=False)
    uncertain = method.upper() not in SAFE_METHODS
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{where}: no answer in time: {name}: {exc}", uncertain=uncertain)
    return RetryableError(f"{where}: the connection broke: {name}: {exc}", uncertain=uncertain)


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:  # a Response built by hand, not received
        return None


def _excerpt(response: httpx.Response) -> str:
    try:
        text = response.text
    except (httpx.ResponseNotRead, httpx.DecodingError):
        return ""
    return " ".join(text[:EXCERPT_CHARS].split())


# ---------------------------------------------------------------- masking


class SecretMasker:
    """Replaces known secrets (also percent-encoded) and credential-like URL parameters by
    ``***`` in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LEN:
                forms |= {secret, quote(secret, safe=""), quote_plus(secret)}
        self._forms = tuple(sorted(forms, key=len, reverse=True))

    @classmethod
    def of_request(cls, request: httpx.Request, base: SecretMasker | None = None) -> SecretMasker:
        """``base`` plus what this request carries: credential headers and parameters."""
        found: list[str] = list(base._forms) if base is not None else []
        for name, value in request.headers.items():
            if SECRET_HEADER.search(name):
                found.append(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.isalpha():
                    found.append(credential.strip())
        found += [value for name, value in request.url.params.multi_items()
                  if SECRET_PARAM.search(name)]
        return cls(found)

    def mask(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, MASK)
        return _URL_PARAM.sub(lambda m: m["name"] + MASK, text)


def config_secrets(value: Any) -> list[str]:
    """Every ``SecretStr``/``SecretBytes`` value inside a config (nested models, dicts, lists)."""
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, SecretBytes):
        return [value.get_secret_value().decode("utf-8", "replace")]
    if isinstance(value, BaseModel):
        return [s for name in type(value).model_fields for s in config_secrets(getattr(value, name))]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in config_secrets(item)]
    if isinstance(value, list | tuple | set | frozenset):
        return [s for item in value for s in config_secrets(item)]
    return []


def url_secrets(url: str) -> list[str]:
    """What may be a secret in a URL an admin configured whole (a receiver's webhook URL):
    its user and password, every query value, and its path, segment by segment. Receivers
    put their key in the path as often as in the query (Slack's ``/services/T…/B…/<key>``,
    Zapier's ``/hooks/catch/<id>/<key>/``, n8n's ``/webhook/<uuid>``), and an error names the
    request's path: given to ``ConnectorClient(secrets=...)``, they read as ``***`` there.
    Segments too short to be a key (``/in``, ``/v1``) stay readable."""
    parts = urlsplit(url)
    found = [parts.username or "", parts.password or ""]
    found += [value for _name, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [unquote(seg) for seg in parts.path.split("/") if len(seg) >= MIN_SECRET_LEN]
    return [f for f in found if len(f) >= MIN_SECRET_LEN]


def _mask_error(exc: ExcT, masker: SecretMasker) -> ExcT:
    exc.args = tuple(masker.mask(a) if isinstance(a, str) else a for a in exc.args)
    return exc


#: Maskers of live clients: the ``httpx`` logger's lines are masked with all of them.
_LIVE_MASKERS: weakref.WeakSet[SecretMasker] = weakref.WeakSet()


class _HttpxLogMask(logging.Filter):
    """``httpx`` logs each request's full URL (at INFO): a token in a query or a path would
    reach the log whenever someone turns that logger up."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = text
        for masker in list(_LIVE_MASKERS):
            masked = masker.mask(masked)
        masked = SecretMasker().mask(masked)
        if masked != text:
            record.msg, record.args = masked, ()
        return True


def _guard_httpx_log() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _HttpxLogMask) for f in logger.filters):
        logger.addFilter(_HttpxLogMask())


# ---------------------------------------------------------------- auth helpers


class SecretAuth(httpx.Auth):
    """An ``httpx.Auth`` that puts a credential on every request; ``secrets`` are what
    ``ConnectorClient`` masks for it."""

    def __init__(self, apply: Callable[[httpx.Request], None], secrets: Iterable[str]) -> None:
        self._apply = apply
        self.secrets = tuple(secrets)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._apply(request)
        yield request


def _plain(secret: SecretStr | str) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def bearer_token(token: SecretStr | str) -> SecretAuth:
    """``Authorization: Bearer <token>`` (RFC 6750)."""
    value = _plain(token)

    def apply(request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {value}"
    return SecretAuth(apply, [value])


def api_key_header(name: str, key: SecretStr | str, *, prefix: str = "") -> SecretAuth:
    """An API key in a header: ``api_key_header("X-Api-Key", cfg.api_key)``; ``prefix``
    for schemes like ``Token <key>``."""
    value = _plain(key)

    def apply(request: httpx.Request) -> None:
        request.headers[name] = f"{prefix} {value}" if prefix else value
    return SecretAuth(apply, [value])


def api_key_query(name: str, key: SecretStr | str) -> SecretAuth:
    """An API key as a query parameter (``?api_key=...``), for APIs that take nothing else;
    prefer a header where the API allows one (URLs end up in proxies' logs)."""
    value = _plain(key)

    def apply(request: httpx.Request) -> None:
        request.url = request.url.copy_merge_params({name: value})
    return SecretAuth(apply, [value])


def basic_auth(user: str, password: SecretStr | str) -> SecretAuth:
    """HTTP Basic (RFC 7617): ``Authorization: Basic base64(user:password)``."""
    value = _plain(password)
    encoded = base64.b64encode(f"{user}:{value}".encode()).decode()

    def apply(request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Basic {encoded}"
    return SecretAuth(apply, [value, encoded])


# ---------------------------------------------------------------- the client


class ConnectorClient:
    """One ``httpx.Client`` for one connector; see the module docstring. Thread-safe, as
    ``httpx.Client`` is; build it once (in ``__init__`` or lazily) and ``close()`` it in the
    connector's ``close()``.

    ``base_url`` and ``timeout_s`` come from the config when it is ``HttpSettings``
    (arguments override them). ``secrets`` adds values to mask that the config does not
    hold (a token obtained at run time).
    """

    def __init__(
        self, config: ConnectorConfig, context: ConnectorContext, *,
        base_url: str | None = None, timeout_s: float | None = None,
        auth: httpx.Auth | None = None, headers: Mapping[str, str] | None = None,
        errors: ErrorHook | None = None, secrets: Iterable[str] = (),
        max_connections: int = 10,
    ) -> None:
        settings = config if isinstance(config, HttpSettings) else None
        if base_url is None:
            base_url = settings.base_url if settings is not None else ""
        if timeout_s is None:
            timeout_s = settings.timeout_s if settings is not None else DEFAULT_TIMEOUT_S
        self.context = context
        self.timeout_s = timeout_s
        self._errors = errors
        known = [*config_secrets(config), *secrets]
        if isinstance(auth, SecretAuth):
            known += auth.secrets
        self.masker = SecretMasker(known)
        _LIVE_MASKERS.add(self.masker)
        _guard_httpx_log()
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, auth=auth,
            headers={"User-Agent": "LeadHub", **(headers or {})}, follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
        json: Any = None, content: bytes | str | None = None,
        data: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
        timeout: float | None = None, accept: Container[int] = (), slot: bool = True,
    ) -> httpx.Response:
        """Send one request; the response when it is 2xx or in ``accept``, else raise the
        ``hub.errors`` exception it means. ``slot=False`` when the caller already holds
        ``context.request_slot()`` for this request."""
        method = method.upper()
        request = self._http.build_request(
            method, url, params=params, json=json, content=content, data=data, headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        where = f"{method} {request.url.path}"
        with ExitStack() as held:
            if slot:
                try:
                    held.enter_context(self.context.request_slot())
                except Exception as exc:  # the shared limiter (Redis) failed: nothing was sent
                    masker = SecretMasker.of_request(request, self.masker)
                    raise _mask_error(RetryableError(
                        f"{where}: not sent, the rate limiter failed: {type(exc).__name__}: {exc}",
                        uncertain=False), masker) from None
            try:
                response = self._http.send(request)
            except httpx.HTTPError as exc:
                masker = SecretMasker.of_request(request, self.masker)
                raise _mask_error(transport_error(exc, method, where), masker) \
                    from _mask_error(exc, masker)
        if response.status_code in accept:
            return response
        error = self.error_for(response)
        if error is not None:
            raise error
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def error_for(self, response: httpx.Response) -> DeliveryError | None:
        """The plugin's ``errors`` hook, then the standard ``error_for``; masked either way."""
        error = self._errors(response) if self._errors is not None else None
        if error is None:
            error = error_for(response)
        if error is None:
            return None
        request = _request_of(response)
        masker = SecretMasker.of_request(request, self.masker) if request else self.masker
        return _mask_error(error, masker)
