"""A strict fake SaaS server on loopback, for our tests and for plugin authors'.

A ``FakeServer`` is real HTTP (``ThreadingHTTPServer``, HTTP/1.1 keep-alive) on
``127.0.0.1`` and an ephemeral port, serving from a background thread. Subclasses add
routes with ``add_route``; every request is recorded; a request no route expects is
answered 404 and kept in ``unexpected``, so ``assert_clean()`` fails the test.

Route handlers run one at a time under ``self.lock``, so a subclass's in-memory state
needs no locking of its own; tests reading that state take the same lock (the helper
properties of the shipped fakes do).

Chaos: ``faults(ratio=0.2, kinds=("500", "429", "timeout"))`` makes a share of the
expected requests fail. A fault strikes ``before`` the handler (nothing happens) or
``after`` it (the effect is applied, the answer is lost): the second kind is what
exactly-once delivery has to survive. A ``timeout`` holds the request for ``hang_s``
seconds (longer than the client's timeout) and then drops the connection.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

FAULT_KINDS = ("500", "502", "503", "429", "400", "timeout", "reset")
#: Refusals: they strike before the handler, as a refused request has no effect.
REFUSALS = ("429", "400")


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it. Header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    time: float
    fault: str | None = None  # "<kind>:<before|after>" when a fault struck this request

    def q(self, name: str, default: str | None = None) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body parsed as JSON (``None`` for an empty body)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    """What a route answers. A ``body`` that is not bytes or str is sent as JSON."""

    status: int = 200
    body: Any = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> Response:
        return cls(status, data, content_type, dict(headers or {}))

    def encode(self) -> tuple[bytes, str | None]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        payload = json.dumps(self.body, ensure_ascii=False).encode()
        return payload, self.content_type or "application/json"


#: A route handler gets the request and the ``{name}`` parameters of its path pattern.
Handler = Callable[[RecordedRequest, dict[str, str]], Response]


@dataclass
class FaultPlan:
    """Which requests fail and how; see ``FakeServer.faults``."""

    ratio: float
    kinds: tuple[str, ...]
    after_ratio: float
    hang_s: float
    paths: tuple[str, ...]
    methods: tuple[str, ...]
    rng: random.Random

    def applies(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        return not self.paths or any(path.startswith(p) for p in self.paths)


class _FaultsOn(contextlib.AbstractContextManager[None]):
    def __init__(self, server: FakeServer) -> None:
        self._server = server

    def __exit__(self, *exc: object) -> None:
        self._server.no_faults()


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # else headers and body in two writes wait ~40 ms for ACKs

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the fake records requests instead of logging them."""

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.fake._dispatch(self, body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], fake: FakeServer) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class FakeServer:
    """Base of strict fakes. Use as a context manager or with ``start()``/``stop()``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        self._host, self._port = host, port
        self._routes: list[_Route] = []
        self._requests: list[RecordedRequest] = []
        self._unexpected: list[RecordedRequest] = []
        self._statuses: Counter[int] = Counter()
        self._plan: FaultPlan | None = None
        self._api_key: tuple[str, str, str] | None = None
        self._rate: tuple[float, str | None] | None = None
        self._rate_window: list[float] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # releases hanging "timeout" faults
        httpd.shutdown()
        httpd.server_close()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:  # wake handler threads parked on idle keep-alive reads
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # ------------------------------------------------------------ routes

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Expect ``method path``; ``{name}`` in ``path`` matches one path segment."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self._routes.append(_Route(method.upper(), re.compile(f"^{regex}$"), path, handler))

    def before_route(self, request: RecordedRequest) -> Response | None:
        """Checks every expected request passes first (auth, rate limits); None lets it on.

        The default applies ``require_api_key`` and ``limit_rate`` when they were set; an
        override that adds its own checks calls ``super().before_route(request)``."""
        if self._api_key is not None:
            header, value, scheme = self._api_key
            given = request.headers.get(header.lower(), "")
            if given != (f"{scheme} {value}" if scheme else value):
                return Response.json({"error": "unauthorized"}, 401)
        if self._rate is not None:
            per_second, retry_after = self._rate
            now = time.monotonic()
            self._rate_window = [t for t in self._rate_window if now - t < 1.0]
            if len(self._rate_window) >= per_second:
                headers = {"Retry-After": retry_after} if retry_after else {}
                return Response(429, "Too Many Requests", headers=headers)
            self._rate_window.append(now)  # a refused request does not count
        return None

    def require_api_key(self, value: str, *, header: str = "Authorization",
                        scheme: str = "Bearer") -> None:
        """Answer 401 unless ``header`` is ``"<scheme> <value>"`` (``scheme=""``: the bare
        value, as in ``X-Api-Key: <value>``)."""
        self._api_key = (header, value, scheme)

    def limit_rate(self, per_second: float, *, retry_after: str | None = "1") -> None:
        """Answer 429 (with ``Retry-After`` unless None) to a request beyond ``per_second``
        accepted in the last second, shared by every client, as most APIs count."""
        self._rate = (per_second, retry_after)

    def fault_response(self, kind: str) -> Response:
        """The answer an injected ``kind`` fault gets; override to match the real API."""
        if kind == "429":
            return Response(429, "Too Many Requests", headers={"Retry-After": "1"})
        return Response(int(kind), f"{kind} injected fault")

    # ------------------------------------------------------------ records

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    @property
    def unexpected(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._unexpected)

    def answered(self, status: int) -> int:
        """How many answers had ``status`` (a 429 of the fake's own rate limit included)."""
        with self.lock:
            return self._statuses[status]

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def assert_clean(self) -> None:
        """Fail when any request reached no route."""
        unexpected = self.unexpected
        if unexpected:
            listed = ", ".join(f"{r.method} {r.path}" for r in unexpected[:10])
            raise AssertionError(f"{len(unexpected)} unexpected request(s): {listed}")

    def clear_records(self) -> None:
        with self.lock:
            self._requests.clear()
            self._unexpected.clear()
            self._statuses.clear()

    # ------------------------------------------------------------ faults

    def faults(
        self,
        ratio: float = 0.2,
        kinds: Iterable[str] = ("500", "429", "timeout"),
        *,
        seed: int | None = None,
        after_ratio: float = 0.5,
        hang_s: float = 15.0,
        paths: Sequence[str] = (),
        methods: Sequence[str] = (),
    ) -> contextlib.AbstractContextManager[None]:
        """Fail ``ratio`` of the expected requests with one of ``kinds``, until ``no_faults()``.

        ``after_ratio`` of the faults strike after the effect was applied (``429`` and
        ``400`` always strike before: a refused request has no effect). ``paths`` (prefixes) and
        ``methods`` narrow which requests may fail. Also a context manager:
        ``with fake.faults(...): ...`` ends them on leaving the block.
        """
        kinds = tuple(kinds)
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}, got {kinds}")
        with self.lock:
            self._plan = FaultPlan(
                ratio,
                kinds,
                after_ratio,
                hang_s,
                tuple(paths),
                tuple(m.upper() for m in methods),
                random.Random(seed),
            )
        return _FaultsOn(self)

    def no_faults(self) -> None:
        with self.lock:
            self._plan = None

    # ------------------------------------------------------------ internals

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self.lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _match(self, method: str, path: str) -> tuple[Handler, dict[str, str]] | None:
        for route in self._routes:
            if route.method == method:
                found = route.pattern.match(path)
                if found:
                    return route.handler, found.groupdict()
        return None

    def _pick_fault(self, method: str, path: str) -> tuple[str, str] | None:
        plan = self._plan
        if plan is None or not plan.applies(method, path) or plan.rng.random() >= plan.ratio:
            return None
        kind = plan.rng.choice(plan.kinds)
        when = "after" if kind not in REFUSALS and plan.rng.random() < plan.after_ratio else "before"
        return kind, when

    def _dispatch(self, http: _Handler, body: bytes) -> None:
        split = urlsplit(http.path)
        headers = {k.lower(): v for k, v in http.headers.items()}
        request = RecordedRequest(
            http.command,
            split.path,
            parse_qs(split.query, keep_blank_values=True),
            headers,
            body,
            time.time(),
        )
        response: Response | None
        with self.lock:
            matched = self._match(request.method, request.path)
            if matched is None:
                self._requests.append(request)
                self._unexpected.append(request)
                response = Response.json(
                    {"error": f"unexpected {request.method} {request.path}"}, 404
                )
            else:
                fault = self._pick_fault(request.method, request.path)
                if fault is not None:
                    request = replace(request, fault=":".join(fault))
                self._requests.append(request)
                response = self._respond(request, matched, fault)
            if response is not None:
                self._statuses[response.status] += 1
        if response is None:  # a timeout or reset fault: hold, then drop the connection
            self._stopping.wait(self._plan_hang(request))
            http.close_connection = True
            return
        self._send(http, response)

    def _plan_hang(self, request: RecordedRequest) -> float:
        if request.fault is not None and request.fault.startswith("reset"):
            return 0.0
        plan = self._plan
        return plan.hang_s if plan is not None else 15.0

    def _respond(
        self,
        request: RecordedRequest,
        matched: tuple[Handler, dict[str, str]],
        fault: tuple[str, str] | None,
    ) -> Response | None:
        kind, when = fault if fault is not None else ("", "")
        if when == "before":
            return None if kind in ("timeout", "reset") else self.fault_response(kind)
        handler, params = matched
        response = self.before_route(request) or handler(request, params)
        if when == "after" and 200 <= response.status < 300:
            return None if kind in ("timeout", "reset") else self.fault_response(kind)
        return response

    @staticmethod
    def _send(http: _Handler, response: Response) -> None:
        payload, content_type = response.encode()
        try:
            http.send_response(response.status)
            if content_type:
                http.send_header("Content-Type", content_type)
            for name, value in response.headers.items():
                http.send_header(name, value)
            http.send_header("Content-Length", str(len(payload)))
            http.end_headers()
            if payload:
                http.wfile.write(payload)
        except OSError:  # the client gave up (its own timeout); nothing to tell it
            http.close_connection = True


FakeT = TypeVar("FakeT", bound=FakeServer)


def serving(fake: FakeT) -> Iterator[FakeT]:
    """Start ``fake``, yield it, then fail on unexpected requests and stop it.

    A pytest fixture in one line: ``yield from serving(FakeAmoCRM(rate_limit=2))``.
    """
    fake.start()
    try:
        yield fake
        fake.assert_clean()
    finally:
        fake.stop()
