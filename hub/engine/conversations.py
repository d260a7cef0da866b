"""Events that continue a lead instead of starting one: the events of one call, and the
messages of one messenger chat. Pure merge rules; ``ingest`` applies them in the store.

Calls: every event of a call (same provider call id) lands in ONE lead, in whatever order
the events arrive. Each event carries only what it knows; a value from an event with a
lower ``seq`` than one already applied never overwrites, ``answered`` stays true once
true, ``duration_s`` keeps the largest. Events that arrive before the one naming the
caller are kept and applied when it arrives.

Chats: a message within the dedup window of the chat's last one extends its lead: the
text is appended, a shared phone or email fills the contact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from hub.connectors import CallInfo
from hub.models import Call, Lead
from hub.store import conversations as thread_store
from hub.store import leads as lead_store
from hub.store.conversations import ThreadRow

if TYPE_CHECKING:
    from hub.engine.ingest import EventDraft, IngestItem

#: CallInfo attribute -> Call attribute (after normalization)
CALL_FIELDS = {
    "direction": "direction",
    "from_number": "from_",
    "to_number": "to",
    "started_at": "started_at",
    "duration_s": "duration_s",
    "answered": "answered",
    "recording_url": "recording_url",
    "tracking_number": "tracking_number",
}


def call_update(info: CallInfo, call: Call | None) -> dict[str, Any]:
    """What one event says about its call: only the values its provider stated (as JSON)."""
    if call is None:
        return {}
    dumped = call.model_dump(mode="json")
    return {dst: dumped[dst] for src, dst in CALL_FIELDS.items() if getattr(info, src) is not None}


def merge_call(
    current: Call | None, update: dict[str, Any], seq: int | None, applied_seq: int | None
) -> Call:
    """Apply one event's ``update`` to a call block."""
    data = (current or Call()).model_dump()
    older = seq is not None and applied_seq is not None and seq < applied_seq
    for key, value in update.items():
        if value is None:
            continue
        if key == "answered":
            data[key] = bool(data[key]) or bool(value)
        elif key == "duration_s":
            data[key] = max(int(data[key] or 0), int(value or 0))
        elif key in ("recording_url",) or not older or data.get(key) in (None, ""):
            data[key] = value
    if data.get("duration_s"):
        data["answered"] = True
    return Call.model_validate(data)


def fill_marks(lead: Lead, other: Lead) -> None:
    """UTM tags and click ids the lead lacks, from a later event."""
    for name in type(lead.utm).model_fields:
        if getattr(lead.utm, name) is None and getattr(other.utm, name) is not None:
            setattr(lead.utm, name, getattr(other.utm, name))
    for name in type(lead.click_ids).model_fields:
        if getattr(lead.click_ids, name) is None and getattr(other.click_ids, name) is not None:
            setattr(lead.click_ids, name, getattr(other.click_ids, name))


def merge_contact(lead: Lead, other: Lead) -> None:
    c, o = lead.contact, other.contact
    c.name = c.name or o.name
    c.phones += [p for p in o.phones if p not in c.phones]
    c.emails += [e for e in o.emails if e not in c.emails]
    known = {(m.kind, m.id) for m in c.messengers}
    c.messengers += [m for m in o.messengers if (m.kind, m.id) not in known]
    lead.company = lead.company or other.company


def extend_call_lead(lead: Lead, event: Lead, update: dict[str, Any], seq: int | None,
                     applied_seq: int | None) -> Lead:
    lead.call = merge_call(lead.call, update, seq, applied_seq)
    merge_contact(lead, event)
    fill_marks(lead, event)
    for k, v in event.fields.items():
        lead.fields.setdefault(k, v)
    return lead


def extend_chat_lead(lead: Lead, event: Lead) -> Lead:
    if event.message:
        lead.message = f"{lead.message}\n{event.message}" if lead.message else event.message
    merge_contact(lead, event)
    fill_marks(lead, event)
    for k, v in event.fields.items():
        lead.fields.setdefault(k, v)
    return lead


@dataclass
class _Thread:
    lead_id: str | None
    last_seen: float
    applied_seq: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    stored: bool = False  # the row exists in the store (UPDATE, not INSERT)
    dirty: bool = False


