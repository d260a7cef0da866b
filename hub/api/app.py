"""The app factory: only assembles routers, error handlers and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import Receive, Scope, Send

from hub import __version__
from hub.api import admin, apidocs, errors, reconcile, web, webhooks
from hub.api.body_limits import BodyLimits
from hub.api.deps import MetricsAccess
from hub.api.headers import SecurityHeaders
from hub.api.state import AppState
from hub.engine.express import Express
from hub.engine.health import stalled_queues
from hub.engine.ingest import IngestBatcher, IngestResult
from hub.engine.jobs import wake_process
from hub.metrics import StoreCollector
from hub.runtime import Runtime
from hub.store.queues import ping


class HubApp(FastAPI):
    """The FastAPI app, except that webhooks (``/hooks/*``) go straight to their handler.

    The ``/hooks`` routes stay in the router (OpenAPI, and the 405 of other methods);
    middleware added to this app does NOT see webhooks: add it in ``__call__`` if it must.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = webhooks.hook_target(scope)
        if target is not None:
            await webhooks.serve_hook(self.state.hub, target, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(rt: Runtime, background_ok: Callable[[], str | None] | None = None,
               express: bool = False) -> FastAPI:
    """``background_ok`` (from ``leadhub serve``) returns None when the worker and scheduler
    run, else why not; ``/readyz`` reports it. ``express`` (``leadhub serve``): while the hub
    is idle, this process routes and delivers a small committed group itself
    (``hub/engine/express.py``); otherwise, and always without it, the queue does."""
    fast = Express(rt) if express else None

    def hand_off(results: list[IngestResult]) -> bool:
        assert fast is not None
        return fast.offer(sum(len(r.lead_ids) for r in results))

    def after_commit(results: list[IngestResult]) -> None:  # what the express thread declined
        if any(r.lead_ids for r in results):
            wake_process(rt)

    batcher = IngestBatcher(rt.db, after_commit, hand_off=hand_off if fast else None)
    state = AppState(rt=rt, batcher=batcher, background_ok=background_ok)
    collector = StoreCollector(rt.reader)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(ValueError):  # already registered by another app in this process
            REGISTRY.register(collector)
        # Everything built so far (plugins, config, SQLAlchemy tables, pydantic models) lives
        # as long as the process: out of the collector's sight, a full collection scans only
        # what requests left behind. Before, each one scanned all of it: a 35-40 ms pause with
        # the GIL held, a few times per 8,000 webhooks, which every request in flight waited
        # out (bench/ingest.py: the api's whole p99).
        gc.collect()
        gc.freeze()
        yield
        await state.batcher.close()
        if fast is not None:
            await asyncio.to_thread(fast.close)
        with contextlib.suppress(KeyError):
            REGISTRY.unregister(collector)

    # FastAPI's own /docs, /redoc and /openapi.json cannot take a dependency: ours, in
    # hub/api/apidocs.py, are the admin's unless [hub] public_docs
    app = HubApp(
        title="LeadHub", version=__version__, lifespan=lifespan,
        description="Webhooks in, normalized leads out. Admin API: bearer token ([hub] admin_token).",
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.hub = state

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            webhooks.describe_hooks(schema, sorted(rt.config.sources))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    errors.install(app)
    app.include_router(webhooks.router)
    app.include_router(admin.router)
    app.include_router(reconcile.router)
    app.include_router(web.router)
    app.add_middleware(BodyLimits, max_bytes=rt.config.hub.max_body_bytes,  # webhooks: their own
                       timeout_s=rt.config.hub.body_timeout_s)
    app.include_router(apidocs.router)
    app.add_middleware(SecurityHeaders)  # not on /hooks/*: see HubApp

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> Response:
        """Store and Redis reachable, no queue stalled with work, and (under `serve`) the
        worker and scheduler running; 503 with the reasons otherwise."""
        problems: list[str] = []
        try:
            with rt.reader.connect() as conn:
                ping(conn)
        except Exception as exc:
            problems.append(f"store: {type(exc).__name__}")
        try:
            rt.redis.ping()
        except Exception as exc:
            problems.append(f"redis: {type(exc).__name__}")
        if background_ok is not None:
            why = background_ok()
            if why:
                problems.append(why)
        if not problems:
            problems += [f"stalled: {q}" for q in stalled_queues(rt)]
        if problems:
            return JSONResponse({"status": "unavailable", "reasons": problems}, 503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["health"], dependencies=[MetricsAccess])
    def metrics(_request: Request) -> Response:
        """Prometheus text format; names every source, so the admin's (bearer token)
        unless `[hub] public_metrics`."""
        return Response(generate_latest(_registry(collector)), media_type=CONTENT_TYPE_LATEST)

    return app


def _registry(store: StoreCollector) -> CollectorRegistry:
    """What ``/metrics`` reports: this process's registry, or under ``leadhub api
    --processes N`` (``PROMETHEUS_MULTIPROC_DIR`` set) the request counters of every api
    process, summed from the directory they share, and the store's counts."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(store)
    return registry
