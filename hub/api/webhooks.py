"""``/hooks/{source}[/{path}]``: the one door every provider knocks on.

verify → read → accept (parse and normalize: ``hub/engine/accept.py``, shared with polling
and reprocessing) → commit raw request + lead (group commit) → answer as the provider
expects. Nothing is answered before the commit; the only network
I/O on this path is the store and one wake-up per commit batch.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import URL
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from hub.api.body_limits import BodyTimeout, BodyTooLarge, discard_rest, read_limited, timed_out, too_large
from hub.api.deps import get_state
from hub.api.errors import error_response
from hub.api.state import AppState
from hub.bodies import clean_value
from hub.connectors import Accepted, HookResponse, InboundRequest, Source
from hub.engine.accept import accept, rules_for
from hub.engine.nonces import is_fresh as nonce_is_fresh
from hub.errors import AuthError, ParseError
from hub.metrics import INGEST_LATENCY, WEBHOOKS

router = APIRouter(tags=["webhooks"])
# The app state is read with ``get_state(request)`` rather than a ``State`` dependency:
# FastAPI runs a sync dependency in the thread pool, one thread hop per webhook, which
# cost about a tenth of the ingest path's CPU under load (bench/ingest.py).
log = logging.getLogger("leadhub.webhooks")


METHODS = ("GET", "POST", "PUT")


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """Read at most ``limit`` bytes within ``timeout_s`` seconds, while streaming:
    Content-Length alone can lie (``hub/api/body_limits.py``)."""
    # the ASGI messages themselves: Request.stream() adds a layer
    return await read_limited(request.receive, request.scope, limit, timeout_s)


def request_url(scope: Scope) -> str:
    """``str(request.url)``, remembered: a provider posts to the same URL again and again,
    and Starlette parses the Host header anew for every request."""
    server = scope.get("server")
    host = next((v for k, v in scope["headers"] if k == b"host"), None)
    return _url(scope.get("scheme", "http"), tuple(server) if server else None, scope["path"],
                scope.get("query_string", b""), host)


@lru_cache(maxsize=1024)
def _url(scheme: str, server: tuple[str, int] | None, path: str, query_string: bytes,
         host: bytes | None) -> str:
    headers = [] if host is None else [(b"host", host)]
    return str(URL(scope={"type": "http", "scheme": scheme, "server": server, "path": path,
                          "query_string": query_string, "headers": headers}))


@lru_cache(maxsize=4096)
def _webhooks_child(source: str, outcome: str) -> Any:
    return WEBHOOKS.labels(source, outcome)


def _counted(source: str, outcome: str) -> None:
    """``WEBHOOKS.labels(...).inc()``; ``labels`` checks and locks anew on every call."""
    _webhooks_child(source, outcome).inc()


@lru_cache(maxsize=1024)
def _latency(source: str) -> Any:
    return INGEST_LATENCY.labels(source)


def to_response(r: HookResponse) -> Response:
    try:
        if isinstance(r.body, dict):
            return JSONResponse(r.body, r.status_code, headers=r.headers)
        return Response(r.body or b"", r.status_code, headers=r.headers, media_type=r.media_type)
    except UnicodeEncodeError:  # a lone surrogate (echoed from a request): U+FFFD instead
        body = clean_value(r.body)
        if isinstance(body, dict):
            return JSONResponse(body, r.status_code, headers=r.headers)
        return Response(body or b"", r.status_code, headers=r.headers, media_type=r.media_type)


@router.post("/hooks/{source}", summary="Inbound webhook of the source named {source}")
@router.api_route("/hooks/{source}", methods=["GET", "PUT"], include_in_schema=False)
async def hook(source: str, request: Request) -> Response:
    return await _handle(source, "", request, get_state(request))


@router.post("/hooks/{source}/{path:path}",
             summary="Inbound webhook with a provider-appended path (Mango: /events/call)")
@router.api_route("/hooks/{source}/{path:path}", methods=["GET", "PUT"], include_in_schema=False)
async def hook_path(source: str, path: str, request: Request) -> Response:
    return await _handle(source, path, request, get_state(request))


_HOOK_PATH = re.compile(r"/hooks/([^/]+)(?:/(.*))?", re.DOTALL)


def hook_target(scope: Scope) -> tuple[str, str] | None:
    """(source, path) of a webhook request the hook routes serve, else None: the same
    matches as the routes above (``path`` is "" for ``/hooks/{source}``)."""
    if scope["type"] != "http" or scope["method"] not in METHODS:
        return None  # HEAD, DELETE ...: the routes above answer 405 as for any route
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    match = _HOOK_PATH.fullmatch(path)
    return (match[1], match[2] or "") if match else None


async def serve_hook(state: AppState, target: tuple[str, str], scope: Scope, receive: Receive,
                     send: Send) -> None:
    """Serve a webhook straight from the ASGI call, without FastAPI's middleware stack
    and router: they add nothing to a route that takes no parameters and catches its own
    errors, yet cost about a quarter of the hub's in-process CPU per webhook.

    An unexpected error is answered and logged as the app's own handler does it.
    """
    request = Request(scope, receive, send)
    try:
        response = await _handle(target[0], target[1], request, state)
    except ClientDisconnect:
        return  # the client is gone before its body arrived: nothing was stored or owed
    except Exception as exc:
        logging.getLogger("leadhub.api").error("unhandled %s", type(exc).__name__, exc_info=exc)
        response = error_response(500, "internal_error", "internal error; see the hub's log")
    await response(scope, receive, send)


async def _handle(source_name: str, path: str, request: Request, state: Any) -> Response:
    started = time.perf_counter()
    rt = state.rt
    src: Source[Any] | None = rt.source(source_name)
    if src is None or not state.enabled(source_name):
        return error_response(404, "unknown_source", f"no enabled source named {source_name!r}")
    if request.method not in src.methods:
        return error_response(405, "method_not_allowed", f"{source_name} accepts {', '.join(src.methods)}")
    limit = src.body_limit(rt.config.hub.max_body_bytes)
    try:
        body = await read_body(request, limit, rt.config.hub.body_timeout_s)
    except BodyTooLarge as exc:
        _counted(source_name, "too_large")
        await discard_rest(request.receive, request.scope, exc, limit)
        return too_large(limit)
    except BodyTimeout:
        _counted(source_name, "timeout")
        return timed_out(rt.config.hub.body_timeout_s)
    scope = request.scope
    inbound = InboundRequest(
        method=request.method, source=source_name, path=path,
        query=tuple(request.query_params.multi_items()) if scope["query_string"] else (),
        headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        body=body, url=request_url(scope),
    )
    try:
        shake = src.handshake(inbound)
        if shake is not None:
            return to_response(shake)
        src.verify(inbound)
        if not await nonce_is_fresh(rt.redis, src, inbound):  # hub/engine/nonces.py
            raise AuthError("replayed signature: its nonce came with another request")
    except AuthError as exc:
        _counted(source_name, "unauthorized")
        log.warning("webhook authentication failed", extra={"source": source_name})
        code = "invalid_signature" if exc.status_code == 401 else "forbidden"
        return error_response(exc.status_code, code, str(exc))
    except redis.RedisError:  # the replay cache cannot answer: the provider retries later
        return error_response(503, "replay_cache_unavailable", "retry later",
                              headers={"Retry-After": "5"})
    except ParseError as exc:
        # The credentials are in a body that cannot be read (VK's "secret", a UIS token in
        # JSON nested 10,000 deep): it cannot be authenticated, so it is not stored.
        return _unauthenticated(source_name, f"cannot authenticate an unreadable request: {exc}")
    except Exception as exc:
        # A bug in a plugin's handshake or verify. Not a 500 (a provider would take it for
        # an outage), and not stored: nothing proved the request authentic. 401 makes the
        # provider retry, which succeeds once the plugin is fixed.
        log.error("source %s failed to verify a request: %s", source_name, type(exc).__name__,
                  exc_info=exc)
        return _unauthenticated(source_name, "the source could not verify this request")

    # parse, normalize, redact: the accept path polling and reprocessing share
    item = accept(src, inbound, "webhook", rules_for(rt.config.hub, src), received_at=time.time())
    try:
        result = await state.batcher.submit(item)
    except Exception:
        log.exception("store unavailable")
        _counted(source_name, "store_error")
        return error_response(503, "store_unavailable", "the store is unavailable; retry later",
                              headers={"Retry-After": "5"})
    _latency(source_name).observe(time.perf_counter() - started)
    if result.quarantined is not None:
        _counted(source_name, "quarantined")
        reason = result.quarantined
        return _answer(source_name, lambda: src.respond_quarantined(inbound, reason),
                       lambda: Source.respond_quarantined(src, inbound, reason))
    _counted(source_name, "retry" if result.retry and not result.lead_ids else
             ("lead" if result.lead_ids else "non_lead"))
    accepted = Accepted(result.lead_ids, duplicate_event=result.retry)
    return _answer(source_name, lambda: src.respond(inbound, accepted),
                   lambda: Source.respond(src, inbound, accepted))


def _unauthenticated(source_name: str, message: str) -> Response:
    _counted(source_name, "unauthorized")
    log.warning("webhook authentication failed", extra={"source": source_name})
    return error_response(401, "invalid_signature", message)


def _answer(source_name: str, respond: Callable[[], HookResponse],
            fallback: Callable[[], HookResponse]) -> Response:
    """The plugin's answer to a request already committed; the contract's default answer
    when the plugin fails to give one (the request is stored: a 500 would only make the
    provider send it again)."""
    try:
        return to_response(respond())
    except Exception:
        log.exception("source %s failed to answer a stored request", source_name)
        return to_response(fallback())


#: What a provider may send; the schema is free-form because each source defines its own.
_FORM = {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}
_BODIES = {
    "application/x-www-form-urlencoded": _FORM,
    "multipart/form-data": _FORM,
    "application/json": {"schema": {}},
    "text/plain": {"schema": {"type": "string"}},
}
_ANSWERS = {
    "200": {"description": "Stored: a lead (`{\"id\", \"status\": \"accepted\"}`), a non-lead event, or "
            "the provider's own expected answer (`ok`, a challenge, TwiML)"},
    "401": {"description": "Authentication failed (403 for a wrong Meta verify token)"},
    "404": {"description": "No enabled source of that name"},
    "413": {"description": "Body over `max_body_bytes`"},
    "422": {"description": "Authentic but not a lead: kept in quarantine (some providers get 200)"},
}


def describe_hooks(schema: dict[str, Any], sources: list[str]) -> None:
    """Make the OpenAPI of ``/hooks/*`` say what they take: the configured source names and
    the body types providers send (so API fuzzers such as schemathesis exercise them)."""
    for path in ("/hooks/{source}", "/hooks/{source}/{path}"):
        op = schema.get("paths", {}).get(path, {}).get("post")
        if op is None:
            continue
        for param in op.get("parameters", []):
            if param.get("name") == "source" and sources:
                param["schema"] = {"type": "string", "enum": sources}
        op["requestBody"] = {"required": False, "content": _BODIES}
        op["responses"] = _ANSWERS
