"""Lead rows: listed and read for the admin API and the CLI, claimed and written back by
the worker's process step, continued by call and chat events, purged and erased.

The caller holds the connection and decides the transaction; each function runs its
statements on it. Rows come back as SQLAlchemy rows with the ``leads`` columns as
attributes (``row.id``, ``row.data``, ...) unless a docstring says otherwise.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, bindparam, delete, exists, or_, select, update

from hub.models import Lead
from hub.store import JsonText, StoredRow
from hub.store import tables as t
from hub.store.dialect import for_update, json_as_text
from hub.store.statements import Many, PerDialect

ld = t.leads


def lead_from_json(text: str) -> Lead:
    """A ``Lead`` from its stored JSON text: parsed and validated in one pass (pydantic's
    JSON parser, about a third cheaper than ``json.loads`` and ``model_validate``; the drain
    does it for every delivery). JSON that parser refuses (a lone surrogate, written before
    request bodies were cleaned of them, or ``NaN`` in a custom field) is read by
    ``json.loads`` as before, and ``Lead`` cleans it."""
    try:
        return Lead.from_json(text)
    except ValidationError:
        return Lead.model_validate(json.loads(text))


@dataclass(frozen=True)
class LeadFilter:
    """What a lead listing keeps; an empty value keeps everything."""

    source: str | None = None
    channel: str | None = None
    status: str | None = None
    since: float | None = None  # received at or after (epoch seconds)
    before_id: str | None = None  # a page cursor: ids below this one
    text: str | None = None  # a substring of the lead's JSON (name, phone, email, message)


def newest(conn: Connection, keep: LeadFilter, limit: int) -> list[StoredRow]:
    """Up to ``limit`` leads, newest (highest id) first."""
    stmt = select(ld).order_by(ld.c.id.desc()).limit(limit)
    if keep.source:
        stmt = stmt.where(ld.c.source == keep.source)
    if keep.channel:
        stmt = stmt.where(ld.c.channel == keep.channel)
    if keep.status:
        stmt = stmt.where(ld.c.status == keep.status)
    if keep.since is not None:
        stmt = stmt.where(ld.c.received_at >= keep.since)
    if keep.before_id:
        stmt = stmt.where(ld.c.id < keep.before_id)
    if keep.text:
        stmt = stmt.where(json_as_text(ld.c.data).ilike(f"%{keep.text}%"))
    return list(conn.execute(stmt))


def by_id(conn: Connection, lead_id: str) -> StoredRow | None:
    return conn.execute(select(ld).where(ld.c.id == lead_id)).first()


def by_ids(conn: Connection, lead_ids: Iterable[str]) -> list[StoredRow]:
    return list(conn.execute(select(ld).where(ld.c.id.in_(list(lead_ids)))))


def set_routed(conn: Connection, lead_id: str) -> None:
    """Back to ``routed`` (a replay gave it deliveries again)."""
    conn.execute(update(ld).where(ld.c.id == lead_id).values(status="routed"))


def reopen(conn: Connection, lead_id: str, now: float) -> None:
    """A lead that had given up (``failed``, ``partially_delivered``) is ``routed`` again:
    one of its deliveries is to be tried anew."""
    conn.execute(
        update(ld)
        .where(ld.c.id == lead_id, ld.c.status.in_(("failed", "partially_delivered")))
        .values(status="routed", updated_at=now)
    )


# --- the worker's process step (hub/engine/process.py) ---------------------------------


#: the columns the process step reads: every one but ``data``, which comes as its JSON text
#: (``data_text``): the step decodes it once, and compares the text to tell whether an
#: event changed the lead since it was read (a dict comparison needed a second decode)
def _claim_columns() -> list[Any]:
    return [c for c in ld.c if c.name != "data"] + [json_as_text(ld.c.data).label("data_text")]


def _waiting_select(*columns: Any) -> Any:
    """Received leads nobody holds, oldest first, at most ``c_limit`` of them."""
    return (
        select(*columns)
        .where(ld.c.status == "received", ld.c.lease_until < bindparam("c_now"))
        .order_by(ld.c.received_at, ld.c.id)
        .limit(bindparam("c_limit"))
    )


def _build_claim(conn: Connection) -> Any:
    pick = _waiting_select(ld.c.id)
    return (
        update(ld)
        .where(ld.c.id.in_(for_update(conn, pick, skip_locked=True).scalar_subquery()))
        .values(lease_until=bindparam("c_until"))
        .returning(*_claim_columns())
    )


_claim = PerDialect(_build_claim)
def claim_received(conn: Connection, now: float, limit: int, lease_until: float) -> list[StoredRow]:
    """Lease up to ``limit`` received leads whose lease has run out (oldest first) until
    ``lease_until``, in one statement; on PostgreSQL another worker's claimed rows are
    skipped. The rows have every column but ``data``, which is ``data_text`` (its JSON)."""
    rows = conn.execute(_claim(conn), {"c_now": now, "c_limit": limit, "c_until": lease_until})
    return sorted(rows, key=lambda r: (r.received_at, r.id))


_waiting = _waiting_select(*_claim_columns())


def waiting_received(conn: Connection, now: float, limit: int) -> list[StoredRow]:
    """The leads ``claim_received`` would claim, read without claiming them (a reader's
    snapshot), with the same columns."""
    return list(conn.execute(_waiting, {"c_now": now, "c_limit": limit}))


_claim_ids = (
    update(ld)
    .where(ld.c.id.in_(bindparam("c_ids", expanding=True)), ld.c.status == "received",
           ld.c.lease_until < bindparam("c_now"))
    .values(lease_until=bindparam("c_until"))
    .returning(ld.c.id, ld.c.status, json_as_text(ld.c.data).label("data_text"))
)


def claim_ids(conn: Connection, lead_ids: list[str], now: float, lease_until: float) -> list[StoredRow]:
    """Lease these leads if they are still received and nobody holds them; ``id``,
    ``status`` and ``data_text`` of those leased (what ``lock_current`` gives): the write
    transaction's own claim of leads read outside it."""
    return list(conn.execute(_claim_ids, {"c_ids": lead_ids, "c_now": now, "c_until": lease_until}))


