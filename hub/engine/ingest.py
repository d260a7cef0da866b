"""The durable half of ``POST /hooks/{source}``: the raw request, and the lead or
quarantine row it yields, in ONE transaction, committed before the provider is answered.

One SQLite commit per request tops out at a few hundred per second, so concurrent
requests are grouped: ``IngestBatcher`` collects what arrives while the previous commit
runs and commits it together (group commit). Every request still waits for its own
commit before it is answered; nothing is acknowledged from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Connection, Engine

from hub.bodies import storable_text
from hub.connectors import InboundRequest, ParsedEvent, TrackingUtm
from hub.engine.conversations import Threads, call_update
from hub.ids import new_id
from hub.models import Lead
from hub.normalize import normalize_lead, normalize_phone
from hub.redaction import redact_body
from hub.store import JsonText, accepted
from hub.store.db import (
    WriterBusy,
    background_checkpoints,
    checkpoint,
    no_wait,
    reserve_turn,
    unreserve_turn,
)

#: Headers of any provider worth keeping with the raw request (types, ids, the Standard
#: Webhooks signature); a source adds its provider's own (``Source.kept_headers``).
KEPT_HEADERS = (
    "content-type", "user-agent", "x-forwarded-for", "x-real-ip", "webhook-id",
    "webhook-timestamp", "webhook-signature", "x-request-id", "x-leadhub-token", "accept",
)
#: Kept as ``***``: the hub's own token; a source adds its own (``Source.secret_headers``).
SECRET_HEADERS = ("x-leadhub-token",)


@dataclass
class EventDraft:
    """One provider event of a request, after parsing and normalization (no I/O yet)."""

    event_key: str | None
    lead: Lead | None = None  # None: an event that is not a lead
    reason: str | None = None  # why not a lead / why quarantined
    quarantine: bool = False
    #: "call:<id>" or "chat:<id>": the event continues the lead of that thread, if any
    thread: str | None = None
    call_update: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    needs_enrichment: bool = False
    #: a call event that does not name the caller: it waits for the call's lead
    waits_for_caller: bool = False


@dataclass
class IngestItem:
    """A request on its way into the store."""

    request: InboundRequest
    received_at: float
    events: list[EventDraft] = field(default_factory=list)
    parse_error: str | None = None
    dedup_window_s: float = 1800.0
    inbound_id: str = field(default_factory=new_id)
    #: the body as stored: the request's, less the secrets its source declares (``build_item``)
    stored_body: bytes | None = None
    #: the headers stored with the request, and those of them stored as ``***``
    kept_headers: tuple[str, ...] = KEPT_HEADERS
    secret_headers: tuple[str, ...] = SECRET_HEADERS
    #: the quarantine entry this request comes from (reprocessing): its raw request
    #: (``inbound_id``) is updated, not written anew, and the entry is closed or kept
    reprocess: str | None = None


@dataclass
class IngestResult:
    lead_ids: list[str] = field(default_factory=list)
    retry: bool = False  # the provider sent an event we already had
    quarantined: str | None = None  # the reason, when the request went to quarantine
    inbound_id: str = ""


def body_key(request: InboundRequest) -> str:
    """Identity of a request without a provider event id: the same method, path, query
    (less the token) and body is the same event (GET webhooks carry it all in the query)."""
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}?{_query(request)}".encode())
    digest.update(b"\0")
    digest.update(request.body)
    return "sha256:" + digest.hexdigest()


def _headers(item: IngestItem) -> dict[str, str]:
    headers = item.request.headers
    kept = {k: headers[k] for k in item.kept_headers if k in headers}
    for secret in item.secret_headers:
        if secret in kept:
            kept[secret] = "***"
    return kept


def _query(request: InboundRequest) -> str:
    if not request.query:  # the usual webhook: nothing to encode
        return ""
    return urlencode([(k, "***" if k == "token" else v) for k, v in request.query])


def ingest_one(conn: Connection, item: IngestItem) -> IngestResult:
    """Write one request and what it yields; the caller owns the transaction."""
    return ingest_many(conn, [item])[0]


def ingest_many(conn: Connection, items: list[IngestItem]) -> list[IngestResult]:
    """Write each request and what it yields, as if one after another (a later request
    sees the event keys of an earlier one), in one statement per table (executemany)
    after one ``SELECT ... IN`` of the event keys already seen; the caller owns the
    transaction.

    Building a SQLAlchemy ``insert().values(...)`` per row costs far more than the row
    itself (bind parameters and cache keys are rebuilt every time); the rows are plain
    dicts, written by ``hub/store/accepted.py`` one statement per table.
    """
    wanted: dict[str, set[str]] = {}
    for item in items:
        for ev in item.events:
            if ev.event_key is not None:
                wanted.setdefault(item.request.source, set()).add(ev.event_key)
    # (source, key) -> (lead_id, seen_at): the table as ingest_one would see it, kept up to
    # date as the items are applied in order
    known: dict[tuple[str, str], tuple[str | None, float]] = {}
    for source, keys in wanted.items():
        for seen_key, lead_id, seen_at in accepted.seen_keys(conn, source, list(keys)):
            known[(source, seen_key)] = (lead_id, seen_at)
    stored = set(known)  # keys already in the table: remembered by UPDATE, others by INSERT
    for ident in _reopened_keys(conn, items):
        del known[ident]
    threads = Threads.load(conn, items)

    lead_rows: list[dict[str, Any]] = []
    key_inserts: dict[tuple[str, str], dict[str, Any]] = {}
    key_updates: dict[tuple[str, str], dict[str, Any]] = {}
    quarantine_rows: list[dict[str, Any]] = []
    inbound_rows: list[dict[str, Any]] = []
    reprocessed: list[tuple[str, str, dict[str, Any], IngestResult]] = []
    results: list[IngestResult] = []
    for item in items:
        req, now = item.request, item.received_at
        result = IngestResult(inbound_id=item.inbound_id)
        outcome, lead_ids, notes, fresh_events = "non_lead", [], [], 0
        updates = 0
        quarantine_reason = item.parse_error
        for ev in item.events:
            key = ev.event_key
            if key is not None:
                seen = known.get((req.source, key))
                is_body_key = key.startswith("sha256:")
                if seen is not None and (not is_body_key or now - seen[1] < item.dedup_window_s):
                    result.retry = True
                    if seen[0]:
                        lead_ids.append(seen[0])
                    continue
            fresh_events += 1
            lead_id = None
            continued = threads.continue_lead(req.source, ev, now, item.dedup_window_s)
            if continued is not None:
                lead_id = continued
                lead_ids.append(continued)
                updates += 1
            elif ev.waits_for_caller:
                threads.hold(req.source, ev, now)
                notes.append("call event before the caller is known: kept for the call's lead")
            elif ev.quarantine:
                quarantine_reason = quarantine_reason or ev.reason or "not a lead"
            elif ev.lead is not None:
                lead = threads.start(req.source, ev, now)
                lead_id = lead.id
                lead_rows.append({
                    "id": lead.id, "source": lead.source, "channel": lead.channel,
                    "received_at": now, "status": "received", "data": None,
                    "inbound_id": item.inbound_id, "lease_until": 0.0, "updated_at": now,
                    "needs_enrichment": ev.needs_enrichment,
                })
                threads.created[lead.id] = lead
                lead_ids.append(lead.id)
                outcome = "lead"
            elif ev.reason:
                notes.append(ev.reason)
            if key is not None:
                ident = (req.source, key)
                known[ident] = (lead_id, now)
                row = {"source": req.source, "event_key": key, "lead_id": lead_id,
                       "inbound_id": item.inbound_id, "seen_at": now}
                (key_updates if ident in stored else key_inserts)[ident] = row

        if quarantine_reason is not None:
            outcome = "quarantined"
            if item.reprocess is None:  # a reprocessed request keeps its entry
                quarantine_rows.append({
                    "id": new_id(), "inbound_id": item.inbound_id, "source": req.source,
                    "reason": storable_text(quarantine_reason), "state": "open",
                    "created_at": now, "updated_at": now,
                })
            result.quarantined = quarantine_reason
        elif result.retry and fresh_events == 0:
            outcome = "retry"
        elif outcome != "lead" and updates:
            outcome = "update"  # continued a call or a chat: an event, not a new lead
        counted = {
            "outcome": outcome, "lead_id": lead_ids[0] if lead_ids else None,
            "events": 0 if outcome == "retry" else max(fresh_events, 1),
            "event_key": item.events[0].event_key if item.events else None,
            "note": storable_text("; ".join(notes) or quarantine_reason or "") or None,
        }
        if item.reprocess is not None:
            reprocessed.append((item.reprocess, item.inbound_id, counted, result))
        else:
            inbound_rows.append({
                "id": item.inbound_id, "source": req.source, "received_at": now,
                "method": req.method, "path": storable_text(req.path), "query": _query(req),
                "headers": _headers(item),
                "body": req.body if item.stored_body is None else item.stored_body,
                **counted,
            })
        result.lead_ids = lead_ids
        results.append(result)

    for lead_row in lead_rows:  # encoded once, after later events of the group edited it
        lead = threads.created[lead_row["id"]]
        lead_row["data"] = JsonText(lead.stored_json(exclude=_NOT_STORED))
    accepted.insert_leads(conn, lead_rows)
    threads.save(conn)
    accepted.insert_keys(conn, list(key_inserts.values()))
    accepted.update_keys(conn, list(key_updates.values()))
    accepted.insert_quarantine(conn, quarantine_rows)
    accepted.insert_requests(conn, inbound_rows)
    closed_at = time.time()
    for entry_id, raw_id, counted, result in reprocessed:
        reason = None if result.quarantined is None else storable_text(result.quarantined)
        if not accepted.close_entry(conn, entry_id, raw_id, counted, reason, closed_at):
            raise EntryNotOpen(entry_id)
    return results


#: A lead's deliveries live in their own table, never in its stored JSON.
_NOT_STORED = {"deliveries"}


class EntryNotOpen(Exception):
    """The quarantine entry being reprocessed was closed meanwhile (another reprocess):
    the transaction is rolled back, nothing is applied twice."""


def _reopened_keys(conn: Connection, items: list[IngestItem]) -> set[tuple[str, str]]:
    """Event keys a reprocessed request recorded itself that did not make a lead still in
    the store (an event quarantined by a poll, a lead the worker sent to quarantine): they
    are applied again. Its keys that made a live lead, and keys of other requests, stay
    seen: that event is a retry."""
    out: set[tuple[str, str]] = set()
    for item in items:
        if item.reprocess is None:  # the webhook's group commit: nothing to look up
            continue
        keys = {ev.event_key for ev in item.events if ev.event_key is not None}
        if not keys:
            continue
        source = item.request.source
        out.update((source, key) for key in accepted.keys_without_live_lead(
            conn, source, list(keys), item.inbound_id))
    return out


def ingest_batch(engine: Engine, items: list[IngestItem]) -> list[IngestResult]:
    """Commit a group of requests in one transaction.

    If the group fails (e.g. two requests with the same event id raced), each request is
    retried in a transaction of its own so one bad request never fails the others.
    """
    if not items:
        return []
    try:
        with engine.begin() as conn:
            return ingest_many(conn, items)
    except Exception:
        if len(items) == 1:
            raise
    results = []
    for item in items:
        with engine.begin() as conn:
            results.append(ingest_one(conn, item))
    return results


log = logging.getLogger("leadhub.ingest")

_Waiter = tuple[IngestItem, "asyncio.Future[IngestResult]"]


class IngestBatcher:
    """Group commit for the async webhook path: one transaction for many waiting requests.

    On SQLite the event loop commits itself: ``submit`` adds the request to its loop's
    turn, and once the turn's requests are in (one ``call_soon``) the loop commits them in
    one transaction (``_commit_now``). A writer thread used to do every commit, and it
    waited for the GIL after each of its ~50 calls into SQLite (each lets the GIL go) while
    the loop handled requests: 4-5 ms per group of 16 for 1.3 ms of work, and with 32
    requests in flight the loop sat idle waiting for commits a quarter of the time.
    A group that finds the write lock taken (a worker's transaction, the checkpoint's last
    copy) waits for its turn without blocking the loop.

    The writer thread stays for a group that failed (it retries request by request) and
    for every group on PostgreSQL, whose round trips would stall the loop: ``submit`` puts
    the request on its queue and awaits its future; the thread takes everything queued,
    commits it in one transaction (``ingest_batch``), then resolves the futures with one
    hand-back per event loop and batch.

    A group the express thread takes (``hand_off``, tried on the committing thread: a lock
    and a notify) needs no wake-up. At a steady 40 leads/s into the ``webhook`` destination
    the wake-up thread's hop before that offer was 0.08 ms at p50 and 0.28 ms at p90 (its
    turn for the GIL, behind the loop's answer); see ``hub/engine/express.py``.

    The wake-up (``after_commit``, a Redis round trip or an RQ enqueue) runs on a thread of
    its own, so neither the answers nor the next group's commit wait for it. Groups
    committed while a wake-up is under way are rung together by the next one (coalesced),
    which still follows their commit: nothing committed is left without a wake-up, and
    none is rung twice for the same moment.

    On SQLite these commits never run a WAL checkpoint (SQLite's default runs one inside
    every commit that brings the WAL past 1000 pages: a 50 ms stall every ~3,000 leads
    that every request in flight waited for, measured as the api's whole p99); a thread
    checkpoints every 0.2 s without blocking.
    """

    CHECKPOINT_EVERY_S = 0.2

    def __init__(
        self,
        engine: Engine,
        after_commit: Callable[[list[IngestResult]], None] | None = None,
        max_batch: int = 256,
        hand_off: Callable[[list[IngestResult]], bool] | None = None,
    ) -> None:
        self.engine = engine
        self._writes = background_checkpoints(engine)
        #: SQLite: the event loop commits a turn's requests itself while the write lock is
        #: free (``NO_WAIT``); PostgreSQL round trips stay on the writer thread
        self._now = no_wait(self._writes) if self._writes is not None else None
        self._pending: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}
        #: a loop whose group found the lock taken waits for its turn on this thread
        self._turn_waiter: ThreadPoolExecutor | None = None
        self._turns: set[asyncio.AbstractEventLoop] = set()  # loops waiting for their turn
        #: each loop's own connection for its group commits, kept between them: a checkout
        #: from the pool and its return (with its reset) per group were ~3 % of the api's
        #: CPU under load
        self._conns: dict[asyncio.AbstractEventLoop, Connection] = {}
        self.after_commit = after_commit
        #: tried first, on the thread that committed: True when it took the group (the
        #: express thread's ``offer``), which then needs no wake-up
        self.hand_off = hand_off
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Waiter | None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._woken = threading.Condition()
        self._to_wake: list[IngestResult] = []  # committed, not yet rung
        self._waker: threading.Thread | None = None
        self._waker_closing = False
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()

    async def submit(self, item: IngestItem) -> IngestResult:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[IngestResult] = loop.create_future()
        if self._now is None:
            (self._queue or self._start()).put((item, fut))
        else:
            pending = self._pending.setdefault(loop, [])
            if not pending and loop not in self._turns:  # the first of this turn: commit
                loop.call_soon(self._commit_now, loop)  # once the turn's requests are in
            pending.append((item, fut))
        return await fut

    def _commit_now(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop's own group commit (SQLite): what this loop's turn submitted, in
        one transaction, if the write lock is free now. If not, a thread of its own queues
        for the lock on the loop's behalf (``reserve_turn``, fair among all writers) and
        calls back once it is the loop's; the group grows meanwhile. Handing such a group
        to the writer thread instead made that thread hold the lock through its slow
        commit, so the loop's next groups found it taken too (half of them went the slow
        way); looking again every 0.5 ms cost 15,000 tries a run under ``serve``. A group
        that fails goes to the writer thread, which retries it request by request."""
        now, me = self._now, threading.get_ident()
        assert now is not None
        batch = self._pending.get(loop)
        if not batch:  # close() handed it to the writer thread meanwhile
            unreserve_turn(now, me)
            return
        self._queue or self._start()  # the wake-up and checkpoint threads; the fallback
        assert self._queue is not None
        try:
            conn = self._conns.get(loop) or self._conns.setdefault(loop, now.connect())
            with conn.begin():
                results = ingest_many(conn, [item for item, _ in batch])
        except WriterBusy:  # the group stays; requests that come meanwhile join it
            try:
                self._wait_turn(loop, now, me)
            except Exception:  # no thread to wait on (closing): the writer thread waits
                self._to_writer(loop)
            return
        except Exception as exc:
            log.warning("group commit failed (%s); the writer retries it", type(exc).__name__)
            self._to_writer(loop)
            return
        del self._pending[loop]
        _settle([(fut, result) for (_, fut), result in zip(batch, results, strict=True)])
        self._rung(results)

    def _start(self) -> queue.SimpleQueue[_Waiter | None]:
        with self._lock:
            if self._queue is None:
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._write, args=(self._queue,), name="leadhub-ingest", daemon=True
                )
                self._thread.start()
                if self.after_commit is not None:
                    self._waker_closing = False
                    self._waker = threading.Thread(
                        target=self._wake_loop, name="leadhub-wake", daemon=True
                    )
                    self._waker.start()
                if self._writes is not None:
                    self._stop_checkpoints.clear()
                    self._checkpointer = threading.Thread(
                        target=self._checkpoint_loop, name="leadhub-checkpoint", daemon=True
                    )
                    self._checkpointer.start()
            return self._queue

    def _write(self, waiting: queue.SimpleQueue[_Waiter | None]) -> None:
        """The writer thread: one batch per turn, everything queued since the last one."""
        closing = False
        while not closing:
            first = waiting.get()
            if first is None:  # close()
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = waiting.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            self._rung(self._commit(batch))

    def _wait_turn(self, loop: asyncio.AbstractEventLoop, now: Engine, me: int) -> None:
        """Queue for the write lock on the loop thread's behalf; ``_commit_now`` once it is
        the loop's."""
        if loop in self._turns:
            return
        if self._turn_waiter is None:
            self._turn_waiter = ThreadPoolExecutor(1, thread_name_prefix="leadhub-turn")
        self._turns.add(loop)
        turn = loop.run_in_executor(self._turn_waiter, reserve_turn, now, me)
        turn.add_done_callback(lambda done: self._turn_came(loop, done))

    def _turn_came(self, loop: asyncio.AbstractEventLoop, turn: asyncio.Future[None]) -> None:
        self._turns.discard(loop)
        if turn.cancelled() or turn.exception() is not None:  # the writer thread waits instead
            self._to_writer(loop)
            return
        self._commit_now(loop)

    def _to_writer(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop's group goes to the writer thread."""
        for waiter in self._pending.pop(loop, []):
            (self._queue or self._start()).put(waiter)

    def _rung(self, results: list[IngestResult]) -> None:
        """Hand committed results to ``hand_off``, or else to the wake-up thread."""
        if self.hand_off is not None and results:
            try:
                if self.hand_off(results):
                    return
            except Exception:  # the wake-up thread takes them as if it had declined
                log.exception("hand-off of a committed group failed")
        if results and self.after_commit is not None:
            with self._woken:
                self._to_wake += results
                self._woken.notify()

    def _checkpoint_loop(self) -> None:
        while not self._stop_checkpoints.wait(self.CHECKPOINT_EVERY_S):
            with contextlib.suppress(Exception):  # the next turn tries again
                checkpoint(self.engine)

    def _wake_loop(self) -> None:
        """The wake-up thread: rings for everything committed since its last ring."""
        assert self.after_commit is not None
        while True:
            with self._woken:
                while not self._to_wake and not self._waker_closing:
                    self._woken.wait()
                results, self._to_wake = self._to_wake, []
            if not results:  # closing, and nothing left to ring
                return
            with contextlib.suppress(Exception):  # a failed wake-up is repaired by the sweeper
                self.after_commit(results)

    def _commit(self, batch: list[_Waiter]) -> list[IngestResult]:
        """Commit a batch, then hand each waiting request its result (or the store's error)."""
        outcomes: list[IngestResult] | list[Exception]
        try:
            outcomes = results = ingest_batch(self._writes or self.engine,
                                              [item for item, _ in batch])
        except Exception as exc:  # the store is down: every waiting request gets the error
            outcomes, results = [exc] * len(batch), []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[IngestResult], Any]]] = {}
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(fut.get_loop(), []).append((fut, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, settled)
        return results

    async def close(self) -> None:
        """Stop the writer once what is queued is committed."""
        for loop in list(self._pending):  # submitted, not yet committed: the writer takes them
            self._to_writer(loop)
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            conn.close()
        turn_waiter, self._turn_waiter = self._turn_waiter, None
        if turn_waiter is not None and self._now is not None:
            await asyncio.to_thread(turn_waiter.shutdown)  # a turn still waited for comes,
            unreserve_turn(self._now, threading.get_ident())  # and is let go
        with self._lock:
            waiting, thread, waker = self._queue, self._thread, self._waker
            checkpointer = self._checkpointer
            self._queue = self._thread = self._waker = self._checkpointer = None
        if waiting is not None and thread is not None:
            waiting.put(None)
            await asyncio.to_thread(thread.join, 30)
        if waker is not None:  # ring for the last groups, then stop
            with self._woken:
                self._waker_closing = True
                self._woken.notify()
            await asyncio.to_thread(waker.join, 10)
        if checkpointer is not None:
            self._stop_checkpoints.set()
            await asyncio.to_thread(checkpointer.join, 10)


def _settle(outcomes: list[tuple[asyncio.Future[IngestResult], Any]]) -> None:
    for fut, outcome in outcomes:
        if fut.done():  # the request was cancelled (client gone): its rows are committed anyway
            continue
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)


