"""``/hooks/{source}[/{path}]``: the one door every provider knocks on.

verify → read → parse (pure) → normalize → commit raw request + lead (group commit) →
answer as the provider expects. Nothing is answered before the commit; the only network
I/O on this path is the store and one wake-up per commit batch.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hub.api.deps import get_state
from hub.api.errors import error_response
from hub.connectors import Accepted, HookResponse, InboundRequest, ParsedEvent, Source
from hub.engine.ingest import build_item
from hub.errors import AuthError, ParseError
from hub.metrics import INGEST_LATENCY, WEBHOOKS

router = APIRouter(tags=["webhooks"])
# The app state is read with ``get_state(request)`` rather than a ``State`` dependency:
# FastAPI runs a sync dependency in the thread pool, one thread hop per webhook, which
# cost about a tenth of the ingest path's CPU under load (bench/ingest.py).
log = logging.getLogger("leadhub.webhooks")


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes while streaming: Content-Length alone can lie."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def to_response(r: HookResponse) -> Response:
    if isinstance(r.body, dict):
        return JSONResponse(r.body, r.status_code, headers=r.headers)
    return Response(r.body or b"", r.status_code, headers=r.headers, media_type=r.media_type)


@router.post("/hooks/{source}", summary="Inbound webhook of the source named {source}")
@router.api_route("/hooks/{source}", methods=["GET", "PUT"], include_in_schema=False)
async def hook(source: str, request: Request) -> Response:
    return await _handle(source, "", request, get_state(request))


@router.post("/hooks/{source}/{path:path}",
             summary="Inbound webhook with a provider-appended path (Mango: /events/call)")
@router.api_route("/hooks/{source}/{path:path}", methods=["GET", "PUT"], include_in_schema=False)
async def hook_path(source: str, path: str, request: Request) -> Response:
    return await _handle(source, path, request, get_state(request))


async def _handle(source_name: str, path: str, request: Request, state: Any) -> Response:
    started = time.perf_counter()
    rt = state.rt
    src: Source[Any] | None = rt.source(source_name)
    if src is None or not state.enabled(source_name):
        return error_response(404, "unknown_source", f"no enabled source named {source_name!r}")
    if request.method not in src.methods:
        return error_response(405, "method_not_allowed", f"{source_name} accepts {', '.join(src.methods)}")
    try:
        body = await read_body(request, rt.config.hub.max_body_bytes)
    except BodyTooLarge:
        WEBHOOKS.labels(source_name, "too_large").inc()
        return error_response(413, "payload_too_large",
                              f"body over {rt.config.hub.max_body_bytes} bytes")
    inbound = InboundRequest(
        method=request.method, source=source_name, path=path,
        query=tuple(request.query_params.multi_items()),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body, url=str(request.url),
    )
    try:
        shake = src.handshake(inbound)
        if shake is not None:
            return to_response(shake)
        src.verify(inbound)
    except AuthError as exc:
        WEBHOOKS.labels(source_name, "unauthorized").inc()
        log.warning("webhook authentication failed", extra={"source": source_name})
        code = "invalid_signature" if exc.status_code == 401 else "forbidden"
        return error_response(exc.status_code, code, str(exc))

    parsed: list[ParsedEvent] | None = None
    error: str | None = None
    try:
        parsed = src.parse(inbound)
    except ParseError as exc:
        error = str(exc) or "unparseable request"
    except Exception as exc:  # a plugin bug must not lose the request: quarantine it
        log.exception("source %s failed to parse", source_name)
        error = f"plugin error: {type(exc).__name__}"
    item = build_item(
        inbound, parsed, error, default_region=rt.config.hub.default_region,
        dedup_window_s=rt.config.hub.dedup_window_minutes * 60.0, received_at=time.time(),
        tracking_numbers=getattr(src.config, "tracking_numbers", None),
    )
    try:
        result = await state.batcher.submit(item)
    except Exception:
        log.exception("store unavailable")
        WEBHOOKS.labels(source_name, "store_error").inc()
        return error_response(503, "store_unavailable", "the store is unavailable; retry later",
                              headers={"Retry-After": "5"})
    INGEST_LATENCY.labels(source_name).observe(time.perf_counter() - started)
    if result.quarantined is not None:
        WEBHOOKS.labels(source_name, "quarantined").inc()
        if src.retries_non_2xx:
            return to_response(src.respond_quarantined(inbound, result.quarantined))
        return error_response(422, "unprocessable", result.quarantined)
    WEBHOOKS.labels(source_name, "retry" if result.retry and not result.lead_ids else
                    ("lead" if result.lead_ids else "non_lead")).inc()
    return to_response(src.respond(inbound, Accepted(result.lead_ids, duplicate_event=result.retry)))
