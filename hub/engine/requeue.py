"""Reprocessing a quarantined request after a plugin fix: the stored raw request is
parsed again; if it now yields leads, the event moves from quarantine to leads."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select, update

from hub.connectors import InboundRequest, ParsedEvent
from hub.engine.ingest import build_item
from hub.errors import ParseError
from hub.runtime import Runtime
from hub.store import tables as t


def reprocess_quarantined(rt: Runtime, qid: str) -> dict[str, Any] | None:
    with rt.reader.connect() as conn:
        row = conn.execute(
            select(t.quarantine, t.inbound_events)
            .join(t.inbound_events, t.inbound_events.c.id == t.quarantine.c.inbound_id)
            .where(t.quarantine.c.id == qid)
        ).first()
    if row is None:
        return None
    if row.state != "open":
        return {"id": qid, "state": row.state, "lead_ids": [row.lead_id] if row.lead_id else []}
    src = rt.source(row.source)
    if src is None:
        return {"id": qid, "state": "open", "reason": f"source {row.source!r} is no longer configured"}
    from urllib.parse import parse_qsl

    request = InboundRequest(
        method=row.method, source=row.source, path=row.path,
        query=tuple(parse_qsl(row.query, keep_blank_values=True)),
        headers=dict(row.headers), body=row.body,
    )
    parsed: list[ParsedEvent] | None = None
    error = None
    try:
        # parse only, never verify: it was verified when it arrived, and the stored body
        # has its secrets redacted (Source.secret_fields), which no verify would accept
        parsed = src.parse(request)
    except ParseError as exc:
        error = str(exc)
    item = build_item(
        request, parsed, error, default_region=rt.config.hub.default_region,
        dedup_window_s=rt.config.hub.dedup_window_minutes * 60.0, received_at=row.received_at,
        tracking_numbers=getattr(src.config, "tracking_numbers", None),
    )
    fresh = [ev for ev in item.events if ev.lead is not None and not ev.waits_for_caller]
    leads = [ev.lead for ev in fresh if ev.lead is not None]
    enrich = {ev.lead.id for ev in fresh if ev.lead is not None and ev.needs_enrichment}
    now = time.time()
    if not leads:
        reason = error or next((ev.reason for ev in item.events if ev.reason), "still not a lead")
        with rt.db.begin() as conn:
            conn.execute(update(t.quarantine).where(t.quarantine.c.id == qid)
                         .values(reason=reason, updated_at=now))
        return {"id": qid, "state": "open", "reason": reason, "lead_ids": []}
    with rt.db.begin() as conn:
        for lead in leads:
            data = lead.to_json_dict()
            data.pop("deliveries", None)
            conn.execute(insert(t.leads).values(
                id=lead.id, source=lead.source, channel=lead.channel, received_at=row.received_at,
                status="received", data=data, inbound_id=row.inbound_id, lease_until=0.0,
                needs_enrichment=lead.id in enrich, updated_at=now,
            ))
        conn.execute(update(t.inbound_events).where(t.inbound_events.c.id == row.inbound_id)
                     .values(outcome="lead", lead_id=leads[0].id, events=len(leads)))
        conn.execute(update(t.quarantine).where(t.quarantine.c.id == qid)
                     .values(state="reprocessed", lead_id=leads[0].id, updated_at=now))
    return {"id": qid, "state": "reprocessed", "lead_ids": [lead.id for lead in leads]}
