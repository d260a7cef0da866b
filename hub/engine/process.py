"""Worker step one: take committed leads, dedup them across channels, route, assign a
manager, and create one delivery row per destination, all in one transaction.

Every step is idempotent: a lead is claimed with a lease, so a worker killed mid-way
leaves it to be claimed again, and delivery rows are unique per (lead, destination).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from sqlalchemy import Connection

from hub.capabilities import Capability
from hub.engine.routing import RouteDecision, choose_route, weighted_sequence
from hub.errors import PermanentError, RetryableError
from hub.ids import new_id
from hub.models import Lead
from hub.runtime import Runtime
from hub.store import JsonText, counters
from hub.store import contact_keys as contact_store
from hub.store import deliveries as delivery_store
from hub.store import leads as lead_store
from hub.store import quarantine as quarantine_store
from hub.store.contact_keys import ContactKey
from hub.store.deliveries import NewDelivery

log = logging.getLogger("leadhub.process")
LEASE_S = 30.0
#: most leads one routing transaction takes. It holds SQLite's one write lock, and the
#: api's group commits wait for it: with a backlog (``leadhub serve`` under full load into
#: the ``webhook`` destination, two cores) a batch of 200 held the lock 44-60 ms at p50 and
#: up to 164 ms (its holder waiting for a core two thirds of the time), and the webhook's
#: answers had p99 128-143 ms; with 64, 87-108 ms (alternated runs; the accepted
#: rate the same within the runs' spread).
BATCH = 64


#: a claim of at most this many leads, none waiting for enrichment, is routed in the
#: transaction that claimed it (the express path's one lead: one commit, not two)
ONE_TRANSACTION_MAX = 8


@dataclass
class Processed:
    leads: list[Lead] = field(default_factory=list)
    destinations: set[str] = field(default_factory=set)
    #: ``send_now``: the deliveries leased in the routing transaction, by destination
    leased: dict[str, Leased] = field(default_factory=dict)
    #: destinations given new deliveries that were not leased here (the drains' to send)
    unleased: set[str] = field(default_factory=set)

    def for_drains(self) -> set[str]:
        """The destinations whose drains have new work: all that got deliveries, less those
        whose deliveries were all leased here."""
        return (self.destinations - self.leased.keys()) | self.unleased


@dataclass
class Leased:
    """Deliveries of one destination leased for ``attempt`` as they were created, with
    their leads as routed: the caller sends them without reading either back."""

    attempt: str
    rows: list[Any]
    leads: dict[str, Lead]


def contact_keys(lead: Lead) -> list[str]:
    """The identities dedup compares: E.164 phones, emails, messenger ids."""
    keys = [f"phone:{p}" for p in lead.contact.phones]
    keys += [f"email:{e}" for e in lead.contact.emails]
    keys += [f"{m.kind}:{m.id}" for m in lead.contact.messengers]
    return keys


def claim_leads(conn: Connection, now: float, limit: int = BATCH) -> list[Any]:
    """Lease up to ``limit`` leads waiting to be processed (SKIP LOCKED on PostgreSQL;
    SQLite serializes writers, and the transaction began IMMEDIATE)."""
    return lead_store.claim_received(conn, now, limit, lease_until=now + LEASE_S)


def next_counter(conn: Connection, name: str, step: int = 1) -> int:
    """Advance a shared persistent counter atomically by ``step`` and return its new value
    (1-based): the values ``new - step + 1 .. new`` are the caller's."""
    return counters.advance(conn, name, step)


def create_deliveries(conn: Connection, lead_id: str, destinations: Iterable[str], now: float) -> None:
    existing = set(delivery_store.destinations_of(conn, lead_id))
    delivery_store.add(conn, [
        NewDelivery(new_id(), lead_id, d) for d in dict.fromkeys(destinations) if d not in existing
    ], now)


@dataclass
class _Prepared:
    """A claimed lead read and routed outside any write transaction. ``row.data_text`` is
    its JSON as it was read: the write checks that nobody changed it since."""

    row: Any
    lead: Lead
    decision: RouteDecision
    keys: list[str]


def _prepare(rt: Runtime, row: Any, data: dict[str, Any] | None = None) -> _Prepared:
    """``data`` when the caller has it parsed already; else the row's JSON text is read by
    pydantic's own parser (one pass, and no second lone-surrogate check: it refuses them),
    with ``json.loads`` and the cleaning validator for text it refuses."""
    if data is not None:
        lead = Lead.model_validate(data)
    else:
        try:
            lead = Lead.from_json(row.data_text)
        except ValueError:
            lead = Lead.model_validate(json.loads(row.data_text))
    decision = choose_route(lead, rt.config.routes, rt.config.hub.default_destinations)
    return _Prepared(row, lead, decision, contact_keys(lead))


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


