"""MoySklad's data formats: Moscow time, kopecks and ``syncId``.

- Date-times are strings ``"YYYY-MM-DD HH:MM:SS.mmm"`` (answers) or without the
  milliseconds (filters), in Moscow time, with no zone in the string (MoySklad docs,
  ``md/_general.md`` "Формат даты и времени": "указаны в часовом поясе: MSK"). A document's
  ``moment`` is kept to the minute ("устанавливаются и выводятся ... с точностью до минут").
- Money is in kopecks (``sum`` of ``paymentin``: 124124100 is 1 241 241.00 roubles;
  reference §4 "money in kopecks").
- ``syncId`` is a client-made UUID that makes a create idempotent ("при повторной отправке
  этого же запроса (с тем же syncId) ... в ответ придет ранее созданная сущность",
  ``md/_general.md`` "Назначение поля syncId"): we derive it from the delivery's
  idempotency key, so every attempt of one lead sends the same one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

MOSCOW = ZoneInfo("Europe/Moscow")
#: The namespace of LeadHub's syncIds (uuid5 of a fixed name: stable across releases).
SYNC_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://leadhub.invalid/moysklad/syncId")
_FORMATS = ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def to_moscow(moment: datetime) -> str:
    """An aware datetime as MoySklad writes it in a filter: Moscow time, to the second."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no zone to convert from")
    return moment.astimezone(MOSCOW).strftime("%Y-%m-%d %H:%M:%S")


def to_moscow_ms(moment: datetime) -> str:
    """As MoySklad answers: Moscow time with milliseconds."""
    local = moment.astimezone(MOSCOW)
    return local.strftime("%Y-%m-%d %H:%M:%S.") + f"{local.microsecond // 1000:03d}"


def from_moscow(text: str) -> datetime:
    """A MoySklad date-time string (Moscow time) as an aware datetime in UTC."""
    for fmt in _FORMATS:
        try:
            local = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return local.replace(tzinfo=MOSCOW).astimezone(UTC)
    raise ValueError(f"not a MoySklad date-time: {text!r}")


def roubles(kopecks: float | int) -> float:
    """Kopecks (MoySklad's ``sum``) as roubles, rounded to the kopeck."""
    return round(float(kopecks) / 100.0, 2)


def kopecks(amount: float) -> int:
    return round(amount * 100)


def sync_id(idempotency_key: str, what: str) -> str:
    """The ``syncId`` of ``what`` ("counterparty", "customerorder") for one delivery."""
    return str(uuid.uuid5(SYNC_NAMESPACE, f"{what}:{idempotency_key}"))
