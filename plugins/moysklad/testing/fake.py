"""``FakeMoySklad``: a strict MoySklad JSON API 1.2 on loopback (reference §4).

What it enforces as the real API does (MoySklad docs, ``moysklad/api-remap-1.2-doc``):

- ``Accept-Encoding`` must offer gzip, else **415 with an empty body** ("Запросы без этого
  заголовка, а также запросы с заголовком, но иной кодировкой сжатия не будут обработаны.
  Сервер ответит с кодом 415 без тела ответа", ``md/_general.md``); every answer is gzipped
  with ``Content-Encoding: gzip``;
- ``Authorization: Bearer <token>`` of a known token, else 401 with code 1056
  (``md/_errors.md``) in the ``{"errors": [...]}`` shape;
- the request budget per token (since 16.02.2026 counted per user or solution, not per
  account): 45 units per 3 s, a request weighing 1 unit for a solution's token and up to 4
  for user tokens (``md/_restrictions.md``: 45, 22, 15 or 11 requests per 3 s). The fake
  counts over a sliding 3 s window, the strictest reading. Every authenticated answer has
  ``X-RateLimit-Limit`` (45), ``X-Lognex-Retry-TimeInterval`` (3000), ``X-RateLimit-Remaining``
  and ``X-Lognex-Reset`` (ms); over the budget: 429 with code 1049 and
  ``X-Lognex-Retry-After`` (ms) (``md/_general.md``, "Обработка ошибок"); a refused request
  costs nothing. More than 5 requests of one token in flight: 429 with code 1073
  ("Заголовки не отображают лимиты на параллельные запросы ... ошибкой 1073");
- the auto-ban (``auto_ban=True``): more than ``ban_after`` (200) 429 answers to one token
  within a minute disable its API access ("более 200 запросов за минуту, которые
  завершились ошибкой 429", ``md/_restrictions.md``). What a disabled user then gets is not
  documented: the fake answers 403 with code 1061 ("Отсутствует доступ к API для данного
  пользователя", ``md/_errors.md``) [unverified];
- a POST body must be JSON (``Content-Type: application/json``, else 415 code 1037; bad
  JSON: 400 code 2001), an object or an array of at most 1000 (else 413 code 2007);
- lists, ``filter``, ``search``, ``expand``, ``syncId``, kopecks and Moscow time: ``store.py``.

Seeding for tests: ``add_organization``, ``add_counterparty``, ``add_payment`` (any of
``paymentin``, ``cashin``, ``paymentout``, ``cashout``); ``latency_s`` holds each request
that long before answering (so parallel requests can be observed), and
``max_parallel_seen`` is the most requests of one token that were in flight at once.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any

from hub.testing import FakeServer, RecordedRequest, Response
from plugins.moysklad.formats import MOSCOW
from plugins.moysklad.testing.store import TYPES, Account, ApiError, error_body, to_minute

PREFIX = "/api/remap/1.2"
BUDGET_UNITS = 45
PERIOD_S = 3.0
MAX_PARALLEL = 5
MAX_ARRAY = 1000
BAN_WINDOW_S = 60.0
AUTH_FAILED = "Ошибка аутентификации: Неправильный пароль или имя пользователя или ключ авторизации"
TOO_MANY = "Превышено ограничение на количество запросов в единицу времени"
TOO_PARALLEL = "Превышено ограничение на одновременное количество запросов"
NO_API = "Отсутствует доступ к API для данного пользователя"


def offers_gzip(header: str | None) -> bool:
    """Whether ``Accept-Encoding`` lists gzip with a non-zero quality."""
    for part in (header or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            quality = params.strip().removeprefix("q=").strip()
            try:
                return not quality or float(quality) > 0
            except ValueError:
                return False
    return False


class FakeMoySklad(FakeServer):
    """A fake MoySklad account. ``tokens`` maps each valid token to the units one request
    of it weighs: 1 for a published solution (45 per 3 s), 4 for a user token from
    01.12.2026 (11 per 3 s)."""

    def __init__(self, *, tokens: dict[str, int] | None = None, auto_ban: bool = False,
                 ban_after: int = 200, latency_s: float = 0.0) -> None:
        super().__init__()
        self.tokens = dict(tokens if tokens is not None else {"ms-token": 1})
        self.auto_ban = auto_ban
        self.ban_after = ban_after
        self.latency_s = latency_s
        self.banned: set[str] = set()
        self.max_parallel_seen = 0
        self.account = Account("http://unstarted" + PREFIX)
        self._spent: dict[str, deque[tuple[float, int]]] = {}
        self._refusals: dict[str, deque[float]] = {}
        self._flight_lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._arrival = threading.local()
        for type_ in TYPES:
            self.add_route("GET", f"{PREFIX}/entity/{type_}", self._list)
            self.add_route("POST", f"{PREFIX}/entity/{type_}", self._create)
            self.add_route("GET", f"{PREFIX}/entity/{type_}/{{id}}", self._one)

    def start(self) -> FakeMoySklad:
        super().start()
        self.account.api_url = self.api_url
        return self

    @property
    def api_url(self) -> str:
        """What the plugin's ``base_url`` is set to."""
        return self.base_url + PREFIX

    # ------------------------------------------------------------ seeding

    def add_organization(self, name: str = "ООО Ромашка") -> str:
        with self.lock:
            return str(self.account.create("organization", {"name": name})["id"])

    def add_counterparty(self, name: str, **fields: Any) -> str:
        with self.lock:
            return str(self.account.create("counterparty", {"name": name, **fields})["id"])

    def add_payment(self, agent: str, sum_kopecks: int, moment: datetime, *,
                    kind: str = "paymentin", applicable: bool = True, deleted: bool = False,
                    organization: str | None = None, agent_type: str = "counterparty",
                    purchase_return: bool = False) -> str:
        """A payment document; ``moment`` is an aware datetime, kept to the minute in Moscow
        time. ``purchase_return``: a supplier's refund, linked in ``operations`` to a
        purchase return ("Возврат поставщику (purchasereturn)" is among the operations a
        ``paymentin`` may link, ``md/documents/_payment_in.md``)."""
        with self.lock:
            org = organization or next(iter(self.account.entities["organization"]), None)
            if org is None:
                org = str(self.account.create("organization", {"name": "ООО Ромашка"})["id"])
            local = to_minute(moment.astimezone(MOSCOW).replace(tzinfo=None))
            entity = self.account.create(kind, {
                "organization": {"meta": self.account.meta("organization", org)},
                "agent": {"meta": self.account.meta(agent_type, agent)},
                "sum": sum_kopecks, "applicable": applicable})
            if purchase_return:
                entity["operations"] = [{"meta": self.account.meta("purchasereturn", str(uuid.uuid4())),
                                         "linkedSum": sum_kopecks}]
            entity["moment"] = local
            entity["_deleted"] = deleted
            return str(entity["id"])

    def entities(self, type_: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.account.entities[type_].values()]

    # ------------------------------------------------------------ the checks before a route

    def _dispatch(self, http: Any, body: bytes) -> None:
        """Count the token's requests in flight from arrival to answer (``latency_s`` is
        spent in flight, outside the fake's lock, as a server's work would be)."""
        token = _bearer(http.headers.get("Authorization"))
        with self._flight_lock:
            count = self._in_flight[token] = self._in_flight.get(token, 0) + 1
            self.max_parallel_seen = max(self.max_parallel_seen, count)
        self._arrival.parallel = count
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            super()._dispatch(http, body)
        finally:
            with self._flight_lock:
                self._in_flight[token] -= 1

    def before_route(self, request: RecordedRequest) -> Response | None:
        if not offers_gzip(request.headers.get("accept-encoding")):
            return Response(415, b"")
        token = _bearer(request.headers.get("authorization"))
        if token not in self.tokens:
            return _gzipped(401, error_body(1056, AUTH_FAILED))
        if token in self.banned:
            return _gzipped(403, error_body(1061, NO_API))
        now = time.monotonic()
        spent = self._spent.setdefault(token, deque())
        while spent and now - spent[0][0] >= PERIOD_S:
            spent.popleft()
        used = sum(units for _, units in spent)
        weight = self.tokens[token]
        if getattr(self._arrival, "parallel", 1) > MAX_PARALLEL:
            return self._refuse(token, now, 1073, TOO_PARALLEL, used, spent, 1000)
        if used + weight > BUDGET_UNITS:
            return self._refuse(token, now, 1049, TOO_MANY, used, spent,
                                _ms_until_room(spent, now, BUDGET_UNITS - weight))
        spent.append((now, weight))
        return None

    def _refuse(self, token: str, now: float, code: int, text: str, used: int,
                spent: deque[tuple[float, int]], retry_ms: int) -> Response:
        refusals = self._refusals.setdefault(token, deque())
        refusals.append(now)
        while refusals and now - refusals[0] >= BAN_WINDOW_S:
            refusals.popleft()
        if self.auto_ban and len(refusals) > self.ban_after:
            self.banned.add(token)
        response = _gzipped(429, error_body(code, text))
        response.headers.update(self._budget_headers(used, spent, now))
        response.headers["X-Lognex-Retry-After"] = str(retry_ms)
        return response

    def _budget_headers(self, used: int, spent: deque[tuple[float, int]], now: float) -> dict[str, str]:
        reset = int((spent[0][0] + PERIOD_S - now) * 1000) + 1 if spent else 0
        return {"X-RateLimit-Limit": str(BUDGET_UNITS),
                "X-Lognex-Retry-TimeInterval": str(int(PERIOD_S * 1000)),
                "X-RateLimit-Remaining": str(max(0, BUDGET_UNITS - used)), "X-Lognex-Reset": str(reset)}

    def _answer(self, request: RecordedRequest, status: int, body: Any) -> Response:
        response = _gzipped(status, body)
        token = _bearer(request.headers.get("authorization"))
        spent = self._spent.get(token, deque())
        response.headers.update(self._budget_headers(sum(u for _, u in spent), spent, time.monotonic()))
        return response

    # ------------------------------------------------------------ routes

    def _type(self, request: RecordedRequest) -> str:
        return request.path[len(PREFIX) + len("/entity/"):].split("/")[0]

    def _list(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        try:
            return self._answer(request, 200, self.account.list_answer(self._type(request), request.query))
        except ApiError as exc:
            return self._answer(request, exc.status, exc.body())

    def _one(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        type_ = self._type(request)
        entity = self.account.entities[type_].get(params["id"])
        if entity is None:
            return self._answer(request, 404, error_body(
                1021, f"Объект с типом '{type_}' и идентификатором '{params['id']}' не найден"))
        expand = set((request.q("expand") or "").split(",")) - {""}
        return self._answer(request, 200, self.account.render(type_, entity, expand))

    def _create(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        if not request.headers.get("content-type", "").lower().startswith("application/json"):
            return self._answer(request, 415, error_body(1037, "Неверно указан Content-Type запроса"))
        try:
            body = json.loads(request.body)
        except ValueError:
            return self._answer(request, 400, error_body(
                2001, "Ошибка формата: входящий запрос не соответствует формату JSON"))
        type_ = self._type(request)
        many = isinstance(body, list)
        items = body if many else [body]
        if len(items) > MAX_ARRAY:
            return self._answer(request, 413, error_body(
                2007, "Ошибка формата: слишком большое число вложенных объектов"))
        try:
            # all or nothing: a refused array creates nothing
            for item in items:
                self.account.check(type_, item)
            made = [self.account.create(type_, item) for item in items]
        except ApiError as exc:
            return self._answer(request, exc.status, exc.body())
        rows = [self.account.render(type_, e, set()) for e in made]
        return self._answer(request, 200, rows if many else rows[0])


def _bearer(header: str | None) -> str:
    scheme, _, token = (header or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _ms_until_room(spent: deque[tuple[float, int]], now: float, room_for: int) -> int:
    """Milliseconds until at most ``room_for`` units are spent in the window."""
    used = sum(u for _, u in spent)
    for at, units in spent:
        if used <= room_for:
            break
        used -= units
        wait = at + PERIOD_S - now
        if used <= room_for:
            return max(1, int(wait * 1000) + 1)
    return 1


def _gzipped(status: int, body: Any) -> Response:
    payload = gzip.compress(json.dumps(body, ensure_ascii=False).encode())
    return Response(status, payload, "application/json;charset=utf-8", {"Content-Encoding": "gzip"})