class _KeyIndex:
    """contact_keys of the window, from the store and from the batch as it is routed:
    ``find_original`` and the sticky look-up for a whole batch with one query each."""

    def __init__(self) -> None:
        # key -> [(received_at, lead_id, duplicate_of)]
        self.by_key: dict[str, list[tuple[float, str, str | None]]] = {}

    def load(self, conn: Connection, keys: list[str], since: float, until: float) -> None:
        for part in _chunks(sorted(set(keys))):
            for key, received_at, lead_id, duplicate_of in contact_store.in_window(
                    conn, part, since, until):
                self.by_key.setdefault(key, []).append((received_at, lead_id, duplicate_of))

    def add(self, keys: list[str], received_at: float, lead_id: str, duplicate_of: str | None) -> None:
        for key in keys:
            self.by_key.setdefault(key, []).append((received_at, lead_id, duplicate_of))

    def original(self, p: _Prepared, window_s: float) -> str | None:
        """The earliest lead of the window that shares a phone, email or messenger id (its
        original, if it is a duplicate itself)."""
        if not p.keys or window_s <= 0:
            return None
        me = (p.row.received_at, p.lead.id)
        best: tuple[float, str, str | None] | None = None
        for key in p.keys:
            for cand in self.by_key.get(key, ()):
                if cand[1] == p.lead.id or cand[0] < me[0] - window_s or cand[:2] >= me:
                    continue
                if best is None or cand[:2] < best[:2]:
                    best = cand
        if best is None:
            return None
        return best[2] or best[1]


def _sticky_prior(conn: Connection, p: _Prepared, assigned: dict[str, list[tuple[float, str]]],
                  ) -> str | None:
    """The manager of the latest earlier lead of this contact that has one (store + batch)."""
    if not p.keys:
        return None
    row = contact_store.latest_assigned(conn, p.keys, other_than=p.lead.id)
    best = (row.received_at, str(row.assigned_to)) if row is not None else None
    for key in p.keys:
        for cand in assigned.get(key, ()):
            if best is None or cand[0] > best[0]:
                best = cand
    return best[1] if best else None


#: how a routing transaction makes sure nobody else routes its leads: it re-reads (and
#: locks) leads claimed in an earlier transaction; takes them as read, claimed in this one;
#: or claims them now, leads read outside any transaction
Held: TypeAlias = Literal["recheck", "claimed_here", "claim_now"]
RECHECK: Held = "recheck"
CLAIMED_HERE: Held = "claimed_here"
CLAIM_NOW: Held = "claim_now"


