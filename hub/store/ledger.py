"""The ledger's counts (``hub/engine/ledger.py`` adds them up and checks the balance) and
``ledger_rollup``, where retention keeps what purged rows counted, per UTC day.

Every count is over rows received in ``[lo, hi)`` (epoch seconds), grouped in SQL: the
ledger costs a handful of aggregate queries whatever the number of leads.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Connection, exists, func, select

from hub.store import StoredRow
from hub.store import tables as t
from hub.store.dialect import upsert

RollupKey = tuple[float, str, str, str]  # (day, kind, name, key) of ledger_rollup

ie, ld, dl, ru = t.inbound_events, t.leads, t.deliveries, t.ledger_rollup


def last_rolled_up_day(conn: Connection) -> float | None:
    """The last UTC day (its midnight) whose rows retention purged, None when none was."""
    last = conn.execute(select(func.max(ru.c.day))).scalar()
    return None if last is None else float(last)


def event_counts(conn: Connection, lo: float, hi: float) -> list[StoredRow]:
    """``(source, outcome, events)`` of the raw requests (a provider's retry left out)."""
    return list(conn.execute(
        select(ie.c.source, ie.c.outcome, func.sum(ie.c.events))
        .where(ie.c.received_at >= lo, ie.c.received_at < hi, ie.c.outcome != "retry")
        .group_by(ie.c.source, ie.c.outcome)
    ))


def lead_counts(conn: Connection, lo: float, hi: float) -> list[StoredRow]:
    """``(source, status, retrying, leads)``: ``retrying`` when a delivery is ``failed``."""
    retrying = exists().where(dl.c.lead_id == ld.c.id, dl.c.status == "failed")
    return list(conn.execute(
        select(ld.c.source, ld.c.status, retrying, func.count())
        .where(ld.c.received_at >= lo, ld.c.received_at < hi)
        .group_by(ld.c.source, ld.c.status, retrying)
    ))


def rollup_counts(conn: Connection, lo: float, hi: float) -> list[StoredRow]:
    """``(kind, name, key, n)`` summed over the rolled-up days in the range."""
    return list(conn.execute(
        select(ru.c.kind, ru.c.name, ru.c.key, func.sum(ru.c.n))
        .where(ru.c.day >= lo, ru.c.day < hi)
        .group_by(ru.c.kind, ru.c.name, ru.c.key)
    ))


def delivery_counts(conn: Connection, lo: float, hi: float) -> list[StoredRow]:
    """``(destination, status, deliveries)`` of the leads received in the range."""
    return list(conn.execute(
        select(dl.c.destination, dl.c.status, func.count())
        .join(ld, ld.c.id == dl.c.lead_id)
        .where(ld.c.received_at >= lo, ld.c.received_at < hi)
        .group_by(dl.c.destination, dl.c.status)
    ))


def add_to_rollup(conn: Connection, counts: Counter[RollupKey]) -> None:
    """Add ``counts`` to ``ledger_rollup``: one upsert (executemany) on both dialects."""
    rows = [{"day": day, "kind": kind, "name": name, "key": key, "n": n}
            for (day, kind, name, key), n in counts.items() if n]
    if not rows:
        return
    stmt = upsert(conn, ru)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[ru.c.day, ru.c.kind, ru.c.name, ru.c.key],
        set_={"n": ru.c.n + stmt.excluded.n},
    ), rows)
