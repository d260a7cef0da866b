"""HTTP to 1C's standard OData interface: JSON, Basic auth, literals, paging and errors.

Facts relied on (``../shared/reference/destinations.md`` §3 unless said otherwise):

- 1C answers Atom/XML unless asked for JSON: every request carries ``$format=json`` and
  ``Accept: application/json``; ``$metadata`` is XML whatever is asked.
- HTTP Basic as an infobase user; roles apply (403).
- Errors are ``{"odata.error": {"code": "…", "message": {"lang": "ru", "value": "…"}}}``
  with 400/401/403/404/500; an internal failure is code ``-1`` "Произошла внутренняя ошибка
  OData сервиса" (errors24.ru thread "Произошла внутренняя ошибка odata сервиса", 2017).
  An entity set outside the published composition (``УстановитьСоставСтандартногоИнтерфейсаOData``)
  is a 404.
- Paging has no cursor: ``$orderby`` + ``$top``/``$skip``.
- Literals: ``'text'`` (a quote doubled), ``guid'…'``, ``datetime'YYYY-MM-DDTHH:MM:SS'``
  (the base's local time, no zone), and a composite reference is compared with
  ``cast(guid'…','Catalog_…')`` (1C blog "Расширение поддержки протокола OData",
  wonderland.v8.1c.ru, platform 8.3.8.1652: filtering on composite-type fields).

``onec_error`` is the ``errors`` hook of ``hub.sdk.ConnectorClient``: it turns those bodies
into messages an admin can act on. A 401 is permanent (retrying with the same password
cannot succeed) and says which user was refused, never the password, which the client
masks anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote
from xml.etree import ElementTree

import httpx

from hub.sdk import (
    ANY_STATUS,
    ConnectorClient,
    ConnectorContext,
    DeliveryError,
    PermanentError,
    RetryableError,
    basic_auth,
)
from plugins.onec.config import OneCConfig
from plugins.onec.metadata import Metadata

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
JSON_PARAMS = {"$format": "json"}
#: References per ``or`` filter when fetching many records by key: keeps the URL well under
#: the 8 KB request lines proxies and IIS accept.
KEYS_PER_REQUEST = 25


# ---------------------------------------------------------------- literals


def text(value: str) -> str:
    """An OData string literal: single quotes, an inner quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def guid(value: str) -> str:
    return f"guid'{value}'"


def when(value: datetime) -> str:
    """A ``datetime'…'`` literal of a naive local time (1C dates carry no zone)."""
    return f"datetime'{value.replace(tzinfo=None, microsecond=0).isoformat()}'"


def cast(value: str, entity: str) -> str:
    """A composite-type reference literal: ``cast(guid'…','Catalog_Контрагенты')``."""
    return f"cast({guid(value)},{text(entity)})"


def any_of(clauses: Sequence[str]) -> str:
    return "(" + " or ".join(clauses) + ")"


# ---------------------------------------------------------------- errors


class Rejected(PermanentError):
    """A 400: 1C refused this request's content (a lead's data, a name it does not know);
    other leads of a batch may still go."""


class ServerFailed(RetryableError):
    """A 5xx answer: 1C failed this request (maybe after acting on it); it answered, so the
    next lead of a batch may still go."""


def odata_message(response: httpx.Response) -> tuple[str, str]:
    """(code, message) of 1C's ``odata.error`` body; empty strings when it has none."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        return "", ""
    error = body.get("odata.error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    message = error.get("message")
    value = message.get("value") if isinstance(message, dict) else message
    return str(error.get("code", "")), str(value or "")


def _what(response: httpx.Response) -> str:
    request = response.request
    return f"{request.method} {unquote(request.url.path)}"


def onec_error(response: httpx.Response, username: str) -> DeliveryError | None:
    """1C's reading of an answer (see the module docstring); None for a 2xx."""
    status = response.status_code
    if status < 400:
        return None
    code, message = odata_message(response)
    said = f" (1C error {code}: {message})" if code or message else ""
    where = _what(response)
    if status == 401:
        return PermanentError(
            f"{where}: 1C refused the credentials of user {username!r} (HTTP 401){said}: "
            "check username and password of the infobase user")
    if status == 403:
        return PermanentError(
            f"{where}: the infobase user {username!r} may not do this (HTTP 403){said}: "
            "give its role the rights to read and write these objects")
    if status == 404:
        return PermanentError(
            f"{where}: not found (HTTP 404){said}: an object outside the published OData "
            "composition is a 404; publish it (УстановитьСоставСтандартногоИнтерфейсаOData) "
            "or check the name")
    if status == 400:
        return Rejected(f"{where}: 1C rejected the request (HTTP 400){said}")
    if status >= 500:
        uncertain = response.request.method not in ("GET", "HEAD", "OPTIONS")
        return ServerFailed(f"{where}: 1C failed (HTTP {status}){said}", uncertain=uncertain)
    return None  # the standard mapping (429 if a proxy sends it, other 4xx)


