"""Erasing a person (152-FZ, GDPR): ``leadhub erase`` and ``POST /api/erasures``.

Given phones and e-mails (normalized as leads are: E.164 with ``default_region``,
lower-cased addresses), the hub removes from its store everything that names them:

* leads whose contact they are (by contact keys, or by the lead's JSON for leads not
  routed yet; duplicates included), with their deliveries, contact keys, provider event
  ids and call/chat threads;
* raw requests that made or continued those leads, and any raw request that made no lead
  (quarantined, not a lead) whose body or query mentions them in whatever form it was
  posted ("8 (916) 111-22-38", ``phone=8+916...``, ``ivan%40example.ru``), with their
  quarantine entries. A request that made SOMEONE ELSE's lead and only mentions them (in
  a message) stays with that lead.

Destinations that received a copy are asked to erase it (``Destination.erase``: the file
destination rewrites its export); the others (CRMs) are listed with the external ids, for
the admin to remove there. The ledger loses the erased events and leads together, so it
still balances; a lead whose raw request retention already purged (counted in
``ledger_rollup``) leaves its count there instead.

Finding reads the store without any lock (a full scan of raw requests and leads: rare,
and bounded by retention); deleting is one short transaction. On SQLite deleted content
is zeroed (``PRAGMA secure_delete``, ``hub/store/db.py``) and the WAL is then truncated,
so no file under ``data_dir`` keeps the person's bytes. Redis holds no personal data
(jobs carry ids; the replay cache holds digests).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import phonenumbers
from sqlalchemy import Engine

from hub.engine.ledger import day_of, lead_category
from hub.normalize.emails import normalize_email
from hub.normalize.phones import normalize_phone
from hub.runtime import Runtime
from hub.store import conversations as thread_store
from hub.store import deliveries as delivery_store
from hub.store import event_keys, raw_requests
from hub.store import leads as lead_store
from hub.store import quarantine as quarantine_store
from hub.store.db import truncate_wal
from hub.store.ledger import RollupKey, add_to_rollup

SCAN_CHUNK = 500
#: separators people and forms put between the digits of a phone number
_DIGIT_GAP = re.compile(r"(?<=\d)[\s\u00a0\u2009\u202f().\-/]+(?=\d)")


class ErasureError(ValueError):
    """A phone or e-mail that is not one (nothing is erased then)."""


@dataclass(frozen=True)
class Person:
    """Who to erase, normalized as leads are."""

    phones: tuple[str, ...]
    emails: tuple[str, ...]

    @classmethod
    def of(cls, phones: list[str], emails: list[str], region: str) -> Person:
        bad = [p for p in phones if normalize_phone(p, region) is None]
        bad += [e for e in emails if normalize_email(e) is None]
        if bad:
            raise ErasureError(f"not a phone or an e-mail address: {len(bad)} value(s)")
        if not phones and not emails:
            raise ErasureError("give at least one phone or e-mail")
        return cls(tuple(sorted({normalize_phone(p, region) or p for p in phones})),
                   tuple(sorted({normalize_email(e) or e for e in emails})))

    def is_contact_of(self, data: Any) -> bool:
        """Whether a lead's JSON names them as its contact (not merely in a message)."""
        contact = data.get("contact") if isinstance(data, dict) else None
        if not isinstance(contact, dict):
            return False
        return bool(set(contact.get("phones") or ()) & set(self.phones)
                    or set(contact.get("emails") or ()) & set(self.emails))

    def keys(self) -> list[str]:
        """Their ``contact_keys`` (``hub/engine/process.py``)."""
        return [f"phone:{p}" for p in self.phones] + [f"email:{e}" for e in self.emails]

    def mentioned_in(self, raw: bytes | str) -> bool:
        """Whether ``raw`` (a body, a query, a lead's JSON) names them, as written anywhere:
        digits with any separators, with or without a country code or trunk prefix; an
        address in any case, percent-encoded or not."""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        texts = {text, unquote_plus(text)}
        if "\\u" in text:  # JSON escapes (ensure_ascii)
            texts |= {_unescape(x) for x in texts}
        for x in texts:
            low = x.lower()
            if any(_address(e).search(low) for e in self.emails):
                return True
            joined = _DIGIT_GAP.sub("", x)
            if any(_national(p).search(joined) for p in self.phones):
                return True
        return False


def _address(email: str) -> re.Pattern[str]:
    """The address alone, not inside a longer one (``ivan@x.ru`` is not in ``divan@x.ru``)."""
    return re.compile(rf"(?<![\w.+-]){re.escape(email)}(?![\w-]|\.\w)")


def _unescape(text: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)


