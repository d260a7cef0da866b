"""The fake MoySklad account's data: entities, their JSON, ``filter``, ``search``, ``expand``.

Written from MoySklad's documentation (``moysklad/api-remap-1.2-doc``; section names in
quotes): entities are JSON objects with ``meta`` (``md/_general.md`` "Метаданные"); lists are
``{context, meta: {size, limit, offset, nextHref?}, rows}`` ("Мета коллекций"); date-times
are Moscow time ``YYYY-MM-DD HH:MM:SS.mmm`` and a document's ``moment`` is kept to the
minute ("Формат даты и времени"); ``sum`` is in kopecks; ``syncId`` makes a create
idempotent ("Назначение поля syncId"); ``filter`` conditions are joined by ``;``, repeated
``=`` on one field is OR, ``~ ~= =~`` are case-insensitive substring / prefix / suffix
matches on strings only ("Фильтрация выборки", "Оператор фильтрации подобие"); ``search``
matches the start of a word of the main string fields ("Контекстный поиск"); ``expand`` is
ignored when a list's ``limit`` is over 100 ("На expand действуют следующие правила");
documents in the trash are not listed unless ``isDeleted`` says so ("Фильтрация документов").
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from plugins.moysklad.formats import MOSCOW

TYPES = ("counterparty", "organization", "customerorder", "paymentin", "cashin",
         "paymentout", "cashout")
DOCUMENTS = ("customerorder", "paymentin", "cashin", "paymentout", "cashout")
DATETIME_FIELDS = ("moment", "created", "updated")
STRING_FIELDS = ("name", "phone", "email", "inn", "description", "externalCode", "legalTitle",
                 "code")
#: Fields ``search`` looks in ("основные строковые поля").
SEARCH_FIELDS = ("name", "phone", "email", "inn", "legalTitle", "description", "code")
#: Operators, longest first so ``>=`` is not read as ``>`` (``md/_general.md``).
_CONDITION = re.compile(r"^([A-Za-z][\w.]*)(>=|<=|!=|~=|=~|=|>|<|~)(.*)$", re.S)
_MS_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
EXPAND_MAX_LIMIT = 100
MAX_LIMIT = 1000


class ApiError(Exception):
    """An answer in MoySklad's error shape: ``{"errors": [{"error", "code", "moreInfo"}]}``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


def error_body(code: int, message: str) -> dict[str, Any]:
    return {"errors": [{"error": message, "code": code,
                        "moreInfo": f"https://dev.moysklad.ru/doc/api/remap/1.2/#error_{code}"}]}


