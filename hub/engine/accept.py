"""The one accept path: how an authentic request becomes the rows the store writes,
whichever door it came through.

A webhook (``hub/api/webhooks.py``, once verified), a polled message
(``hub/engine/poll.py``) and a quarantined request reprocessed after a plugin fix
(``hub/engine/reprocess.py``) all go through ``accept``: the source's ``parse`` (a
``ParseError`` sends the request to quarantine with its message, any other exception is a
plugin bug and sends it there as "plugin error: X"), then ``build_item`` (normalization,
the source's secret body fields redacted; a draft that cannot be normalized is a plugin
bug too). The item then takes the same store path (``hub/engine/ingest.py``: the api's
``IngestBatcher``, ``ingest_batch`` in a worker), so event keys, call and chat threads
(``hub/engine/conversations.py``), dedup and the ledger treat the three alike.

Verification is not part of it: a webhook is verified when it arrives; a reprocessed
request was verified then, and its stored body has its secrets redacted, which no
``verify`` would accept; a polled message comes from a mailbox the source logged into.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from hub.config import HubSettings
from hub.connectors import CallSourceConfig, InboundRequest, ParsedEvent, Source, TrackingUtm
from hub.engine.ingest import (
    KEPT_HEADERS,
    SECRET_HEADERS,
    EventDraft,
    IngestItem,
    build_item,
    store_key,
)
from hub.errors import ParseError

log = logging.getLogger("leadhub.accept")

#: How the request came: a provider's call, a message the hub fetched, or an admin's
#: "reprocess" of a quarantined request.
Via = Literal["webhook", "poll", "reprocess"]


@dataclass(frozen=True)
class AcceptRules:
    """What ``accept`` takes from the hub's settings and the source's declarations; the
    same for every request of a source, so read once (``rules_for``)."""

    default_region: str
    dedup_window_s: float
    tracking_numbers: Mapping[str, TrackingUtm] | None
    secret_fields: tuple[str, ...]
    kept_headers: tuple[str, ...]
    secret_headers: tuple[str, ...]


def rules_for(hub: HubSettings, src: Source[Any]) -> AcceptRules:
    """The rules for requests of ``src`` under the hub's settings."""
    return _rules(src, hub.default_region, hub.dedup_window_minutes)


@lru_cache(maxsize=256)
def _rules(src: Source[Any], default_region: str, dedup_window_minutes: int) -> AcceptRules:
    # cached: the webhook path asks for every request, and the answer changes only with
    # the source instance (a new runtime makes new ones)
    config = src.config
    secret_headers = tuple(h.lower() for h in src.secret_headers)
    return AcceptRules(
        default_region=default_region,
        dedup_window_s=dedup_window_minutes * 60.0,
        tracking_numbers=config.tracking_numbers if isinstance(config, CallSourceConfig) else None,
        secret_fields=tuple(src.secret_fields),
        kept_headers=tuple(dict.fromkeys(
            KEPT_HEADERS + tuple(h.lower() for h in src.kept_headers) + secret_headers)),
        secret_headers=SECRET_HEADERS + secret_headers,
    )


def accept(src: Source[Any], request: InboundRequest, via: Via, rules: AcceptRules, *,
           received_at: float, event_id: str | None = None) -> IngestItem:
    """The request as the store takes it: its events normalized, or the reason it goes to
    quarantine. Never raises for what the source does.

    ``event_id`` is the request's own stable identity where the provider's events have
    none the hub can trust (a polled message): the events take it (``#n`` after the
    first), and a request that yields no event is keyed by it as well, so the same
    request accepted again is a retry, not a second lead or a second quarantine entry.
    """
    parsed, error = parse(src, request, via)
    if event_id is not None:
        for i, event in enumerate(parsed or ()):
            event.event_id = event_id if i == 0 else f"{event_id}#{i}"
    try:
        item = _build(request, parsed, error, rules, received_at)
    except Exception as exc:  # what the plugin parsed cannot be normalized: quarantine it
        log.exception("source %s parsed a request (%s) into something unusable", src.name, via)
        item = _build(request, None, f"plugin error: {type(exc).__name__}", rules, received_at)
    if event_id is not None and not item.events:
        reason = item.parse_error
        item.events.append(EventDraft(store_key("id:", event_id), quarantine=reason is not None,
                                      reason=reason))
    item.kept_headers, item.secret_headers = rules.kept_headers, rules.secret_headers
    return item


def parse(src: Source[Any], request: InboundRequest,
          via: Via) -> tuple[list[ParsedEvent] | None, str | None]:
    """The source's events, or None and why the request goes to quarantine."""
    try:
        return src.parse(request), None
    except ParseError as exc:
        return None, str(exc) or "unparseable request"
    except Exception as exc:  # a plugin bug must not lose the request: quarantine it
        log.exception("source %s failed to parse a request (%s)", src.name, via)
        return None, f"plugin error: {type(exc).__name__}"


def _build(request: InboundRequest, parsed: list[ParsedEvent] | None, error: str | None,
           rules: AcceptRules, received_at: float) -> IngestItem:
    return build_item(request, parsed, error, default_region=rules.default_region,
                      dedup_window_s=rules.dedup_window_s, received_at=received_at,
                      tracking_numbers=rules.tracking_numbers, secret_fields=rules.secret_fields)