def _national(e164: str) -> re.Pattern[str]:
    """The national number, alone as a digit run, after at most a country code or a trunk
    prefix: ``+79161112238`` matches ``89161112238``, ``79161112238``, ``9161112238``."""
    number = phonenumbers.parse(e164)
    national = str(number.national_number)
    return re.compile(rf"(?<!\d)(?:\+?\d{{1,3}})?{national}(?!\d)")


@dataclass
class Copy:
    """A delivered copy of an erased lead at a destination."""

    destination: str
    lead_id: str
    external_id: str | None
    erased: bool  # the destination removed it (else the admin must, there)


@dataclass
class ErasureReport:
    deleted: Counter[str] = field(default_factory=Counter)
    copies: list[Copy] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"deleted": dict(self.deleted),
                "copies": [vars(c) for c in self.copies],
                "destinations_holding_copies": sorted({c.destination for c in self.copies
                                                       if not c.erased})}


@dataclass
class _Found:
    leads: dict[str, Any] = field(default_factory=dict)  # id -> row
    raw_ids: set[str] = field(default_factory=set)
    thread_keys: set[tuple[str, str]] = field(default_factory=set)


def find(engine: Engine, person: Person) -> _Found:
    """What of the store names ``person`` (reads only)."""
    found = _Found()
    with engine.connect() as conn:
        for row in lead_store.with_contact_keys(conn, person.keys()):
            found.leads[row.id] = row
        # leads not routed yet have no contact keys: look into every lead's JSON
        for row in lead_store.mentioning(conn, [*person.phones, *person.emails]):
            if person.is_contact_of(row.data):
                found.leads[row.id] = row
        made = {row.inbound_id for row in found.leads.values() if row.inbound_id}
        last = ""
        while True:  # every raw request, in chunks by id
            rows = raw_requests.after(conn, last, SCAN_CHUNK)
            if not rows:
                break
            last = rows[-1].id
            for r in rows:
                theirs = r.id in made or r.lead_id in found.leads
                # a request that only mentions them but made another person's lead stays
                # (with that lead): deleting it would unbalance the ledger
                if theirs or (r.lead_id is None and (person.mentioned_in(r.body)
                                                     or person.mentioned_in(r.query))):
                    found.raw_ids.add(r.id)
        for row in thread_store.every(conn):
            if row.lead_id in found.leads or (
                    row.pending is not None and person.mentioned_in(json.dumps(row.pending))):
                found.thread_keys.add((row.source, row.key))
    return found


def erase(rt: Runtime, phones: list[str], emails: list[str]) -> ErasureReport:
    """Remove ``phones`` and ``emails`` from the store; raises ``ErasureError`` for a value
    that is neither. Returns what was deleted and where copies were delivered."""
    person = Person.of(phones, emails, rt.config.hub.default_region)
    found = find(rt.reader, person)
    report = ErasureReport()
    lead_ids = sorted(found.leads)
    with rt.reader.connect() as conn:
        delivered = delivery_store.delivered_copies(conn, lead_ids)
    for destination in sorted({d.destination for d in delivered}):
        dest = rt.destination(destination)
        held = [d.lead_id for d in delivered if d.destination == destination]
        done = dest is not None and dest.erase(held)
        report.copies += [Copy(destination, d.lead_id, d.external_id, done)
                          for d in delivered if d.destination == destination]
    with rt.db.begin() as conn:
        raw = sorted(found.raw_ids)
        present = raw_requests.present(conn, raw)
        # a lead whose raw request retention purged: its count stays in the rollup (module doc)
        orphans = [r for r in found.leads.values() if r.inbound_id not in present]
        if orphans:
            rollup: Counter[RollupKey] = Counter()
            orphan_ids = [r.id for r in orphans]
            retrying = delivery_store.retrying_leads(conn, orphan_ids)
            for r in orphans:
                rollup[(day_of(r.received_at), "lead", r.source,
                        lead_category(r.status, r.id in retrying))] += 1
            for lead_id, destination, status in delivery_store.statuses_of_leads(conn, orphan_ids):
                rollup[(day_of(found.leads[lead_id].received_at), "delivery", destination,
                        status)] += 1
            add_to_rollup(conn, rollup)
        report.deleted["event_keys"] = event_keys.delete_of(conn, lead_ids, raw)
        report.deleted.update(lead_store.delete_with_dependents(conn, lead_ids))
        report.deleted["threads"] += thread_store.delete_keys(conn, list(found.thread_keys))
        report.deleted["quarantine"] = quarantine_store.delete_of_requests(conn, raw)
        report.deleted["inbound_events"] = raw_requests.delete_ids(conn, raw)
        # quarantine entries of leads the worker quarantined point at raw requests kept above
        quarantine_store.delete_orphans_of_leads(conn, lead_ids)
    truncate_wal(rt.db)
    return report