def _route_batch(rt: Runtime, conn: Connection, prepared: list[_Prepared], now: float,
                 send_now: Collection[str] = (), held: Held = RECHECK) -> Processed:
    """Dedup, route, assign and create the deliveries of a batch: a handful of statements
    for the whole batch (reads first, then one executemany per table), so the write lock
    is held for milliseconds, not for a statement or three per lead. With ``send_now``,
    it leases the new deliveries to those destinations (``Processed.leased``)."""
    out = Processed()
    current: dict[str, Any] = {}
    if held == CLAIMED_HERE:  # claimed in this transaction: as they were read, nobody wrote since
        current = {p.lead.id: p.row for p in prepared}
    else:
        for part in _chunks([p.lead.id for p in prepared]):
            found = (lead_store.claim_ids(conn, part, now, now + LEASE_S) if held == CLAIM_NOW
                     else lead_store.lock_current(conn, part))
            current.update({r.id: r for r in found})
    batch: list[_Prepared] = []
    for p in prepared:
        cur = current.get(p.lead.id)
        if cur is None or cur.status != "received":
            continue
        # a call or chat event may have continued the lead since it was read: use its data
        same = cur.data_text == p.row.data_text
        batch.append(p if same else _prepare(rt, p.row, json.loads(cur.data_text)))
    if not batch:
        return out

    window_s = rt.config.hub.dedup_window_minutes * 60.0
    index = _KeyIndex()
    if window_s > 0:
        all_keys = [k for p in batch for k in p.keys]
        if all_keys:
            index.load(conn, all_keys, min(p.row.received_at for p in batch) - window_s,
                       max(p.row.received_at for p in batch))
    originals: dict[str, str | None] = {}
    for p in batch:
        original = index.original(p, window_s)
        originals[p.lead.id] = original
        index.add(p.keys, p.row.received_at, p.lead.id, original)

    # the destinations of each original (from this batch, or already in the store) and
    # those the batch's leads already have (none, unless a replay made them): one query
    in_batch_dests: dict[str, list[str]] = {}
    outside = sorted({o for o in originals.values() if o is not None} - set(originals))
    stored_dests: dict[str, list[str]] = {}
    for part in _chunks(outside + [p.lead.id for p in batch]):
        for lead_id, dest in delivery_store.destinations_of_leads(conn, part):
            stored_dests.setdefault(lead_id, []).append(dest)

    # managers: sticky looks at the contact's earlier leads; counters advance once per route
    assigned: dict[str, list[tuple[float, str]]] = {}  # key -> (received_at, manager) in batch
    wants_counter: dict[str, list[tuple[_Prepared, list[str]]]] = {}
    for p in batch:
        original = originals[p.lead.id]
        lead, decision = p.lead, p.decision
        destinations: list[str]
        if original is not None:
            lead.duplicate_of = original
            lead.status = "duplicate"
            dests = in_batch_dests.get(original, stored_dests.get(original, []))
            destinations = [d for d in dests if _annotates(rt, d)]
        else:
            if decision.product and not lead.product:
                lead.product = decision.product
            rule = decision.assign
            if rule is not None:
                prior = _sticky_prior(conn, p, assigned) if rule.strategy == "sticky" else None
                if prior and (not rule.managers or prior in rule.managers):
                    lead.assigned_to = prior
                else:
                    seq = weighted_sequence(rule.weights) if rule.strategy == "weighted" else \
                        list(rule.managers)
                    if seq and rule.strategy == "sticky":  # later leads of the batch look
                        n = next_counter(conn, f"assign:{decision.route or ''}")
                        lead.assigned_to = seq[(n - 1) % len(seq)]
                    elif seq:
                        wants_counter.setdefault(decision.route or "", []).append((p, seq))
                        lead.assigned_to = None  # set below, once the counter has moved
            destinations = list(decision.destinations)
            lead.status = "routed" if destinations else "unrouted"
        in_batch_dests[lead.id] = destinations
        if lead.assigned_to is not None:
            for key in p.keys:
                assigned.setdefault(key, []).append((p.row.received_at, lead.assigned_to))
        out.leads.append(lead)
        out.destinations.update(destinations)
    for route, waiting in wants_counter.items():
        last = next_counter(conn, f"assign:{route}", len(waiting))
        for n, (p, seq) in enumerate(waiting, start=last - len(waiting) + 1):
            p.lead.assigned_to = seq[(n - 1) % len(seq)]

    existing = {(p.lead.id, d) for p in batch for d in stored_dests.get(p.lead.id, ())}
    key_rows = [ContactKey(k, p.lead.id, p.row.received_at) for p in batch for k in p.keys]
    leads = {p.lead.id: p.lead for p in batch}
    new_deliveries = _leased_as_created(out, rt, [
        NewDelivery(new_id(), lead_id, d)
        for lead_id, dests in in_batch_dests.items()
        for d in dict.fromkeys(dests) if (lead_id, d) not in existing
    ], leads, send_now, now)
    routed = []
    for p in batch:
        # encoded from the model as at ingest: UTF-8 text, so the admin search finds a
        # routed lead's Cyrillic name as it found the new one (json.dumps escaped it)
        data = JsonText(p.lead.model_dump_json(by_alias=True, exclude={"deliveries"}))
        routed.append(lead_store.RoutedLead(p.lead.id, p.lead.status, data, p.lead.duplicate_of,
                                            p.lead.assigned_to))
    contact_store.add(conn, key_rows)
    delivery_store.add(conn, new_deliveries, now)
    lead_store.write_routed(conn, routed, now)
    return out


def _leased_as_created(out: Processed, rt: Runtime, new: list[NewDelivery], leads: dict[str, Lead],
                       send_now: Collection[str], now: float) -> list[NewDelivery]:
    """The new deliveries, those to ``send_now`` destinations leased as they are created
    (one attempt per destination, the lease a drain would take: twice the request timeout,
    and 10 s; at most the destination's batch size, as a drain leases), and noted in
    ``out.leased``. A duplicate's delivery is left to the drains: it may wait for its
    original's, or note its id. So is what is beyond the batch size."""
    attempts: dict[str, tuple[str, float, int] | None] = {}
    made = []
    for n in new:
        if n.destination not in attempts:
            dest = rt.destination(n.destination) if n.destination in send_now else None
            attempts[n.destination] = None if dest is None else (
                new_id(), now + dest.request_timeout_s * 2 + 10,
                dest.effective_limits().batch_size)
        lease = attempts[n.destination]
        leased = out.leased.get(n.destination)
        if (lease is None or leads[n.lead_id].duplicate_of is not None
                or (leased is not None and len(leased.rows) >= lease[2])):
            out.unleased.add(n.destination)
            made.append(n)
            continue
        attempt, until, _size = lease
        made.append(n._replace(lease_until=until, attempt=attempt))
        batch = out.leased.setdefault(n.destination, Leased(attempt, [], {}))
        batch.rows.append(delivery_store.as_added(n, now))
        batch.leads[n.lead_id] = leads[n.lead_id]
    return made