def build_item(
    request: InboundRequest,
    parsed: list[ParsedEvent] | None,
    parse_error: str | None,
    *,
    default_region: str,
    dedup_window_s: float,
    received_at: float,
    tracking_numbers: Mapping[str, TrackingUtm] | None = None,
    secret_fields: Collection[str] = (),
) -> IngestItem:
    """Normalize what the source parsed into the rows ``ingest_many`` writes (pure, no I/O).

    A lead without any contact (no phone, email or messenger id) is not a lead: it goes to
    quarantine with the reason, like a body that could not be parsed; except a call event
    that does not name the caller (it waits for its call's lead) and a draft the worker
    will enrich. Calls get UTM tags from ``tracking_numbers``. The body is stored without the
    values of ``secret_fields`` (the source's ``Source.secret_fields``; ``hub/redaction.py``).
    """
    item = IngestItem(request, received_at, parse_error=parse_error, dedup_window_s=dedup_window_s)
    if secret_fields:
        item.stored_body = redact_body(request, secret_fields)
    when = datetime.fromtimestamp(received_at, UTC)
    tracking = _tracking_table(tracking_numbers, default_region)
    for ev in parsed or []:
        key = store_key("id:", ev.event_id) if ev.event_id else body_key(request)
        draft = ev.lead
        if draft is None:
            item.events.append(EventDraft(key, reason=ev.reason or "not a lead"))
            continue
        # A lead of a call or a chat may be kept or merged as JSON before the group is
        # stored (``hub/engine/conversations.py``): checked as it is built. Any other is
        # only encoded by ``ingest_many``'s ``Lead.stored_json``, which checks it then.
        threaded = (draft.call is not None and bool(draft.call.call_id)) or bool(draft.conversation_key)
        lead = normalize_lead(
            draft, lead_id=new_id(), source=request.source, received_at=when,
            default_region=default_region, checked_when_stored=not threaded,
        )
        out = EventDraft(key, lead=lead, needs_enrichment=draft.needs_enrichment)
        if draft.call is not None and draft.call.call_id:
            apply_tracking(lead, tracking)
            out.thread = store_key("call:", draft.call.call_id)
            out.call_update = call_update(draft.call, lead.call)
            out.seq = draft.call.seq
        elif draft.conversation_key:
            out.thread = store_key("chat:", draft.conversation_key)
        if not lead.contact.has_any() and not draft.needs_enrichment:
            if out.thread and out.thread.startswith("call:"):
                out.waits_for_caller = True
            else:
                out.lead, out.quarantine = None, True
                out.reason = "no contact: the request has no phone, email or messenger id"
        item.events.append(out)
    return item


