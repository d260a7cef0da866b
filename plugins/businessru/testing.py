"""A fake Business.Ru (Class365) REST API on loopback, as strict as the real one.

Sources: business-ru/business-online-sdk-php ``src/Client.php`` (the signing both ways, the
repair, 401 and 503 handling) and ``../shared/reference/destinations.md`` §5; the model and
field names from the API documentation as mirrored in public integrations (``paymentin``:
"Платежное поручение входящее", ``payment_type`` 1 planned / 2 done, ``operation_id`` →
``paymentinoperations``; ``cashin``/``cashinoperations``; ``partnercontactinfo`` with
``contact_info_type_id`` 1 = phone, 4 = email, as a roistat → Business.Ru integration uses
them; ``POST`` answers ``result: {"id": …}``; ``customerorders`` filtered by ``number``).

What it enforces:
- ``GET /api/rest/repair.json?app_id=…&app_psw=md5(secret + query)`` issues a new 32-char
  token (the previous one stops working) in an answer signed with the empty token;
- every other request must carry ``app_id`` and ``app_psw = md5(token + secret + query)``
  where ``query`` is PHP's ``http_build_query`` of the ``ksort``-ed parameters, rebuilt
  here from what PHP would parse (``$_GET``/``$_POST``): unsorted, differently encoded or
  tampered parameters, an unknown app, a stale or expired token → **401**;
- every answer is ``{"status": "ok", "result": …, "request_count": N, "app_psw": …}``
  signed ``md5(token + secret + json_encode(body))`` with PHP's defaults (``\\uXXXX``,
  ``\\/``); ``tamper(n)`` makes the next ``n`` signatures wrong (the SDK's ``auth:1`` case);
- over ``limit`` requests in ``window_s`` seconds → **HTTP 503** (with ``Retry-After``
  only when ``retry_after`` is set: the SDK reads none);
- paging: ``limit`` ≤ 250 (default 250), ``page`` from 1, ``count_only=1`` →
  ``result.count``; ``order_by[field]=ASC|DESC``; ``field[from]``/``field[to]`` on dates
  as ``dd.mm.YYYY`` or ``dd.mm.YYYY HH:MM[:SS]`` in the account's time zone (Moscow);
  equality filters on a model's fields; an unknown parameter or a bad value → 400 with
  ``{"status": "error", …}``;
- ``partners`` (``extend=partnercontactinfo`` adds its contacts), ``partnercontactinfo``,
  ``customerorders``, ``paymentin``, ``cashin``, ``paymentinoperations``,
  ``cashinoperations``: GET everywhere, POST where LeadHub creates.

Seeding helpers: ``add_partner``, ``add_payment``; state: ``partners``, ``contacts``,
``orders`` (copies, under the lock).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import secrets as pysecrets
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from hub.testing.fakeserver import FakeServer, RecordedRequest, Response
from plugins.businessru.php import http_build_query, json_encode, ksort, parse_str

MAX_LIMIT = 250
MOSCOW = ZoneInfo("Europe/Moscow")
PHONE, EMAIL = "1", "4"
#: The operation kinds seeded in ``*operations``: a customer's payment, a supplier's refund
#: (money in that is no sale), anything else.
OPERATIONS = {"customer": ("1", "Оплата от покупателя"), "supplier_refund": ("2", "Возврат от поставщика"),
              "other": ("3", "Прочее поступление")}
CONTROL = {"app_id", "app_psw", "limit", "page", "count_only", "order_by", "extend",
           "with_additional_fields", "help"}
FIELDS: dict[str, tuple[str, ...]] = {
    "partners": ("id", "name", "full_name", "inn", "description", "updated", "deleted"),
    "partnercontactinfo": ("id", "partner_id", "contact_info_type_id", "contact_info", "updated"),
    "customerorders": ("id", "number", "name", "partner_id", "organization_id", "status_id",
                       "responsible_employee_id", "date", "sum", "comment", "updated", "deleted"),
    "paymentin": ("id", "number", "date", "partner_id", "organization_id", "payment_type",
                  "operation_id", "sum", "held", "target", "updated", "deleted"),
    "cashin": ("id", "number", "date", "partner_id", "organization_id", "operation_id", "sum",
               "held", "updated", "deleted"),
    "paymentinoperations": ("id", "name"),
    "cashinoperations": ("id", "name"),
}
DATES = {"date", "updated"}
REQUIRED = {"partners": ("name",),
            "partnercontactinfo": ("partner_id", "contact_info_type_id", "contact_info"),
            "customerorders": ("partner_id",)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def fmt(moment: datetime) -> str:
    """A datetime as Business.Ru writes it, in Moscow time."""
    return moment.astimezone(MOSCOW).strftime("%d.%m.%Y %H:%M:%S")


def _parse_date(text: str, *, end: bool) -> datetime | None:
    for form in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"):
        try:
            value = datetime.strptime(text, form).replace(tzinfo=MOSCOW)
        except ValueError:
            continue
        if form == "%d.%m.%Y" and end:
            value += timedelta(days=1, microseconds=-1)
        return value
    return None


class _Refused(Exception):
    def __init__(self, status: int, code: str, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text

    def response(self) -> Response:
        return Response.json({"status": "error", "error_code": self.code, "error_text": self.text},
                             self.status)


class FakeBusinessRu(FakeServer):
    """See the module docstring."""

    def __init__(self, app_id: str = "123456", secret: str = "s" * 32, *,
                 limit: int | None = None, window_s: float = 1.0,
                 retry_after: str | None = None, token_ttl_s: float | None = None) -> None:
        super().__init__()
        self.app_id, self.secret = app_id, secret
        self.limit, self.window_s, self.retry_after = limit, window_s, retry_after
        self.token_ttl_s = token_ttl_s
        self.token = ""
        self._token_used = 0.0
        self._window: list[float] = []
        self._count = 0
        self._tamper = 0
        self._ids = itertools.count(1001)
        self.tables: dict[str, list[dict[str, Any]]] = {name: [] for name in FIELDS}
        for model in ("paymentinoperations", "cashinoperations"):
            self.tables[model] = [{"id": i, "name": n} for i, n in OPERATIONS.values()]
        self.tokens_issued = 0
        for method in ("GET", "POST", "PUT", "DELETE"):
            self.add_route(method, "/api/rest/{model}.json", self._handle)

    # ------------------------------------------------------------ switches and seeding

    def tamper(self, n: int = 1) -> None:
        """The next ``n`` answers carry a wrong ``app_psw`` (what the SDK calls ``auth:1``)."""
        with self.lock:
            self._tamper = n

    def expire_token(self) -> None:
        """The current token stops working (as after Business.Ru's idle timeout)."""
        with self.lock:
            self.token = pysecrets.token_hex(16)  # nobody has it

    def _insert(self, model: str, row: dict[str, Any]) -> str:
        row = {"id": str(next(self._ids)), **row}
        row.setdefault("updated", fmt(datetime.now(MOSCOW)))
        self.tables[model].append(row)
        return str(row["id"])

    def add_partner(self, name: str, *, inn: str | None = None, phones: tuple[str, ...] = (),
                    emails: tuple[str, ...] = (), description: str = "") -> str:
        with self.lock:
            pid = self._insert("partners", {"name": name, "full_name": name, "inn": inn or "",
                                            "description": description, "deleted": False})
            for kind, values in ((PHONE, phones), (EMAIL, emails)):
                for value in values:
                    self._insert("partnercontactinfo", {"partner_id": pid, "contact_info_type_id": kind,
                                                        "contact_info": value})
            return pid

    def add_payment(self, partner_id: str, amount: float, when: datetime, *, model: str = "paymentin",
                    operation: str = "customer", payment_type: int = 2, held: bool = True,
                    deleted: bool = False, number: str | None = None) -> str:
        """A payment document (``paymentin``: bank; ``cashin``: cash) dated ``when``."""
        row: dict[str, Any] = {"number": number or "", "date": fmt(when), "partner_id": partner_id,
                               "operation_id": OPERATIONS[operation][0], "sum": f"{amount:.2f}",
                               "held": held, "deleted": deleted}
        if model == "paymentin":
            row["payment_type"] = str(payment_type)
        with self.lock:
            return self._insert(model, row)

    @property
    def partners(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables["partners"]]

    @property
    def contacts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables["partnercontactinfo"]]

    @property
    def orders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables["customerorders"]]

    def fault_response(self, kind: str) -> Response:
        if kind == "400":
            return Response.json({"status": "error", "error_code": "request:1",
                                  "error_text": "injected refusal"}, 400)
        return super().fault_response(kind)

    # ------------------------------------------------------------ the API

    def _signed(self, body: dict[str, Any], token: str) -> Response:
        signature = _md5(token + self.secret + json_encode(body))
        if self._tamper:
            self._tamper -= 1
            signature = _md5("tampered" + signature)
        return Response(200, json_encode({**body, "app_psw": signature}).encode(), "application/json")

    @staticmethod
    def _params(request: RecordedRequest) -> dict[str, Any]:
        if request.method == "GET":
            raw = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                           for k, values in request.query.items() for v in values)
        else:
            if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise _Refused(400, "request:2", "the body must be form-urlencoded")
            raw = request.body.decode("utf-8")
        return parse_str(raw)

    def _over_limit(self) -> Response | None:
        now = time.monotonic()
        self._window = [t for t in self._window if now - t < self.window_s]
        if self.limit is not None and len(self._window) >= self.limit:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return Response(503, b"Service Temporarily Unavailable", "text/html", headers)
        self._window.append(now)
        self._count += 1
        return None

    def _handle(self, request: RecordedRequest, path: dict[str, str]) -> Response:
        model = path["model"]
        refused = self._over_limit()
        if refused is not None:
            return refused
        try:
            params = self._params(request)
        except _Refused as exc:
            return exc.response()
        given = params.pop("app_psw", None)
        if str(params.get("app_id", "")) != self.app_id or not isinstance(given, str):
            return Response.json({"status": "error", "error_code": "auth:2",
                                  "error_text": "unknown app_id or no app_psw"}, 401)
        query = http_build_query(ksort(params))
        if model == "repair":
            if request.method != "GET" or given != _md5(self.secret + query):
                return Response.json({"status": "error", "error_code": "auth:1",
                                      "error_text": "bad signature"}, 401)
            self.token = pysecrets.token_hex(16)
            self._token_used = time.monotonic()
            self.tokens_issued += 1
            return self._signed({"status": "ok", "token": self.token}, "")
        expired = (self.token_ttl_s is not None
                   and time.monotonic() - self._token_used > self.token_ttl_s)
        if not self.token or expired or given != _md5(self.token + self.secret + query):
            return Response.json({"status": "error", "error_code": "auth:1",
                                  "error_text": "token expired or bad signature"}, 401)
        self._token_used = time.monotonic()
        try:
            result = self._serve(request.method, model, params)
        except _Refused as exc:
            return exc.response()
        return self._signed({"status": "ok", "result": result, "request_count": self._count}, self.token)

    def _serve(self, method: str, model: str, params: dict[str, Any]) -> Any:
        if model not in FIELDS:
            raise _Refused(404, "model:1", f"no model {model}")
        if method == "GET":
            return self._select(model, params)
        if method == "POST" and model in REQUIRED:
            return self._create(model, params)
        raise _Refused(405, "method:1", f"{method} is not allowed on {model}")

    def _create(self, model: str, params: dict[str, Any]) -> dict[str, str]:
        fields = FIELDS[model]
        extra = [k for k in params if k not in fields and k != "app_id"]
        if extra or "id" in params:
            raise _Refused(400, "field:1", f"unknown fields {extra or ['id']}")
        missing = [k for k in REQUIRED[model] if not params.get(k)]
        if missing:
            raise _Refused(400, "field:2", f"required: {missing}")
        partners = {p["id"] for p in self.tables["partners"]}
        if "partner_id" in params and params["partner_id"] not in partners:
            raise _Refused(400, "field:3", "partner_id: no such partner")
        row = {k: v for k, v in params.items() if k != "app_id"}
        if model != "partnercontactinfo":
            row.setdefault("deleted", False)
        if model == "customerorders":
            row.setdefault("date", fmt(datetime.now(MOSCOW)))
        return {"id": self._insert(model, row)}

    def _select(self, model: str, params: dict[str, Any]) -> Any:
        fields = FIELDS[model]
        rows = list(self.tables[model])
        for name, value in params.items():
            if name in CONTROL:
                continue
            if name not in fields:
                raise _Refused(400, "filter:1", f"{model} has no field {name}")
            if isinstance(value, dict):
                if name not in DATES or set(value) - {"from", "to"}:
                    raise _Refused(400, "filter:2", f"{name}: only dates take [from]/[to]")
                for edge, text in value.items():
                    bound = _parse_date(str(text), end=edge == "to")
                    if bound is None:
                        raise _Refused(400, "filter:3", f"{name}[{edge}]: not dd.mm.YYYY [HH:MM]")
                    rows = [r for r in rows if r.get(name) and (
                        _parse_date(r[name], end=False) >= bound if edge == "from"  # type: ignore[operator]
                        else _parse_date(r[name], end=False) <= bound)]  # type: ignore[operator]
            else:
                rows = [r for r in rows if str(_plain(r.get(name))) == str(value)]
        order = params.get("order_by") or {"id": "ASC"}
        if not isinstance(order, dict):
            raise _Refused(400, "order:1", "order_by[field]=ASC|DESC")
        for name, direction in reversed(list(order.items())):
            if name not in fields or str(direction).upper() not in ("ASC", "DESC"):
                raise _Refused(400, "order:2", f"cannot order by {name} {direction}")
            rows.sort(key=functools.partial(_row_key, name), reverse=str(direction).upper() == "DESC")
        if str(params.get("count_only", "")) == "1":
            return {"count": len(rows)}
        limit, page = _int(params.get("limit", MAX_LIMIT), "limit"), _int(params.get("page", 1), "page")
        if not 1 <= limit <= MAX_LIMIT or page < 1:
            raise _Refused(400, "limit:1", f"limit must be 1..{MAX_LIMIT} and page from 1")
        chosen = rows[(page - 1) * limit:page * limit]
        if model == "partners" and params.get("extend") == "partnercontactinfo":
            contacts = self.tables["partnercontactinfo"]
            return [{**r, "partnercontactinfo": [dict(c) for c in contacts if c["partner_id"] == r["id"]]}
                    for r in chosen]
        return [dict(r) for r in chosen]


def _plain(value: Any) -> Any:
    if value is True:
        return "1"
    if value is False:
        return "0"
    return value


def _int(value: Any, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise _Refused(400, "limit:2", f"{name} must be a number") from None


def _row_key(name: str, row: dict[str, Any]) -> tuple[int, Any]:
    return _sort_key(row.get(name), name)


def _sort_key(value: Any, name: str) -> tuple[int, Any]:
    if name in DATES and isinstance(value, str):
        return (0, _parse_date(value, end=False) or datetime.min.replace(tzinfo=MOSCOW))
    text = str(_plain(value) if value is not None else "")
    return (0, int(text)) if text.isdigit() else (1, text)