def _annotates(rt: Runtime, destination: str) -> bool:
    dest = rt.destination(destination)
    return dest is not None and dest.has(Capability.ANNOTATES_DUPLICATES)


ENRICH_RETRY_S = 60.0
ENRICH_HORIZON_S = 24 * 3600.0


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
            lead = src.enrich(Lead.model_validate(json.loads(row.data_text)))
            if not lead.contact.has_any():
                reason = "no contact after enrichment: no phone, email or messenger id"
        except RetryableError as exc:
            if now - row.received_at < ENRICH_HORIZON_S:
                log.warning("enrichment of a %s lead failed, will retry: %s", row.source, exc)
                with rt.db.begin() as conn:
                    lead_store.extend_lease(conn, row.id, now + ENRICH_RETRY_S)
                continue
            reason = f"enrichment kept failing for a day: {exc}"
        except Exception as exc:
            reason = f"enrichment failed: {type(exc).__name__}: {exc}"
        with rt.db.begin() as conn:
            if reason is not None:
                # not a lead after all: it moves to quarantine (the ledger follows)
                quarantine_store.quarantine_lead(conn, new_id(), row, reason, now)
                continue
            data = lead.to_json_dict()
            data.pop("deliveries", None)
            ready.append(lead_store.set_enriched(conn, row.id, data))
    return ready


def process_received(
    rt: Runtime, limit: int = BATCH, *, send_now: Collection[str] = (), read_first: bool = False,
) -> Processed:
    """Process one batch of received leads; returns what was done (for wake-ups and hooks).

    Claim (one short transaction, one statement), enrich where a source asked for it (no
    transaction open during its I/O), validate and route in memory (no transaction
    either), then dedup, assign and write the batch in one short transaction
    (``_route_batch``). A small claim that needs no enrichment is routed in the
    transaction that claimed it.

    ``read_first`` (``process_job``): the batch is read from a reader's snapshot and
    prepared before any transaction, and the routing transaction claims it (the leads
    someone else took meanwhile are skipped): one write transaction per batch instead of
    two. Under ``leadhub serve``'s load the claims were a third of the workers' write
    transactions on SQLite's one lock, each a turn the api's group commits waited for.
    A batch that needs enrichment, or whose routing fails, is claimed the usual way (so a
    lead that cannot be routed waits out a lease, instead of failing every job after it).

    ``send_now`` (the api's express path): destinations whose new deliveries the routing
    transaction leases to the caller, which sends them itself (``Processed.leased``).
    """
    now = time.time()
    if read_first:
        try:
            done = _route_read_first(rt, limit, now, send_now)
        except Exception as exc:
            log.warning("routing a batch read first failed (%s); claiming it the usual way",
                        type(exc).__name__)
            done = None
        if done is not None:
            return done
    failed: Exception | None = None
    with rt.db.begin() as conn:
        rows = claim_leads(conn, now, limit)
        if 0 < len(rows) <= ONE_TRANSACTION_MAX and not any(r.needs_enrichment for r in rows):
            try:
                with conn.begin_nested():
                    done = _route_batch(rt, conn, [_prepare(rt, row) for row in rows], now,
                                        send_now, CLAIMED_HERE)
            except Exception as exc:  # the claim commits: its leads wait out the lease,
                failed = exc  # as when it was a transaction of its own
            else:
                return done
    if failed is not None:
        raise failed
    if not rows:
        return Processed()
    rows = enrich(rt, rows, now)
    prepared = [_prepare(rt, row) for row in rows]
    if not prepared:
        return Processed()
    with rt.db.begin() as conn:
        return _route_batch(rt, conn, prepared, now, send_now)


def _route_read_first(rt: Runtime, limit: int, now: float, send_now: Collection[str],
                      ) -> Processed | None:
    """``process_received(read_first=True)``; None where the usual claim must do it."""
    with rt.reader.connect() as conn:
        rows = lead_store.waiting_received(conn, now, limit)
    if not rows:
        return Processed()
    if any(r.needs_enrichment for r in rows):
        return None
    prepared = [_prepare(rt, row) for row in rows]
    with rt.db.begin() as conn:
        return _route_batch(rt, conn, prepared, now, send_now, CLAIM_NOW)
