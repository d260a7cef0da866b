"""Request bodies read with limits: a size cap, a deadline, and a bounded drain before 413.

uvicorn has no read timeout of its own (``timeout_keep_alive`` counts only the idle time
between requests), so a client that announced more bytes than it sent held its request,
and the memory read so far, open for ever: every body is now read within ``[hub]
body_timeout_s`` or answered 408.

A 413 answered while the client was still writing was often lost: closing a socket with
unread bytes makes the kernel send a reset, which also discards the answer waiting on the
client's side (10 of 10 writers sending ``Connection: close`` and three times the limit
saw ECONNRESET or EPIPE, never the 413). So the rest of the body is read and dropped
first, within ``DRAIN_FACTOR`` times the limit and ``DRAIN_S`` seconds, and the 413 says
``Connection: close``. A body larger than that bound may still meet a reset: the hub
will not read unbounded input to be polite.

Webhooks use ``read_limited`` and ``discard_rest`` (``hub/api/webhooks.py``); every other
route gets the same through the ``BodyLimits`` middleware.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import error_response

DRAIN_FACTOR = 4  # read and drop at most this many times max_body_bytes before a 413
DRAIN_S = 5.0  # ... and for at most this long


class BodyTooLarge(Exception):
    """The body is over the limit; ``ended`` when all of it has been received already."""

    def __init__(self, received: int = 0, ended: bool = False) -> None:
        super().__init__(received)
        self.received, self.ended = received, ended


class BodyTimeout(Exception):
    """The client did not send its whole body within the deadline."""


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header, when it is a plain number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def expects_continue(scope: Scope) -> bool:
    return any(n == b"expect" and v.lower() == b"100-continue" for n, v in scope["headers"])


async def read_limited(receive: Receive, scope: Scope, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, received within ``timeout_s`` seconds.

    Raises ``BodyTooLarge`` (Content-Length alone can lie, so the count is of the bytes
    received), ``BodyTimeout``, or ``ClientDisconnect``."""
    declared = declared_length(scope)
    if declared is not None and declared > limit:
        raise BodyTooLarge(0)
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None
    deadlines = _deadlines.get(loop) or _deadlines.setdefault(loop, _BodyDeadlines(loop))
    deadlines.add(task, loop.time() + timeout_s)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(size, ended=not more)
                chunks.append(chunk)
                if not more:
                    break
            elif message["type"] == "http.disconnect":
                raise ClientDisconnect
    except asyncio.CancelledError:
        if deadlines.remove(task):  # cancelled by its deadline, not by the server
            task.uncancel()
            raise BodyTimeout from None
        raise
    finally:
        deadlines.remove(task)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _BodyDeadlines:
    """The deadlines of one event loop's body reads in flight, kept by one timer that
    ticks (every ``TICK_S``) while any is registered, and cancels the reads past theirs.

    ``asyncio.timeout`` around each read cost ~4 % of ``leadhub api``'s CPU under load
    (py-spy): a ``Timeout`` and a timer handle pushed to the loop's heap and cancelled
    again, per request, for a body that was nearly always in hand already. A read here
    costs two dict operations; a deadline is kept to within ``TICK_S``.
    """

    TICK_S = 0.1

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reads: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.ticking = False

    def add(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.reads[task] = deadline
        if not self.ticking:
            self.ticking = True
            self.loop.call_later(self.TICK_S, self._tick)

    def remove(self, task: asyncio.Task[Any]) -> bool:
        """Forget the read; True when its deadline had passed (and cancelled it)."""
        self.reads.pop(task, None)
        if task in self.expired:
            self.expired.discard(task)
            return True
        return False

    def _tick(self) -> None:
        now = self.loop.time()
        for task, deadline in list(self.reads.items()):
            if deadline <= now:
                del self.reads[task]
                self.expired.add(task)
                task.cancel()
        if self.reads:
            self.loop.call_later(self.TICK_S, self._tick)
        else:
            self.ticking = False


#: one ``_BodyDeadlines`` per event loop (the api runs one; tests may run several)
_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _BodyDeadlines] = (
    weakref.WeakKeyDictionary())


async def discard_rest(receive: Receive, scope: Scope, refused: BodyTooLarge, limit: int) -> None:
    """Read and drop what is left of a refused body, within a bound, so the client that is
    still writing reads the 413 instead of a reset. Skipped when the client waits for
    ``100 Continue`` (it sends nothing before an answer) or announced more than the bound."""
    if refused.ended:
        return
    budget = DRAIN_FACTOR * limit
    declared = declared_length(scope)
    if (declared is not None and declared > budget) or (refused.received == 0 and expects_continue(scope)):
        return
    size = refused.received
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_S):
            while size <= budget:
                message = await receive()
                if message["type"] != "http.request":
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def too_large(limit: int) -> JSONResponse:
    """The 413; the connection closes after it (its body may be partly unread)."""
    return error_response(413, "payload_too_large", f"body over {limit} bytes",
                          headers={"Connection": "close"})


def timed_out(timeout_s: float) -> JSONResponse:
    """The 408; the connection closes after it (the rest of the body may still come)."""
    return error_response(408, "request_timeout", f"request body not received within {timeout_s:g} s",
                          headers={"Connection": "close"})


class BodyLimits:
    """Pure ASGI middleware for every route but ``/hooks/*``: reads the body within the
    limits before the app runs, then hands it on. FastAPI reads a body only for a route
    that takes one, so without this a short body held such a route open for ever, and
    any body, however large, was read into memory before authentication."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_limited(receive, scope, self.max_bytes, self.timeout_s)
        except BodyTimeout:
            await timed_out(self.timeout_s)(scope, receive, send)
            return
        except BodyTooLarge as exc:
            await discard_rest(receive, scope, exc, self.max_bytes)
            await too_large(self.max_bytes)(scope, receive, send)
            return
        except ClientDisconnect:
            return  # nobody to answer
        pending: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay() -> Message:
            # the body once, then the server's own messages (a disconnect, for streaming)
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)
