"""``FakeOneC``: an infobase's standard OData interface on loopback, as strict as 1C.

Behaviour and where it comes from (``../shared/reference/destinations.md`` §3 unless said):

- ``/<infobase>/odata/standard.odata/<Entity>``; ``$metadata`` (EDMX) lists the published
  sets only; any other set is a 404 (outside ``УстановитьСоставСтандартногоИнтерфейсаOData``).
- HTTP Basic as an infobase user; otherwise 401 with an ``odata.error`` body.
- JSON only for ``$format=json`` or ``Accept: application/json``; Atom XML otherwise.
- ``$filter`` (``testing/filters.py``), ``$select``, ``$orderby``, ``$top``/``$skip`` with no
  cursor, ``$inlinecount=allpages`` → ``"odata.count"`` as a string; an unknown property in
  any of them is a 400.
- References are GUIDs (empty: all zeros); dates have no zone (the base's local time,
  ``timezone``); receipts carry ``DeletionMark``, ``Posted`` and the composite counterparty.
- Writes: ``POST <Entity>`` (201 with the record), ``PATCH <Entity>(guid'…')``,
  ``POST <Entity>(guid'…')/Post()``. Tabular rows go inline with their ``LineNumber`` (a row
  without it fails with 500, code -1); a tabular section's own set takes no POST ("Cоздание
  строк табличной части напрямую не поддерживается", code 13: errors24.ru thread on 1C
  OData errors; the status there is not shown, 400 is assumed).
- Errors are ``{"odata.error": {"code", "message": {"lang": "ru", "value"}}}``. The code
  numbers other than -1 (internal error) and 13 are not documented publicly; clients must
  not depend on them (the plugin reads statuses and shows the text).
- ``date_filters_fail = True`` makes every ``$filter`` with a ``datetime'…'`` literal fail
  with a 500, as some bases do (reference §3 [verify]).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from hub.testing import FakeServer, RecordedRequest, Response
from plugins.onec.testing.configurations import (
    BANK,
    BP30,
    CASH,
    CONTACTS,
    COUNTERPARTIES,
    Configuration,
    edmx,
)
from plugins.onec.testing.filters import FilterError, compile_filter

EMPTY = "00000000-0000-0000-0000-000000000000"
ROOT = "/base/odata/standard.odata"
ONE = re.compile(r"^(?P<entity>[^(]+)\(guid'(?P<ref>[0-9a-fA-F-]{36})'\)$")
INTERNAL = ("Произошла внутренняя ошибка OData сервиса. Дополнительные сведения можно найти "
            "в технологическом журнале.")


def odata_error(status: int, code: str, message: str) -> Response:
    return Response.json({"odata.error": {"code": code, "message": {"lang": "ru", "value": message}}},
                         status)


class FakeOneC(FakeServer):
    """A fake infobase; ``odata_url`` is what a connector's ``base_url`` is set to.

    Seeding (see ``add_counterparty``, ``add_payment``) writes records as 1C keeps them:
    phones and emails only in ``Представление`` unless ``structured=True``, dates in the
    base's local time::

        with FakeOneC(username="lh", password="pw") as onec:       # БП 3.0 by default
            romashka = onec.add_counterparty("Ромашка", inn="7707083893",
                                             full_name="ООО «Ромашка»",
                                             phones=["8 (916) 123-45-67"],
                                             emails=["IVAN@ROMASHKA.RU"])
            onec.add_payment(romashka, 120_000, datetime(2026, 3, 5, tzinfo=UTC))
            onec.add_payment(romashka, 5_000, day, cash=True)                  # cash receipt
            onec.add_payment(romashka, 7_000, day, operation="ВозвратОтПоставщика")  # not paid
            onec.add_payment(romashka, 9_000, day, posted=False)               # not paid
            onec.add_payment(romashka, 9_000, day, deleted=True)               # not paid
            settings = {"plugin": "onec", "base_url": onec.odata_url,
                        "username": "lh", "password": "pw"}
    """

    def __init__(self, *, username: str = "Администратор", password: str = "secret",
                 configuration: Configuration = BP30, timezone: str = "Europe/Moscow",
                 date_filters_fail: bool = False) -> None:
        super().__init__()
        self.username, self.password = username, password
        self.configuration = configuration
        self.zone = ZoneInfo(timezone)
        self.date_filters_fail = date_filters_fail
        self.published: set[str] = set(configuration.sets)
        self.tables: dict[str, dict[str, dict[str, Any]]] = {
            name: {} for name in configuration.sets if name not in configuration.sections}
        self._numbers = itertools.count(1)
        for method in ("GET", "POST", "PATCH"):
            self.add_route(method, f"{ROOT}/{{entity}}", self._entity)
        self.add_route("POST", f"{ROOT}/{{entity}}/{{action}}", self._action)

    @property
    def odata_url(self) -> str:
        return self.base_url + ROOT

    # ------------------------------------------------------------ switches

    def unpublish(self, entity: str) -> None:
        """Take ``entity`` out of the OData composition (its requests become 404s)."""
        with self.lock:
            self.published.discard(entity)

    # ------------------------------------------------------------ seeding and reading

    def local(self, when: datetime) -> str:
        """A date as 1C writes it: the base's local time, no zone."""
        if when.tzinfo is not None:
            when = when.astimezone(self.zone)
        return when.replace(tzinfo=None, microsecond=0).isoformat()

    def add_counterparty(
        self, name: str, *, inn: str | None = None, full_name: str | None = None,
        phones: Iterable[str] = (), emails: Iterable[str] = (), structured: bool = False,
        deleted: bool = False, comment: str = "",
    ) -> str:
        """A counterparty; phones and emails as managers typed them (``8 (916) 123-45-67``,
        ``IVAN@EXAMPLE.RU``), kept in ``Представление`` only unless ``structured`` (then
        also in ``НомерТелефона``/``АдресЭП`` where the configuration has them). Its
        ``Ref_Key``."""
        props = self.configuration.sets[COUNTERPARTIES]
        rows = [{"Тип": "Телефон", "Представление": p, **({"НомерТелефона": p} if structured else {})}
                for p in phones]
        rows += [{"Тип": "АдресЭлектроннойПочты", "Представление": e,
                  **({"АдресЭП": e} if structured else {})} for e in emails]
        record: dict[str, Any] = {"Description": name, "DeletionMark": deleted}
        for prop, value in (("ИНН", inn or ""), ("НаименованиеПолное", full_name or name),
                            ("Комментарий", comment), ("ДополнительнаяИнформация", comment)):
            if prop in props:
                record[prop] = value
        contact_props = self.configuration.sets[CONTACTS]
        record["КонтактнаяИнформация"] = [
            {"LineNumber": str(n), **{k: v for k, v in row.items() if k in contact_props}}
            for n, row in enumerate(rows, 1)]
        with self.lock:
            return str(self._insert(COUNTERPARTIES, record)["Ref_Key"])

    def add_payment(
        self, counterparty: str, amount: float, date: datetime, *, cash: bool = False,
        operation: str = "ОплатаПокупателя", posted: bool = True, deleted: bool = False,
        counterparty_type: str = COUNTERPARTIES, number: str | None = None,
    ) -> str:
        """A bank receipt (``cash``: a cash receipt) from ``counterparty`` (a Ref_Key;
        ``counterparty_type`` for one that is not a ``Catalog_Контрагенты``). ``operation``
        is its ``ВидОперации``: ``ОплатаПокупателя`` is a customer's payment,
        ``ВозвратОтПоставщика`` a supplier's refund, ``ПрочееПоступление``... Its
        ``Ref_Key``."""
        record: dict[str, Any] = {
            "Date": self.local(date), "Posted": posted, "DeletionMark": deleted,
            "ВидОперации": operation, "Контрагент": counterparty,
            "Контрагент_Type": f"StandardODATA.{counterparty_type}",
            "СуммаДокумента": float(amount), "Организация_Key": EMPTY,
        }
        if number is not None:
            record["Number"] = number
        with self.lock:
            return str(self._insert(CASH if cash else BANK, record)["Ref_Key"])

    def records(self, entity: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(r) for r in self.tables.get(entity, {}).values()]

    @property
    def counterparties(self) -> list[dict[str, Any]]:
        return self.records(COUNTERPARTIES)

    @property
    def orders(self) -> list[dict[str, Any]]:
        return self.records(self.configuration.order)

    # ------------------------------------------------------------ the protocol

    def before_route(self, request: RecordedRequest) -> Response | None:
        auth = request.headers.get("authorization", "")
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if auth != f"Basic {expected}":
            response = odata_error(401, "1", "Ошибка аутентификации")  # code: unverified
            response.headers["WWW-Authenticate"] = 'Basic realm="1C:Enterprise"'
            return response
        return super().before_route(request)

    def fault_response(self, kind: str) -> Response:
        if kind in ("500", "502", "503"):
            return odata_error(int(kind), "-1", INTERNAL)
        if kind == "400":
            return odata_error(400, "5", "Неправильный формат тела запроса")
        return super().fault_response(kind)

    def _entity(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        name = unquote(params["entity"])
        if name == "$metadata" and request.method == "GET":
            return Response(200, edmx(self.configuration, self.published),
                            "application/xml;charset=utf-8")
        one = ONE.match(name)
        entity = one["entity"] if one else name
        if entity not in self.published:
            return odata_error(404, "6", f"Не найден объект метаданных: {entity}")  # code: unverified
        if request.method == "GET":
            if one:
                row = self.tables.get(entity, {}).get(one["ref"].lower())
                if row is None:
                    return odata_error(404, "9", "Экземпляр сущности не найден")
                return self._answer(request, entity, [row], single=True)
            return self._list(request, entity)
        if entity in self.configuration.sections:
            return odata_error(400, "13", "Cоздание строк табличной части напрямую не поддерживается")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return odata_error(400, "5", "Неправильный формат тела запроса")
        if not isinstance(body, dict):
            return odata_error(400, "5", "Неправильный формат тела запроса")
        if request.method == "POST" and not one:
            return self._create(request, entity, body)
        if request.method == "PATCH" and one:
            row = self.tables[entity].get(one["ref"].lower())
            if row is None:
                return odata_error(404, "9", "Экземпляр сущности не найден")
            problem = self._check_body(entity, body)
            if problem:
                return problem
            row.update(body)
            return self._answer(request, entity, [row], single=True)
        return odata_error(400, "4", "Недопустимый HTTP-метод")

    def _action(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        one = ONE.match(unquote(params["entity"]))
        action = unquote(params["action"])
        if one is None or action not in ("Post()", "Unpost()"):
            return odata_error(400, "2", "Неправильный URL")
        entity = one["entity"]
        if entity not in self.published:
            return odata_error(404, "6", f"Не найден объект метаданных: {entity}")
        row = self.tables.get(entity, {}).get(one["ref"].lower())
        if row is None or "Posted" not in row:
            return odata_error(404, "9", "Экземпляр сущности не найден")
        row["Posted"] = action == "Post()"
        return Response(200, b"")

    # ------------------------------------------------------------ reading

    def _rows(self, entity: str) -> list[dict[str, Any]]:
        if entity in self.configuration.sections:
            owner, section = self.configuration.sections[entity]
            return [{"Ref_Key": ref, **line} for ref, row in self.tables[owner].items()
                    for line in row.get(section, [])]
        return list(self.tables[entity].values())

    def _list(self, request: RecordedRequest, entity: str) -> Response:
        props = self.configuration.sets[entity]
        rows = self._rows(entity)
        text = request.q("$filter")
        if text:
            try:
                predicate, dated = compile_filter(text, props)
            except FilterError as exc:
                return odata_error(400, "3", f"Неправильный параметр $filter: {exc}")
            if dated and self.date_filters_fail:
                return odata_error(500, "-1", INTERNAL)
            rows = [r for r in rows if predicate(r)]
        order = request.q("$orderby")
        if order:
            for part in reversed([p.strip() for p in order.split(",") if p.strip()]):
                prop, _, direction = part.partition(" ")
                if prop not in props:
                    return odata_error(400, "3", f"Неправильный параметр $orderby: {prop}")
                rows.sort(key=_sort_key(prop), reverse=direction.strip() == "desc")
        count = len(rows)
        try:
            skip, top = int(request.q("$skip") or 0), request.q("$top")
        except ValueError:
            return odata_error(400, "3", "Неправильный параметр $skip")
        rows = rows[skip:]
        if top is not None:
            if not top.isdigit():
                return odata_error(400, "3", "Неправильный параметр $top")
            rows = rows[:int(top)]
        return self._answer(request, entity, rows,
                            count=count if request.q("$inlinecount") == "allpages" else None)

    def _answer(self, request: RecordedRequest, entity: str, rows: Sequence[dict[str, Any]],
                *, single: bool = False, count: int | None = None, status: int = 200) -> Response:
        select = [s.strip() for s in (request.q("$select") or "").split(",") if s.strip()]
        props = self.configuration.sets[entity]
        unknown = [s for s in select if s not in props]
        if unknown:
            return odata_error(400, "3", f"Неправильный параметр $select: {unknown[0]}")
        shown = [{k: v for k, v in r.items() if not select or k in select} for r in rows]
        wants_json = request.q("$format") == "json" or "application/json" in request.headers.get("accept", "")
        if not wants_json:
            return Response(status, _atom(self.odata_url, entity, shown),
                            "application/atom+xml;charset=utf-8")
        meta = f"{self.odata_url}/$metadata#{entity}"
        if single:
            return Response.json({"odata.metadata": meta + "/@Element", **shown[0]}, status)
        body: dict[str, Any] = {"odata.metadata": meta}
        if count is not None:
            body["odata.count"] = str(count)  # a string, as 1C sends it
        body["value"] = shown
        return Response.json(body, status)

    # ------------------------------------------------------------ writing

    def _check_body(self, entity: str, body: dict[str, Any]) -> Response | None:
        props = self.configuration.sets[entity]
        for key, value in body.items():
            if key not in props:
                return odata_error(400, "7", f"Не найдено свойство: {key}")  # code: unverified
            kind = props[key]
            if kind.startswith("Collection(") and not isinstance(value, list):
                return odata_error(400, "5", f"{key}: ожидается массив строк табличной части")
            if kind == "Edm.Guid" and not _is_guid(value):
                return odata_error(400, "8", f"{key}: неправильное значение ссылки")
        for key in body:
            if f"{key}_Type" in props and props[key] == "Edm.String" and f"{key}_Type" not in body:
                return odata_error(400, "8", f"{key}: не указан тип составного значения")
        section_of = {owner_prop: name for name, (owner, owner_prop) in self.configuration.sections.items()
                      if owner == entity}
        for key, section in section_of.items():
            lines = body.get(key) or []
            line_props = self.configuration.sets[section]
            for line in lines:
                if not isinstance(line, dict):
                    return odata_error(400, "5", f"{key}: строка не объект")
                if not line.get("LineNumber"):
                    return odata_error(500, "-1", INTERNAL)  # errors24.ru: set LineNumber
                extra = [k for k in line if k not in line_props or k == "Ref_Key"]
                if extra:
                    return odata_error(400, "7", f"Не найдено свойство: {key}/{extra[0]}")
        return None

    def _create(self, request: RecordedRequest, entity: str, body: dict[str, Any]) -> Response:
        protected = {"Ref_Key", "DataVersion"} & set(body)
        if protected:
            return odata_error(400, "8", f"Свойство {sorted(protected)[0]} только для чтения")
        problem = self._check_body(entity, body)
        if problem:
            return problem
        row = self._insert(entity, body)
        return self._answer(request, entity, [row], single=True, status=201)

    def _insert(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        props = self.configuration.sets[entity]
        ref = str(uuid.uuid4())
        n = next(self._numbers)
        row: dict[str, Any] = {"Ref_Key": ref, "DataVersion": base64.b64encode(n.to_bytes(8, "big")).decode(),
                               "DeletionMark": False}
        if "Code" in props:
            row["Code"] = f"00-{n:08d}"
        if "Number" in props:
            row["Number"] = f"0000-{n:06d}"
            row["Date"] = self.local(datetime.now(self.zone))
            row["Posted"] = False
        for prop, kind in props.items():  # unset attributes as 1C shows them: empty values
            if prop not in row and prop not in body:
                row[prop] = _empty(kind)
        row.update(body)
        self.tables[entity][ref] = row
        return row


def _sort_key(prop: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    return lambda row: (row.get(prop) is None, str(row.get(prop) or ""))


def _empty(kind: str) -> Any:
    if kind == "Edm.Guid":
        return EMPTY
    if kind == "Edm.Boolean":
        return False
    if kind in ("Edm.Double", "Edm.Int64"):
        return 0
    if kind == "Edm.DateTime":
        return "0001-01-01T00:00:00"
    if kind.startswith("Collection("):
        return []
    return ""


def _is_guid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _atom(root: str, entity: str, rows: Sequence[dict[str, Any]]) -> str:
    """The Atom feed 1C answers when JSON was not asked for (enough to be unusable as JSON)."""
    entries = "".join(
        "<entry><content type=\"application/xml\"><m:properties>"
        + "".join(f"<d:{k}>{escape(str(v))}</d:{k}>" for k, v in r.items() if not isinstance(v, list))
        + "</m:properties></content></entry>" for r in rows)
    return ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:d="http://schemas.microsoft.com/ado/2007/08/dataservices" '
            'xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/metadata" '
            f'xml:base="{escape(root)}"><title>{escape(entity)}</title>{entries}</feed>')
