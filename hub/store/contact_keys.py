"""Contact keys: the normalized phones, e-mails and messenger ids of each lead, which
cross-channel dedup and ``sticky`` assignment compare (``hub/engine/process.py``)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, bindparam, insert, select

from hub.store import StoredRow
from hub.store import tables as t
from hub.store.statements import Many

ck, ld = t.contact_keys, t.leads


class ContactKey(NamedTuple):
    key: str  # "phone:+7...", "email:...", "<messenger>:<id>"
    lead_id: str
    received_at: float


_in_window = (
    select(ck.c.key, ck.c.received_at, ck.c.lead_id, ld.c.duplicate_of)
    .join(ld, ld.c.id == ck.c.lead_id)
    .where(ck.c.key.in_(bindparam("k_keys", expanding=True)),
           ck.c.received_at >= bindparam("k_since"), ck.c.received_at <= bindparam("k_until"))
)


def in_window(conn: Connection, keys: list[str], since: float, until: float) -> list[StoredRow]:
    """``(key, received_at, lead_id, duplicate_of)`` of the leads with these keys received
    in ``[since, until]``."""
    return list(conn.execute(_in_window, {"k_keys": keys, "k_since": since, "k_until": until}))


def latest_assigned(conn: Connection, keys: list[str], other_than: str) -> StoredRow | None:
    """``(received_at, assigned_to)`` of the latest lead with one of these keys that has a
    manager, other than lead ``other_than``."""
    return conn.execute(
        select(ld.c.received_at, ld.c.assigned_to)
        .join(ck, ck.c.lead_id == ld.c.id)
        .where(ck.c.key.in_(keys), ld.c.assigned_to.is_not(None), ld.c.id != other_than)
        .order_by(ld.c.received_at.desc())
        .limit(1)
    ).first()


_add = Many(insert(ck))


def add(conn: Connection, keys: list[ContactKey]) -> None:
    """One executemany."""
    if keys:
        _add(conn, [k._asdict() for k in keys])