#: Event and thread keys are ``String(200)`` columns (PostgreSQL enforces the length).
KEY_LENGTH = 200


def store_key(prefix: str, value: object) -> str:
    """``prefix`` + a provider's id as a key the store can hold: without NUL or lone
    surrogates, and an id too long for the column (anyone can send one) by its digest,
    so a retry of the same event still finds the same key."""
    text = storable_text(str(value))
    if len(prefix) + len(text) <= KEY_LENGTH:
        return prefix + text
    return prefix + "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tracking_table(
    numbers: Mapping[str, TrackingUtm] | None, region: str
) -> dict[str, TrackingUtm]:
    out = {}
    for number, utm in (numbers or {}).items():
        out[normalize_phone(number, region) or number] = utm
    return out


def apply_tracking(lead: Lead, tracking: dict[str, TrackingUtm]) -> None:
    """A call to a tracking number gets that number's UTM tags (where the lead has none)."""
    call = lead.call
    if call is None or not tracking:
        return
    for number in (call.tracking_number, call.to if call.direction == "inbound" else None):
        utm = tracking.get(number or "")
        if utm is None:
            continue
        call.tracking_number = number
        for name, value in utm.model_dump().items():
            if value is not None and getattr(lead.utm, name) is None:
                setattr(lead.utm, name, value)
        return
