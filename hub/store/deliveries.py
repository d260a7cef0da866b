"""The delivery rows a drain works on: lease a batch, read its leads, record the attempt.

The drain (``hub/engine/drain.py``) decides; this module owns the queries, for SQLite and
PostgreSQL alike. A drain costs two write transactions per batch in the common case (the
lease, and the record of every outcome with the leads' statuses), a third only when an
uncertain item is sent after its look-up: every writer of the store (the api's group
commit included) waits for SQLite's one write lock, so a transaction per lead is what a
busy ``leadhub serve`` cannot afford.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, bindparam, case, insert, select, update

from hub.connectors import DeliveryItem
from hub.engine.status import derive_status
from hub.models import Lead
from hub.store import StoredRow
from hub.store import tables as t
from hub.store.dialect import for_update, json_as_text
from hub.store.leads import lead_from_json
from hub.store.statements import Many, PerDialect

log = logging.getLogger("leadhub.drain")
d = t.deliveries


def lease_batch(
    conn: Connection, destination: str, size: int, now: float, lease_s: float, attempt: str
) -> list[Any]:
    """Lease up to ``size`` due deliveries for attempt ``attempt``; the rows are returned as
    they were before (their ``attempt_id`` is the previous attempt's).

    An item whose last attempt left no doubt (not ``uncertain``, no lease run out) gets
    ``sent_attempt_id = attempt`` here, in the lease's own statement: should this attempt
    die after sending, the next one looks for exactly this attempt's records. An
    uncertain item keeps the attempt to look for until its look-up has answered.
    """
    rows = _whole_attempts(list(conn.execute(
        _due(conn), {"l_dest": destination, "l_now": now, "l_limit": size * 2})), size)
    if rows:
        conn.execute(_lease, {"l_ids": [r.id for r in rows], "l_until": now + lease_s,
                              "l_attempt": attempt, "l_now": now})
    return rows


def _build_due(conn: Connection) -> Any:
    """Due deliveries, oldest first (ids are ULIDs: routing order). By due time, a retry
    went behind every lead that was routed before it fell due: under 20 % faults at 100
    leads/s, a batch on its fourth try waited 3.4 s behind a backlog of fresh leads,
    the slowest lead of ``bench/delivery.py`` (11 s). Oldest first bounds the wait of
    the leads that have waited longest. It costs nothing more: both orders read every due
    row of the index range and sort them (SQLite: a temporary B-tree either way)."""
    q = (
        select(d)
        .where(
            d.c.destination == bindparam("l_dest"),
            d.c.status.in_(("pending", "failed")),
            d.c.next_attempt_at <= bindparam("l_now"),
            d.c.lease_until < bindparam("l_now"),
        )
        .order_by(d.c.id)
        .limit(bindparam("l_limit"))
    )
    return for_update(conn, q, skip_locked=True)


_due = PerDialect(_build_due)
_certain = (d.c.uncertain.is_(False)) & (d.c.lease_until <= 0)
_lease = (
    update(d)
    .where(d.c.id.in_(bindparam("l_ids", expanding=True)))
    .values(
        lease_until=bindparam("l_until"), attempt_id=bindparam("l_attempt"),
        updated_at=bindparam("l_now"),
        sent_attempt_id=case((_certain, bindparam("l_attempt")), else_=d.c.sent_attempt_id),
    )
)


def _whole_attempts(candidates: list[Any], size: int) -> list[Any]:
    """Up to ``size`` rows in order, keeping the uncertain items of one earlier attempt
    together: their look-up is one request for the whole group, and a group cut in two
    by a batch boundary was looked up twice (each time exposed to a flaky CRM's faults)."""
    groups: dict[str, list[Any]] = {}
    for row in candidates:
        if was_uncertain(row) and row.sent_attempt_id:
            groups.setdefault(row.sent_attempt_id, []).append(row)
    chosen: list[Any] = []
    taken: set[str] = set()
    for row in candidates:
        if row.id in taken:
            continue
        group = groups.get(row.sent_attempt_id) if was_uncertain(row) and row.sent_attempt_id else None
        unit = group if group is not None else [row]
        if len(chosen) + len(unit) > size:
            if chosen:
                continue  # it waits for the next batch, whole
            unit = unit[:size]
        chosen += unit
        taken.update(r.id for r in unit)
        if len(chosen) >= size:
            break
    return chosen


def was_uncertain(row: Any) -> bool:
    """The previous attempt may have landed: it said so, or its lease ran out unrecorded."""
    return bool(row.uncertain or row.lease_until > 0)


_lead_texts = select(t.leads.c.id, json_as_text(t.leads.c.data), t.leads.c.duplicate_of).where(
    t.leads.c.id.in_(bindparam("i_ids", expanding=True)))
_original_ids = select(d.c.lead_id, d.c.destination, d.c.external_id).where(
    d.c.lead_id.in_(bindparam("i_ids", expanding=True)))


def load_items(conn: Connection, rows: list[Any], attempt: str) -> list[DeliveryItem]:
    """The batch's items: each lead read and validated once, and for duplicates the id
    their original got at the same destination."""
    data: dict[str, str] = {}
    originals: set[str] = set()
    for lid, text, dup in conn.execute(_lead_texts, {"i_ids": list({r.lead_id for r in rows})}):
        data[lid] = text
        if dup:
            originals.add(dup)
    orig_ext: dict[tuple[str, str], str | None] = {}
    if originals:
        for lid, dest, ext in conn.execute(_original_ids, {"i_ids": list(originals)}):
            orig_ext[(lid, dest)] = ext
    leads = {lid: lead_from_json(text) for lid, text in data.items()}
    items = []
    for r in rows:
        lead = leads[r.lead_id]
        dup_ext = orig_ext.get((lead.duplicate_of, r.destination)) if lead.duplicate_of else None
        items.append(item_of(r, lead, attempt, dup_ext))
    return items


def item_of(row: Any, lead: Lead, attempt: str, duplicate_of_external_id: str | None = None,
            ) -> DeliveryItem:
    """The item of a leased delivery row (as it was before the lease) and its lead."""
    return DeliveryItem(
        delivery_id=row.id,
        idempotency_key=row.idempotency_key,
        lead=lead,
        uncertain=was_uncertain(row),
        duplicate_of_external_id=duplicate_of_external_id,
        attempt_id=attempt,
        previous_attempt_id=row.sent_attempt_id if was_uncertain(row) else None,
    )


def originals_pending(conn: Connection, originals: Iterable[str], destination: str) -> set[str]:
    """Of these leads, those whose delivery to ``destination`` is still to come."""
    wanted = set(originals)
    if not wanted:
        return set()
    return set(conn.execute(_pending_of, {"p_ids": list(wanted), "p_dest": destination}).scalars())


_pending_of = select(d.c.lead_id).where(
    d.c.lead_id.in_(bindparam("p_ids", expanding=True)), d.c.destination == bindparam("p_dest"),
    d.c.status.in_(("pending", "failed")))


def mark_sending(engine: Engine, ids: list[str], until: float, attempt: str) -> None:
    """Before the request leaves: these (formerly uncertain) items are now this attempt's to
    look for, and their lease covers the call."""
    if not ids:
        return
    with engine.begin() as conn:
        conn.execute(
            update(d)
            .where(d.c.id.in_(ids), d.c.attempt_id == attempt)
            .values(lease_until=until, sent_attempt_id=attempt)
        )


@dataclass
class AttemptRecord:
    """What one batch attempt changes in the store, written in one transaction."""

    delivered: list[dict[str, Any]] = field(default_factory=list)  # b_id, b_ext, b_attempts, b_first
    failed: list[dict[str, Any]] = field(default_factory=list)  # + b_status, b_next, b_uncertain, b_error
    #: not tried: id → (next attempt at, still uncertain)
    deferred: dict[str, tuple[float, bool]] = field(default_factory=dict)
    lead_ids: set[str] = field(default_factory=set)


def record_attempt(engine: Engine, record: AttemptRecord, attempt: str, now: float) -> set[str]:
    """Write a batch attempt: outcomes, deferrals and the leads' statuses, in one
    transaction, one statement per kind of change (executemany). Only deliveries this
    attempt still holds are written: an attempt whose lease ran out and was taken over
    (a stalled worker) records nothing, since the newer attempt, which looked the lead up
    first, speaks for it. Returns the ids written."""
    ids = [r["b_id"] for r in record.delivered + record.failed] + list(record.deferred)
    if not ids:
        return set()
    with engine.begin() as conn:
        ours = set(conn.execute(_held(conn), {"r_ids": ids, "r_attempt": attempt}).scalars())
        if len(ours) < len(ids):
            log.warning("%d outcome(s) dropped: their lease was taken over", len(ids) - len(ours))
        delivered = [r for r in record.delivered if r["b_id"] in ours]
        failed = [r for r in record.failed if r["b_id"] in ours]
        deferred = [{"b_id": i, "b_next": at, "b_uncertain": unsure}
                    for i, (at, unsure) in record.deferred.items() if i in ours]
        _delivered(conn, [{**r, "b_now": now} for r in delivered])
        _failed(conn, [{**r, "b_now": now} for r in failed])
        _deferred(conn, [{**r, "b_now": now} for r in deferred])
        if delivered or failed:
            _refresh_statuses(conn, record.lead_ids, now)
    return ours


def _build_held(conn: Connection) -> Any:
    q = select(d.c.id).where(d.c.id.in_(bindparam("r_ids", expanding=True)),
                             d.c.attempt_id == bindparam("r_attempt"))
    return for_update(conn, q)


_held = PerDialect(_build_held)
_delivered = Many(update(d).where(d.c.id == bindparam("b_id")).values(
    status="delivered", external_id=bindparam("b_ext"), uncertain=False, last_error=None,
    delivered_at=bindparam("b_now"), attempts=bindparam("b_attempts"),
    first_attempt_at=bindparam("b_first"), lease_until=0.0, updated_at=bindparam("b_now")))
_failed = Many(update(d).where(d.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), next_attempt_at=bindparam("b_next"),
    uncertain=bindparam("b_uncertain"), last_error=bindparam("b_error"),
    attempts=bindparam("b_attempts"), first_attempt_at=bindparam("b_first"), lease_until=0.0,
    updated_at=bindparam("b_now")))
#: Not an attempt: the previous attempt stays the one to look for, so a deferred uncertain
#: item (a lease that ran out included) still starts with a look-up.
_deferred = Many(update(d).where(d.c.id == bindparam("b_id")).values(
    lease_until=0.0, next_attempt_at=bindparam("b_next"), updated_at=bindparam("b_now"),
    uncertain=bindparam("b_uncertain")))
_lead_and_delivery_statuses = (
    select(t.leads.c.id, t.leads.c.status, d.c.status.label("delivery_status"))
    .join(d, d.c.lead_id == t.leads.c.id)
    .where(t.leads.c.id.in_(bindparam("s_ids", expanding=True)))
)
_set_lead_status = update(t.leads).where(t.leads.c.id.in_(bindparam("s_ids", expanding=True))).values(
    status=bindparam("s_status"), updated_at=bindparam("s_now"))


def _refresh_statuses(conn: Connection, lead_ids: set[str], now: float) -> None:
    """Each lead's status derived again from its deliveries: one read (the leads joined to
    their deliveries), one update per new status (a batch's leads mostly share one: a
    statement for the batch, not a row of an executemany per lead). A lead without
    deliveries keeps its status."""
    if not lead_ids:
        return
    current: dict[str, str] = {}
    statuses: dict[str, list[str]] = {}
    for lead_id, status, delivery_status in conn.execute(
            _lead_and_delivery_statuses, {"s_ids": list(lead_ids)}):
        current[lead_id] = status
        statuses.setdefault(lead_id, []).append(delivery_status)
    changed: dict[str, list[str]] = {}
    for lid, old in current.items():
        if (new := derive_status(old, statuses[lid])) != old:
            changed.setdefault(new, []).append(lid)
    for new, ids in sorted(changed.items()):
        conn.execute(_set_lead_status, {"s_ids": ids, "s_status": new, "s_now": now})


# --- creating, listing and reviving deliveries (process, replay, the admin API, retention,
# erasure): the drain's lease and record are above ----------------------------------------


class NewDelivery(NamedTuple):
    id: str
    lead_id: str
    destination: str
    #: leased as it is created (the api's express send): until when, and for which attempt
    lease_until: float = 0.0
    attempt: str | None = None


_add = Many(insert(d))
#: a deliveries row with every column, as a ``select(d)`` returns it
DeliveryRow = namedtuple("DeliveryRow", [c.key for c in d.c])  # type: ignore[misc]


def add(conn: Connection, new: list[NewDelivery], now: float) -> None:
    """Insert pending deliveries, due now (one executemany); the idempotency key a
    destination sees is ``<lead id>:<destination>``. One with a lease is inserted leased
    to its attempt, as ``lease_batch`` would lease it (a new item leaves no doubt: the
    attempt is also the one to look for, ``sent_attempt_id``)."""
    if not new:
        return
    _add(conn, [{**_values(n, now), "lease_until": n.lease_until, "attempt_id": n.attempt,
                 "sent_attempt_id": n.attempt} for n in new])


def _values(n: NewDelivery, now: float) -> dict[str, Any]:
    """What ``add`` writes for ``n``, its lease aside."""
    return dict(id=n.id, lead_id=n.lead_id, destination=n.destination, status="pending",
                idempotency_key=f"{n.lead_id}:{n.destination}", attempts=0, next_attempt_at=now,
                uncertain=False, created_at=now, updated_at=now)


def as_added(n: NewDelivery, now: float) -> Any:
    """The row ``add`` wrote for ``n`` as it was before its lease, as ``lease_batch``
    returns the rows it leased (what the drain's record and items read), without reading
    it back: every other column is NULL, as the insert left it."""
    values: dict[str, Any] = dict.fromkeys(DeliveryRow._fields)
    values.update(_values(n, now), lease_until=0.0)
    return DeliveryRow(**values)


def destinations_of(conn: Connection, lead_id: str) -> list[str]:
    return list(conn.execute(select(d.c.destination).where(d.c.lead_id == lead_id)).scalars())


_destinations_of_leads = select(d.c.lead_id, d.c.destination).where(
    d.c.lead_id.in_(bindparam("o_ids", expanding=True)))


def destinations_of_leads(conn: Connection, lead_ids: list[str]) -> list[StoredRow]:
    """``(lead_id, destination)`` of every delivery of these leads."""
    return list(conn.execute(_destinations_of_leads, {"o_ids": lead_ids}))


def of_leads(conn: Connection, lead_ids: list[str]) -> list[StoredRow]:
    """Every delivery of these leads (whole rows), in id order."""
    return list(conn.execute(select(d).where(d.c.lead_id.in_(lead_ids)).order_by(d.c.id)))


def by_id(conn: Connection, delivery_id: str) -> StoredRow | None:
    return conn.execute(select(d).where(d.c.id == delivery_id)).first()


def newest(conn: Connection, status: str | None, destination: str | None,
           before_id: str | None, limit: int) -> list[StoredRow]:
    """Up to ``limit`` deliveries, newest (highest id) first; an empty filter keeps all."""
    stmt = select(d).order_by(d.c.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(d.c.status == status)
    if destination:
        stmt = stmt.where(d.c.destination == destination)
    if before_id:
        stmt = stmt.where(d.c.id < before_id)
    return list(conn.execute(stmt))


def revive_of_lead(conn: Connection, lead_id: str, now: float) -> int:
    """The lead's ``dead`` and ``failed`` deliveries are pending and due now, their retry
    schedule started afresh; how many there were."""
    return conn.execute(
        update(d)
        .where(d.c.lead_id == lead_id, d.c.status.in_(("dead", "failed")))
        .values(status="pending", next_attempt_at=now, first_attempt_at=None, updated_at=now)
    ).rowcount


def retry_now(conn: Connection, row: StoredRow, now: float) -> None:
    """Delivery ``row`` is pending and due now; a dead one starts its schedule afresh."""
    conn.execute(
        update(d).where(d.c.id == row.id).values(
            status="pending", next_attempt_at=now, updated_at=now,
            first_attempt_at=None if row.status == "dead" else row.first_attempt_at,
        )
    )


def statuses_of_leads(conn: Connection, lead_ids: list[str]) -> list[StoredRow]:
    """``(lead_id, destination, status)`` of every delivery of these leads."""
    return list(conn.execute(
        select(d.c.lead_id, d.c.destination, d.c.status).where(d.c.lead_id.in_(lead_ids))))


def retrying_leads(conn: Connection, lead_ids: list[str]) -> set[str]:
    """Of these leads, those with a delivery still retrying (``failed``)."""
    return set(conn.execute(select(d.c.lead_id).where(
        d.c.lead_id.in_(lead_ids), d.c.status == "failed")).scalars())


def delivered_copies(conn: Connection, lead_ids: list[str]) -> list[StoredRow]:
    """``(destination, lead_id, external_id)`` of these leads' delivered deliveries, by
    destination and lead."""
    return list(conn.execute(
        select(d.c.destination, d.c.lead_id, d.c.external_id)
        .where(d.c.lead_id.in_(lead_ids), d.c.status == "delivered")
        .order_by(d.c.destination, d.c.lead_id)))