class Threads:
    """The threads a group of requests touches, loaded once, changed in memory in request
    order, written back in one statement per table (the caller owns the transaction)."""

    def __init__(self) -> None:
        self.state: dict[tuple[str, str], _Thread] = {}
        self.existing: dict[str, Lead] = {}  # leads already in the store, by id
        self.changed: set[str] = set()
        #: leads created in this group, not yet inserted: edited in place, written once
        self.created: dict[str, Lead] = {}

    @classmethod
    def load(cls, conn: Connection, items: list[IngestItem]) -> Threads:
        self = cls()
        wanted: dict[str, set[str]] = {}
        for item in items:
            for ev in item.events:
                if ev.thread:
                    wanted.setdefault(item.request.source, set()).add(ev.thread)
        lead_ids: set[str] = set()
        for source, keys in wanted.items():
            for r in thread_store.of_keys(conn, source, sorted(keys)):
                self.state[(source, r.key)] = _Thread(
                    r.lead_id, r.last_seen, r.applied_seq, list(r.pending or []), stored=True
                )
                if r.lead_id:
                    lead_ids.add(r.lead_id)
        if lead_ids:
            # locked: a worker must not write the lead between our read and write
            for lead_id, data in lead_store.lock_data(conn, sorted(lead_ids)):
                self.existing[lead_id] = Lead.model_validate(data)
        return self

    def _lead(self, lead_id: str) -> Lead | None:
        if lead_id in self.created:
            return self.created[lead_id]
        return self.existing.get(lead_id)

    def _keep(self, lead: Lead) -> None:
        if lead.id not in self.created:  # a created one was edited in place: written once
            self.existing[lead.id] = lead
            self.changed.add(lead.id)

    def continue_lead(self, source: str, ev: EventDraft, now: float, window_s: float) -> str | None:
        """Apply the event to its thread's lead; the lead's id, or None if it starts none."""
        if not ev.thread or ev.lead is None:
            return None
        st = self.state.get((source, ev.thread))
        if st is None or st.lead_id is None:
            return None
        if ev.thread.startswith("chat:") and now - st.last_seen > window_s:
            return None  # the conversation went quiet: this message starts a new lead
        lead = self._lead(st.lead_id)
        if lead is None:  # the lead left (quarantined after enrichment): start afresh
            return None
        if ev.thread.startswith("call:"):
            extend_call_lead(lead, ev.lead, ev.call_update, ev.seq, st.applied_seq)
            st.applied_seq = _max_seq(st.applied_seq, ev.seq)
        else:
            extend_chat_lead(lead, ev.lead)
        st.last_seen, st.dirty = now, True
        self._keep(lead)
        return lead.id

    def hold(self, source: str, ev: EventDraft, now: float) -> None:
        """Keep a call event that came before the one naming the caller."""
        assert ev.thread and ev.lead is not None
        st = self.state.setdefault((source, ev.thread), _Thread(None, now))
        st.pending.append({"update": ev.call_update, "seq": ev.seq, "lead": ev.lead.to_json_dict()})
        st.last_seen, st.dirty = now, True

    def start(self, source: str, ev: EventDraft, now: float) -> Lead:
        """The event's lead, with the thread's held events applied; the thread points at it."""
        assert ev.lead is not None
        lead = ev.lead
        if not ev.thread:
            return lead
        st = self.state.get((source, ev.thread))
        applied = ev.seq
        if st is not None and st.lead_id is None:
            for held in sorted(st.pending, key=lambda h: h["seq"] if h["seq"] is not None else -1):
                earlier = Lead.model_validate(held["lead"])
                extend_call_lead(lead, earlier, held["update"], held["seq"], applied)
                applied = _max_seq(applied, held["seq"])
        stored = st.stored if st is not None else False
        self.state[(source, ev.thread)] = _Thread(lead.id, now, applied, [], stored=stored, dirty=True)
        return lead

    def save(self, conn: Connection) -> None:
        lead_store.set_data(conn, {i: _data(self.existing[i]) for i in self.changed}, _now(self))
        dirty = [(ThreadRow(k[0], k[1], s.lead_id, s.last_seen, s.applied_seq, s.pending), s.stored)
                 for k, s in self.state.items() if s.dirty]
        thread_store.insert_new(conn, [row for row, stored in dirty if not stored])
        thread_store.update_existing(conn, [row for row, stored in dirty if stored])


def _max_seq(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _data(lead: Lead) -> dict[str, Any]:
    data = lead.to_json_dict()
    data.pop("deliveries", None)
    return data


def _now(threads: Threads) -> float:
    return max((s.last_seen for s in threads.state.values()), default=0.0)