def ms_text(moment: datetime) -> str:
    """A naive Moscow datetime as MoySklad answers it."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def parse_ms(text: str) -> datetime:
    for fmt in _MS_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ApiError(400, 1014, f"Неверное значение '{text}' параметра фильтрации")


def moscow_now() -> datetime:
    return datetime.now(UTC).astimezone(MOSCOW).replace(tzinfo=None)


def to_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


@dataclass
class Listing:
    rows: list[dict[str, Any]]
    size: int
    limit: int
    offset: int


class Account:
    """Entities of one MoySklad account, by type, in creation order."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.entities: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TYPES}
        self._numbers: dict[str, int] = dict.fromkeys(TYPES, 0)

    # ------------------------------------------------------------ meta and JSON

    def meta(self, type_: str, id_: str) -> dict[str, Any]:
        return {"href": f"{self.api_url}/entity/{type_}/{id_}",
                "metadataHref": f"{self.api_url}/entity/{type_}/metadata",
                "type": type_, "mediaType": "application/json"}

    def ref(self, value: Any, field: str) -> tuple[str, str]:
        """``{"meta": {"href", "type"}}`` → (type, id) of an existing entity, or a 400."""
        meta = value.get("meta") if isinstance(value, dict) else None
        href = meta.get("href") if isinstance(meta, dict) else None
        if not isinstance(href, str):
            raise ApiError(400, 2016, f"Ошибка формата: значение поля '{field}' не соответствует типу Meta")
        parts = href.rstrip("/").split("/")
        type_, id_ = parts[-2], parts[-1]
        if type_ not in self.entities or id_ not in self.entities[type_]:
            raise ApiError(404, 1021, f"Объект с типом '{type_}' и идентификатором '{id_}' не найден")
        return type_, id_

    def render(self, type_: str, entity: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"meta": self.meta(type_, entity["id"])}
        for key, value in entity.items():
            if key.startswith("_"):
                continue
            if isinstance(value, datetime):
                out[key] = ms_text(value)
            elif key in expand and isinstance(value, dict) and "meta" in value:
                ref_type, ref_id = value["meta"]["type"], value["meta"]["href"].rsplit("/", 1)[-1]
                target = self.entities.get(ref_type, {}).get(ref_id)
                out[key] = self.render(ref_type, target, set()) if target else copy.deepcopy(value)
            else:
                out[key] = copy.deepcopy(value)
        return out

    # ------------------------------------------------------------ create

    def existing(self, type_: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The entity a create with this body's ``syncId`` made before, if any."""
        sync = body.get("syncId")
        if sync is None:
            return None
        for entity in self.entities[type_].values():
            if entity.get("syncId") == sync:
                return entity
        return None

    def check(self, type_: str, body: Any) -> None:
        """Raise the ``ApiError`` creating ``body`` would meet (nothing is created)."""
        if not isinstance(body, dict):
            raise ApiError(400, 2005, "Ошибка формата: входящий JSON должен начинаться либо "
                                      "с объекта, либо с массива")
        sync = body.get("syncId")
        if sync is not None and (not isinstance(sync, str) or not UUID_RE.match(sync)):
            raise ApiError(400, 2016, "Ошибка формата: значение поля 'syncId' не соответствует типу UUID")
        if self.existing(type_, body) is not None:
            return
        if type_ in ("counterparty", "organization"):
            if not str(body.get("name") or "").strip():
                raise ApiError(412, 3000, _required("name"))
        else:
            for field in ("organization", "agent"):
                if field not in body:
                    raise ApiError(412, 3000, _required(field))
                self.ref(body[field], field)
        if "moment" in body:
            parse_ms(str(body["moment"]))

    def create(self, type_: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create one entity from a request body; a known ``syncId`` returns the existing one."""
        self.check(type_, body)
        found = self.existing(type_, body)
        if found is not None:
            return found
        entity: dict[str, Any] = {}
        for key, value in body.items():
            if key in ("meta", "id", "created", "updated", "deleted"):
                continue
            if key == "moment":
                entity[key] = to_minute(parse_ms(str(value)))
            else:
                entity[key] = copy.deepcopy(value)
        now = moscow_now()
        entity.update(id=str(uuid.uuid4()), created=now, updated=now)
        if type_ in DOCUMENTS:
            entity.setdefault("moment", to_minute(now))
            entity.setdefault("applicable", True)
            entity.setdefault("sum", 0)
            self._numbers[type_] += 1
            entity.setdefault("name", f"{self._numbers[type_]:05d}")
            entity["_deleted"] = False
        self.entities[type_][entity["id"]] = entity
        return entity

    # ------------------------------------------------------------ lists

    def listing(self, type_: str, query: dict[str, list[str]]) -> Listing:
        limit = _int_param(query, "limit", MAX_LIMIT)
        offset = _int_param(query, "offset", 0)
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            raise ApiError(400, 1014, f"Неверное значение параметра 'limit': {limit}")
        rows = list(self.entities[type_].values())
        conditions = _conditions(query.get("filter", [""])[-1])
        deleted = [v for f, op, v in conditions if f == "isDeleted" and op == "="]
        if type_ in DOCUMENTS:
            wanted = {v == "true" for v in deleted} if deleted else {False}
            rows = [r for r in rows if r["_deleted"] in wanted]
        rows = [r for r in rows if _matches(r, [c for c in conditions if c[0] != "isDeleted"])]
        search = query.get("search", [""])[-1].strip().lower()
        if search:
            rows = [r for r in rows if _found(r, search.split())]
        order = query.get("order", [""])[-1]
        for part in reversed([p for p in order.split(";") if p]):
            field, _, direction = part.partition(",")
            rows.sort(key=_by(field), reverse=direction == "desc")
        return Listing(rows[offset:offset + limit], len(rows), limit, offset)

    def list_answer(self, type_: str, query: dict[str, list[str]]) -> dict[str, Any]:
        found = self.listing(type_, query)
        expand = set(query.get("expand", [""])[-1].split(",")) - {""}
        if found.limit > EXPAND_MAX_LIMIT:
            expand = set()  # "expand будет игнорироваться"
        href = f"{self.api_url}/entity/{type_}"
        meta: dict[str, Any] = {"href": href, "type": type_, "mediaType": "application/json",
                                "size": found.size, "limit": found.limit, "offset": found.offset}
        flat = {k: v[-1] for k, v in query.items()}
        if found.offset + found.limit < found.size:
            meta["nextHref"] = href + "?" + urlencode({**flat, "offset": found.offset + found.limit})
        if found.offset > 0:
            meta["previousHref"] = href + "?" + urlencode(
                {**flat, "offset": max(0, found.offset - found.limit)})
        return {"context": {"employee": {"meta": {
                    "href": f"{self.api_url}/context/employee", "type": "employee",
                    "mediaType": "application/json"}}},
                "meta": meta, "rows": [self.render(type_, r, expand) for r in found.rows]}


def _required(field: str) -> str:
    return f"Ошибка сохранения объекта: поле '{field}' не может быть пустым или отсутствовать"


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise ApiError(400, 1014, f"Неверное значение '{values[-1]}' параметра '{name}'") from None


def _conditions(text: str) -> list[tuple[str, str, str]]:
    out = []
    for part in re.split(r"(?<!\\);", text):
        if not part:
            continue
        found = _CONDITION.match(part)
        if found is None:
            raise ApiError(400, 1034, f"Ошибка фильтрации: неверное условие '{part}'")
        field, op, value = found.groups()
        out.append((field, op, value.replace("\\;", ";")))
    return out


def _matches(row: dict[str, Any], conditions: list[tuple[str, str, str]]) -> bool:
    """Conditions on different fields are AND; repeated ``=`` on one field are OR."""
    equal: dict[str, list[str]] = {}
    for field, op, value in conditions:
        if op == "=":
            equal.setdefault(field, []).append(value)
        elif not _check(row, field, op, value):
            return False
    return all(any(_check(row, f, "=", v) for v in values) for f, values in equal.items())


def _check(row: dict[str, Any], field: str, op: str, value: str) -> bool:
    if field in DATETIME_FIELDS:
        if op in ("~", "~=", "=~"):
            raise ApiError(400, 1034, f"Ошибка фильтрации: оператор '{op}' неприменим к полю '{field}'")
        moment = row.get(field)
        if not isinstance(moment, datetime):
            return op == "!="
        when = parse_ms(value)
        return {"=": moment == when, "!=": moment != when, ">": moment > when,
                "<": moment < when, ">=": moment >= when, "<=": moment <= when}[op]
    if field == "applicable":
        if value not in ("true", "false") or op not in ("=", "!="):
            raise ApiError(400, 1014, f"Неверное значение '{value}' параметра фильтрации '{field}'")
        return (bool(row.get(field)) == (value == "true")) == (op == "=")
    if field in ("agent", "organization"):
        href = ((row.get(field) or {}).get("meta") or {}).get("href")
        return (href == value) == (op == "=")
    if field in ("syncId", "id"):
        if op not in ("=", "!="):
            raise ApiError(400, 1034, f"Ошибка фильтрации: оператор '{op}' неприменим к полю '{field}'")
        return (row.get(field) == value) == (op == "=")
    if field in STRING_FIELDS:
        have = str(row.get(field) or "")
        low, want = have.lower(), value.lower()
        if op == "~":
            return want in low
        if op == "~=":
            return low.startswith(want)
        if op == "=~":
            return low.endswith(want)
        if op == "=":
            return have == value
        if op == "!=":
            return have != value
        raise ApiError(400, 1034, f"Ошибка фильтрации: оператор '{op}' неприменим к полю '{field}'")
    raise ApiError(400, 1034, f"Ошибка фильтрации: неизвестное поле '{field}'")


def _found(row: dict[str, Any], words: list[str]) -> bool:
    """Every search word starts a word of one of the main string fields (taken literally:
    whether MoySklad reads "9161234567" in "+7 (916) 123-45-67" is not documented)."""
    text_words = [w for f in SEARCH_FIELDS
                  for w in re.split(r"[\s,;()\-]+", str(row.get(f) or "").lower()) if w]
    return all(any(w.startswith(word) for w in text_words) for word in words)


def _by(field: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    return lambda row: _sort_key(row.get(field))


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, datetime):
        return (1, value.isoformat())
    return (1, value)
