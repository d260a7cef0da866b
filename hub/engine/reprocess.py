"""Reprocessing a quarantined request after a plugin fix: the stored raw request goes
through the accept path again (``hub/engine/accept.py``, as a webhook or a polled message
does) and into the same store path, so a call event merges into its call's lead, an
event the store has already seen is a retry, and every event key is recorded.

The raw request is not stored again: its row takes the new outcome (the ledger follows),
and the quarantine entry is closed (``reprocessed``) or keeps the new reason.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from hub.connectors import InboundRequest
from hub.engine.accept import accept, rules_for
from hub.engine.ingest import EntryNotOpen, ingest_batch
from hub.runtime import Runtime
from hub.store import StoredRow, accepted


def reprocess_quarantined(rt: Runtime, qid: str) -> dict[str, Any] | None:
    """Accept the entry's raw request again; None when there is no such entry. The answer:
    ``id``, ``state`` (``open`` or ``reprocessed``), ``lead_ids`` (the leads it became,
    continued or, for a retry, was already) and, while open, ``reason``."""
    row = _entry(rt, qid)
    if row is None:
        return None
    if row.state != "open":
        return _closed(qid, row)
    src = rt.source(row.source)
    if src is None:
        return {"id": qid, "state": "open", "reason": f"source {row.source!r} is no longer configured"}
    request = InboundRequest(
        method=row.method, source=row.source, path=row.path,
        query=tuple(parse_qsl(row.query, keep_blank_values=True)),
        headers=dict(row.headers), body=row.body,
    )
    # parse only, never verify: it was verified when it arrived, and the stored body
    # has its secrets redacted (Source.secret_fields), which no verify would accept
    item = accept(src, request, "reprocess", rules_for(rt.config.hub, src),
                  received_at=row.received_at, event_id=_message_id(row))
    item.inbound_id, item.reprocess = row.inbound_id, qid
    try:
        [result] = ingest_batch(rt.db, [item])
    except EntryNotOpen:  # reprocessed meanwhile by another call: report what that did
        again = _entry(rt, qid, primary=True)
        assert again is not None
        return _closed(qid, again)
    if result.quarantined is not None:
        return {"id": qid, "state": "open", "reason": result.quarantined, "lead_ids": []}
    return {"id": qid, "state": "reprocessed", "lead_ids": result.lead_ids}


def _entry(rt: Runtime, qid: str, *, primary: bool = False) -> StoredRow | None:
    """The quarantine entry with its raw request."""
    with (rt.db if primary else rt.reader).connect() as conn:
        return accepted.quarantined_request(conn, qid)


def _closed(qid: str, row: StoredRow) -> dict[str, Any]:
    return {"id": qid, "state": row.state, "lead_ids": [row.lead_id] if row.lead_id else []}


def _message_id(row: StoredRow) -> str | None:
    """A polled message's own id, which keyed its events when it was fetched (its raw
    request keeps the first event's key, ``id:<event_id>``), so that its events are keyed
    alike now; None for a webhook, whose events carry the provider's ids."""
    key: str | None = row.event_key
    if row.method != "POLL" or not key or not key.startswith("id:"):
        return None
    return key[3:]