# ---------------------------------------------------------------- the client


class ODataClient:
    """One connector's way to the infobase; ``$metadata`` is read once and kept."""

    def __init__(self, config: OneCConfig, context: ConnectorContext) -> None:
        self.config = config
        self._http = ConnectorClient(
            config, context, base_url=config.base_url,
            auth=basic_auth(config.username, config.password),
            headers={"Accept": "application/json"},
            errors=lambda r: onec_error(r, config.username),
        )
        self._metadata: Metadata | None = None

    def close(self) -> None:
        self._http.close()

    def error_for(self, response: httpx.Response) -> DeliveryError | None:
        return self._http.error_for(response)

    def metadata(self) -> Metadata:
        if self._metadata is None:
            answer = self._http.get("/$metadata", headers={"Accept": "application/xml"})
            try:
                self._metadata = Metadata.parse(answer.content)
            except ElementTree.ParseError as exc:
                raise PermanentError(f"GET $metadata: not an EDMX document ({exc}); is "
                                     "base_url the infobase's /odata/standard.odata?") from None
        return self._metadata

    def require(self, entity: str) -> None:
        """A clear error when ``entity`` is not published, before any request names it."""
        if not self.metadata().published(entity):
            raise PermanentError(
                f"1C does not publish {entity} over OData: add it to the composition "
                "(УстановитьСоставСтандартногоИнтерфейсаOData, or the 'OData' setting of "
                "your configuration) or set the entity name in the connector's settings")

    # ------------------------------------------------------------ reading

    def rows_response(
        self, entity: str, *, filter: str | None = None, select: Sequence[str] = (),
        orderby: str | None = None, top: int | None = None, skip: int = 0,
    ) -> httpx.Response:
        """One GET of an entity set, answered whatever its status (the caller reads it)."""
        return self._http.get(f"/{entity}", params=_params(filter, select, orderby, top, skip),
                              accept=ANY_STATUS)

    def rows(self, entity: str, **query: Any) -> list[dict[str, Any]]:
        response = self.rows_response(entity, **query)
        error = self.error_for(response)
        if error is not None:
            raise error
        return values(response)

    def all_rows(self, entity: str, *, filter: str | None, select: Sequence[str],
                 orderby: str, page: int) -> Iterator[list[dict[str, Any]]]:
        """Every row, page by page (``$top``/``$skip``: 1C has no cursor)."""
        skip = 0
        while True:
            rows = self.rows(entity, filter=filter, select=select, orderby=orderby,
                             top=page, skip=skip)
            yield rows
            if len(rows) < page:
                return
            skip += page

    def by_keys(self, entity: str, keys: Sequence[str], *, select: Sequence[str],
                extra: str | None = None, orderby: str = "Ref_Key") -> list[dict[str, Any]]:
        """Rows whose ``Ref_Key`` is one of ``keys``, ``KEYS_PER_REQUEST`` keys a request."""
        out: list[dict[str, Any]] = []
        for start in range(0, len(keys), KEYS_PER_REQUEST):
            chunk = keys[start:start + KEYS_PER_REQUEST]
            condition = any_of([f"Ref_Key eq {guid(k)}" for k in chunk])
            if extra:
                condition = f"{condition} and {extra}"
            for rows in self.all_rows(entity, filter=condition, select=select,
                                      orderby=orderby, page=self.config.page_size):
                out += rows
        return out

    # ------------------------------------------------------------ writing

    def create(self, entity: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = self._http.post(f"/{entity}", params=JSON_PARAMS, json=dict(body))
        row = _json(answer)
        if not isinstance(row, dict) or not row.get("Ref_Key"):
            raise RetryableError(f"POST {entity}: 1C answered without Ref_Key", uncertain=True)
        return row

    def post_document(self, entity: str, ref: str) -> None:
        """Post a document (``POST Entity(guid'…')/Post()``)."""
        self._http.post(f"/{entity}({guid(ref)})/Post()", params=JSON_PARAMS)


def _params(filter: str | None, select: Sequence[str], orderby: str | None,
            top: int | None, skip: int) -> dict[str, str]:
    params = dict(JSON_PARAMS)
    if filter:
        params["$filter"] = filter
    if select:
        params["$select"] = ",".join(select)
    if orderby:
        params["$orderby"] = orderby
    if top is not None:
        params["$top"] = str(top)
    if skip:
        params["$skip"] = str(skip)
    return params


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "?")
        raise RetryableError(f"{_what(response)}: 1C answered {kind}, not JSON") from None


def values(response: httpx.Response) -> list[dict[str, Any]]:
    body = _json(response)
    rows = body.get("value") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise RetryableError(f"{_what(response)}: 1C answered without a 'value' list")
    return [row for row in rows if isinstance(row, dict)]


def is_empty(ref: object) -> bool:
    """1C's empty reference is the all-zero GUID."""
    return not ref or ref == EMPTY_GUID