def _build_lock_current(conn: Connection) -> Any:
    q = select(ld.c.id, ld.c.status, json_as_text(ld.c.data).label("data_text")).where(
        ld.c.id.in_(bindparam("c_ids", expanding=True)))
    return for_update(conn, q)


_lock_current = PerDialect(_build_lock_current)


def lock_current(conn: Connection, lead_ids: list[str]) -> list[StoredRow]:
    """``id``, ``status`` and ``data_text`` (the JSON as stored) of these leads as they are
    now, locked until the transaction ends: nobody writes them between this read and the
    caller's write."""
    return list(conn.execute(_lock_current(conn), {"c_ids": lead_ids}))


@dataclass(frozen=True)
class RoutedLead:
    """A processed lead as it is written back (its lease ends)."""

    id: str
    status: str
    data: JsonText  # the lead encoded from its model (``Lead.model_dump_json``)
    duplicate_of: str | None
    assigned_to: str | None


_write_routed = Many(update(ld).where(ld.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), data=bindparam("b_data"), duplicate_of=bindparam("b_dup"),
    assigned_to=bindparam("b_assigned"), lease_until=0.0, updated_at=bindparam("b_now")))


def write_routed(conn: Connection, leads: list[RoutedLead], now: float) -> None:
    """One executemany for the whole batch."""
    if not leads:
        return
    _write_routed(
        conn,
        [{"b_id": r.id, "b_status": r.status, "b_data": r.data, "b_dup": r.duplicate_of,
          "b_assigned": r.assigned_to, "b_now": now} for r in leads],
    )


def extend_lease(conn: Connection, lead_id: str, until: float) -> None:
    conn.execute(update(ld).where(ld.c.id == lead_id).values(lease_until=until))


def set_enriched(conn: Connection, lead_id: str, data: dict[str, Any]) -> StoredRow:
    """Store what the source's enrichment filled in; the lead's row as it now is, with the
    columns ``claim_received`` gives (``data_text`` for ``data``)."""
    conn.execute(update(ld).where(ld.c.id == lead_id).values(data=data, needs_enrichment=False))
    return conn.execute(select(*_claim_columns()).where(ld.c.id == lead_id)).one()


# --- call and chat events continuing a lead (hub/engine/conversations.py) ----------------------


def lock_data(conn: Connection, lead_ids: list[str]) -> list[StoredRow]:
    """``(id, data)`` of these leads, locked until the transaction ends: a worker must not
    write a lead between the caller's read and its write."""
    q = select(ld.c.id, ld.c.data).where(ld.c.id.in_(lead_ids))
    return list(conn.execute(for_update(conn, q)))


def set_data(conn: Connection, data: dict[str, dict[str, Any]], now: float) -> None:
    """Replace the JSON of each lead in ``data`` (id → JSON): one executemany."""
    if not data:
        return
    conn.execute(
        update(ld).where(ld.c.id == bindparam("l_id"))
        .values(data=bindparam("l_data"), updated_at=bindparam("l_now")),
        [{"l_id": i, "l_data": d, "l_now": now} for i, d in data.items()],
    )


# --- retention and erasure --------------------------------------------------------------


def oldest(conn: Connection, before: float, limit: int) -> list[StoredRow]:
    """Up to ``limit`` leads received before ``before``, oldest first, with ``id``,
    ``source``, ``received_at``, ``status`` and ``retrying`` (a delivery of it is still
    ``failed``); on PostgreSQL rows another transaction holds are skipped."""
    dl = t.deliveries
    retrying = exists().where(dl.c.lead_id == ld.c.id, dl.c.status == "failed")
    q = (select(ld.c.id, ld.c.source, ld.c.received_at, ld.c.status, retrying.label("retrying"))
         .where(ld.c.received_at < before).order_by(ld.c.received_at).limit(limit))
    return list(conn.execute(for_update(conn, q, skip_locked=True, of=ld)))


def delete_with_dependents(conn: Connection, lead_ids: list[str]) -> Counter[str]:
    """Delete leads and everything that hangs off them (deliveries, contact keys, threads;
    not their raw requests); the rows deleted per table."""
    deleted: Counter[str] = Counter()
    for table in (t.deliveries, t.contact_keys, t.threads):
        deleted[table.name] = conn.execute(delete(table).where(table.c.lead_id.in_(lead_ids))).rowcount
    # duplicates of a deleted lead keep their own record, not a dangling pointer
    conn.execute(update(ld).where(ld.c.duplicate_of.in_(lead_ids)).values(duplicate_of=None))
    deleted["leads"] = conn.execute(delete(ld).where(ld.c.id.in_(lead_ids))).rowcount
    return deleted


def with_contact_keys(conn: Connection, keys: list[str]) -> list[StoredRow]:
    """Leads that have any of these contact keys."""
    ck = t.contact_keys
    by_key = select(ck.c.lead_id).where(ck.c.key.in_(keys))
    return list(conn.execute(select(ld).where(ld.c.id.in_(by_key))))


def mentioning(conn: Connection, needles: list[str]) -> list[StoredRow]:
    """Leads whose JSON contains any of ``needles`` (case-insensitive): a full scan."""
    text = json_as_text(ld.c.data)
    return list(conn.execute(select(ld).where(or_(*(text.ilike(f"%{n}%") for n in needles)))))
