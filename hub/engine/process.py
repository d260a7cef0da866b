"""Worker step one: take committed leads, dedup them across channels, route, assign a
manager, and create one delivery row per destination, all in one transaction.

Every step is idempotent: a lead is claimed with a lease, so a worker killed mid-way
leaves it to be claimed again, and delivery rows are unique per (lead, destination).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hub.config import AssignRule
from hub.engine.ingest import new_id
from hub.engine.routing import choose_route, weighted_sequence
from hub.errors import PermanentError, RetryableError
from hub.models import Lead
from hub.runtime import Runtime
from hub.store import tables as t

log = logging.getLogger("leadhub.process")
LEASE_S = 30.0
BATCH = 200


@dataclass
class Processed:
    leads: list[Lead] = field(default_factory=list)
    destinations: set[str] = field(default_factory=set)


def contact_keys(lead: Lead) -> list[str]:
    """The identities dedup compares: E.164 phones, emails, messenger ids."""
    keys = [f"phone:{p}" for p in lead.contact.phones]
    keys += [f"email:{e}" for e in lead.contact.emails]
    keys += [f"{m.kind}:{m.id}" for m in lead.contact.messengers]
    return keys


def claim_leads(conn: Connection, now: float, limit: int = BATCH) -> list[Any]:
    """Lease up to ``limit`` leads waiting to be processed (SKIP LOCKED on PostgreSQL;
    SQLite serializes writers, and the transaction began IMMEDIATE)."""
    q = (
        select(t.leads.c.id)
        .where(t.leads.c.status == "received", t.leads.c.lease_until < now)
        .order_by(t.leads.c.received_at, t.leads.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    ids = list(conn.execute(q).scalars())
    if not ids:
        return []
    conn.execute(update(t.leads).where(t.leads.c.id.in_(ids)).values(lease_until=now + LEASE_S))
    rows = conn.execute(
        select(t.leads).where(t.leads.c.id.in_(ids)).order_by(t.leads.c.received_at, t.leads.c.id)
    )
    return list(rows)


def find_original(conn: Connection, lead: Lead, received_at: float, window_s: float) -> str | None:
    """The earliest lead of the window that shares a phone, email or messenger id."""
    keys = contact_keys(lead)
    if not keys or window_s <= 0:
        return None
    row = conn.execute(
        select(t.contact_keys.c.lead_id, t.leads.c.duplicate_of)
        .join(t.leads, t.leads.c.id == t.contact_keys.c.lead_id)
        .where(
            t.contact_keys.c.key.in_(keys),
            t.contact_keys.c.received_at >= received_at - window_s,
            t.contact_keys.c.lead_id != lead.id,
            or_(
                t.contact_keys.c.received_at < received_at,
                and_(t.contact_keys.c.received_at == received_at, t.contact_keys.c.lead_id < lead.id),
            ),
        )
        .order_by(t.contact_keys.c.received_at, t.contact_keys.c.lead_id)
        .limit(1)
    ).first()
    if row is None:
        return None
    return str(row.duplicate_of or row.lead_id)


def next_counter(conn: Connection, name: str) -> int:
    """Advance a shared persistent counter atomically and return its new value (1-based)."""
    ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(t.counters)
    stmt = ins.values(name=name, value=1).on_conflict_do_update(
        index_elements=["name"], set_={"value": t.counters.c.value + 1}
    ).returning(t.counters.c.value)
    return int(conn.execute(stmt).scalar_one())


def assign_manager(
    conn: Connection, route: str, rule: AssignRule, lead: Lead
) -> str | None:
    if rule.strategy == "sticky":
        keys = contact_keys(lead)
        if keys:
            prior = conn.execute(
                select(t.leads.c.assigned_to)
                .join(t.contact_keys, t.contact_keys.c.lead_id == t.leads.c.id)
                .where(
                    t.contact_keys.c.key.in_(keys),
                    t.leads.c.assigned_to.is_not(None),
                    t.leads.c.id != lead.id,
                )
                .order_by(t.leads.c.received_at.desc())
                .limit(1)
            ).scalar()
            if prior and (not rule.managers or prior in rule.managers):
                return str(prior)
    if rule.strategy == "weighted":
        seq = weighted_sequence(rule.weights)
        if not seq:
            return None
        return seq[(next_counter(conn, f"assign:{route}") - 1) % len(seq)]
    if not rule.managers:
        return None
    return rule.managers[(next_counter(conn, f"assign:{route}") - 1) % len(rule.managers)]


def create_deliveries(conn: Connection, lead_id: str, destinations: Iterable[str], now: float) -> None:
    existing = set(
        conn.execute(
            select(t.deliveries.c.destination).where(t.deliveries.c.lead_id == lead_id)
        ).scalars()
    )
    rows = [
        dict(
            id=new_id(), lead_id=lead_id, destination=d, status="pending",
            idempotency_key=f"{lead_id}:{d}", attempts=0, next_attempt_at=now,
            lease_until=0.0, uncertain=False, created_at=now, updated_at=now,
        )
        for d in dict.fromkeys(destinations)
        if d not in existing
    ]
    if rows:
        conn.execute(insert(t.deliveries), rows)


def process_lead(rt: Runtime, conn: Connection, row: Any, now: float) -> tuple[Lead, list[str]]:
    lead = Lead.model_validate(row.data)
    window_s = rt.config.hub.dedup_window_minutes * 60.0
    original = find_original(conn, lead, row.received_at, window_s)
    keys = contact_keys(lead)
    if keys:
        conn.execute(
            insert(t.contact_keys),
            [{"key": k, "lead_id": lead.id, "received_at": row.received_at} for k in keys],
        )
    destinations: list[str]
    if original is not None:
        lead.duplicate_of = original
        lead.status = "duplicate"
        # destinations that can annotate the original deal get a note delivery
        orig_dests = conn.execute(
            select(t.deliveries.c.destination).where(t.deliveries.c.lead_id == original)
        ).scalars()
        destinations = [d for d in orig_dests if _annotates(rt, d)]
    else:
        decision = choose_route(lead, rt.config.routes, rt.config.hub.default_destinations)
        if decision.product and not lead.product:
            lead.product = decision.product
        if decision.assign is not None:
            lead.assigned_to = assign_manager(conn, decision.route or "", decision.assign, lead)
        destinations = decision.destinations
        lead.status = "routed" if destinations else "unrouted"
    create_deliveries(conn, lead.id, destinations, now)
    data = lead.to_json_dict()
    data.pop("deliveries", None)
    conn.execute(
        update(t.leads)
        .where(t.leads.c.id == lead.id)
        .values(
            status=lead.status, data=data, duplicate_of=lead.duplicate_of,
            assigned_to=lead.assigned_to, lease_until=0.0, updated_at=now,
        )
    )
    return lead, destinations


def _annotates(rt: Runtime, destination: str) -> bool:
    dest = rt.destination(destination)
    return bool(dest is not None and dest.annotates_duplicates)


ENRICH_RETRY_S = 60.0
ENRICH_HORIZON_S = 24 * 3600.0


def _quarantine_lead(conn: Connection, row: Any, reason: str, now: float) -> None:
    """The event turns out not to be a lead after all: it moves to quarantine (ledger too)."""
    conn.execute(t.leads.delete().where(t.leads.c.id == row.id))
    conn.execute(update(t.inbound_events).where(t.inbound_events.c.id == row.inbound_id)
                 .values(outcome="quarantined", lead_id=None, note=reason))
    conn.execute(insert(t.quarantine).values(
        id=new_id(), inbound_id=row.inbound_id or "", source=row.source, reason=reason,
        state="open", created_at=now, updated_at=now,
    ))


def enrich(rt: Runtime, rows: list[Any], now: float) -> list[Any]:
    """Let sources fetch what their webhook only pointed at (I/O, outside any transaction).

    Returns the rows ready to process; a lead whose source failed retryably waits a minute
    (its lease), for at most a day; a permanent failure or a lead that still has no
    contact goes to quarantine.
    """
    ready = []
    for row in rows:
        if not row.needs_enrichment:
            ready.append(row)
            continue
        src = rt.source(row.source)
        reason = None
        try:
            if src is None:
                raise PermanentError(f"source {row.source!r} is no longer configured")
            lead = src.enrich(Lead.model_validate(row.data))
            if not lead.contact.has_any():
                reason = "no contact after enrichment: no phone, email or messenger id"
        except RetryableError as exc:
            if now - row.received_at < ENRICH_HORIZON_S:
                log.warning("enrichment of a %s lead failed, will retry: %s", row.source, exc)
                with rt.db.begin() as conn:
                    conn.execute(update(t.leads).where(t.leads.c.id == row.id)
                                 .values(lease_until=now + ENRICH_RETRY_S))
                continue
            reason = f"enrichment kept failing for a day: {exc}"
        except Exception as exc:
            reason = f"enrichment failed: {type(exc).__name__}: {exc}"
        with rt.db.begin() as conn:
            if reason is not None:
                _quarantine_lead(conn, row, reason, now)
                continue
            data = lead.to_json_dict()
            data.pop("deliveries", None)
            conn.execute(update(t.leads).where(t.leads.c.id == row.id)
                         .values(data=data, needs_enrichment=False))
            ready.append(conn.execute(select(t.leads).where(t.leads.c.id == row.id)).one())
    return ready


def process_received(rt: Runtime, limit: int = BATCH) -> Processed:
    """Process one batch of received leads; returns what was done (for wake-ups and hooks).

    Claim (one short transaction), enrich where a source asked for it (no transaction
    open during its I/O), then dedup, route and assign in one transaction.
    """
    out = Processed()
    now = time.time()
    with rt.db.begin() as conn:
        rows = claim_leads(conn, now, limit)
    if not rows:
        return out
    rows = enrich(rt, rows, now)
    with rt.db.begin() as conn:
        for claimed in rows:
            # read the lead again inside this transaction: a call or chat event may have
            # continued it since the claim, and its data must not be overwritten
            q = select(t.leads).where(t.leads.c.id == claimed.id)
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            row = conn.execute(q).first()
            if row is None or row.status != "received":
                continue
            lead, dests = process_lead(rt, conn, row, now)
            out.leads.append(lead)
            out.destinations.update(dests)
    return out
