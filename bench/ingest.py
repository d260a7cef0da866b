"""Ingest bench: LeadHub's durable webhook path against a bare FastAPI form endpoint.

    .venv/bin/python bench/ingest.py [--requests N] [--concurrency C] [--database-url URL]
    .venv/bin/python bench/ingest.py --serve [--destination file|webhook]
    .venv/bin/python bench/ingest.py --steady 100 [--duration 20] [--destination webhook]

In one run on one machine:

1. a bare FastAPI app (uvicorn, one process) whose handler only does
   ``await request.form()`` and answers a small JSON: the ceiling of "FastAPI + form";
2. a real ``leadhub api`` as it runs when not told how many processes (two on a machine
   with two cores or more, ``hub.cli.default_api_processes``; ``--api-processes 1,2``
   measures each count given; SQLite under a temporary data_dir, or the
   PostgreSQL of ``--database-url``; an embedded Redis started here) with one webform
   source and the file destination, and NO worker: what is measured is the ingest path,
   i.e. the raw request and the lead committed before each answer;
3. N urlencoded lead forms with varying phones, C in flight at a time, after a warm-up,
   from ``--client-procs`` client processes (async httpx, keep-alive);
4. a table of both targets and the hub/bare ratio, then a check that the store holds
   exactly N new leads (SQL count, and the admin API ``GET /api/leads``).

With ``--serve`` a third target runs in the same table: the whole hub as the README runs
it on one machine, ``leadhub serve`` (api + worker + scheduler, SQLite under a temporary
data_dir, its own embedded Redis), every lead routed to the ``file`` destination or, with
``--destination webhook``, to the ``webhook`` destination pointed at a receiver this
bench runs in a process of its own (uvicorn, recording when each lead id arrives). Beside
the ingest rate and the answer's p50/p99, the row shows how many leads/s reached the
destination while the load ran and how long after the load the last one arrived; every
accepted lead must arrive (exactly once for the file, at least once for the receiver).

``--steady RATE`` posts RATE leads/s for ``--duration`` seconds (open loop: on schedule,
whatever the answers take) to ``leadhub serve`` (not the api alone, nor the bare
endpoint), and reports webhook → destination latency: from the moment a lead was posted
to the moment it was in the file (the bench tails it) or at the receiver. Into the
``webhook`` destination two more rows run the same load through a bare relay
(``serve_relay``: a raw ASGI app that parses the form, commits it to SQLite or keeps
nothing, answers, then POSTs it to a receiver of its own): the floor of the same trip in
Python on this machine, without the hub's routing, dedup, leases and retries
(``--no-relays`` leaves them out).

CPU seconds of the server (and of its Redis and, under ``serve``, its workers) and of the
clients are read from /proc so the table shows which side was saturated: on a 2-core
machine a client that needs a whole core is as much a part of the result as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request  # module level: FastAPI resolves the annotation here

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/ingest.py` from a checkout
    sys.path.insert(0, str(ROOT))

SOURCE = "bench_form"  # the measured source: its leads are counted afterwards
WARMUP_SOURCE = "bench_warmup"  # warm-up requests go here so they do not blur the count
HEADERS = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
ADMIN_TOKEN = "bench-admin-token"

HUB_CONFIG = """\
# written by bench/ingest.py: ingest only (no worker runs), one webform, the file destination
[hub]
data_dir = "{data_dir}"
database_url = ""      # LEADHUB_DATABASE_URL overrides
redis_url = ""         # LEADHUB_REDIS_URL overrides (the bench starts an embedded Redis)
admin_token = "{token}"
default_region = "RU"
default_destinations = ["jsonl"]

[sources.{source}]
plugin = "webform"

[sources.{warmup}]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
path = "leads.jsonl"
"""


SERVE_CONFIG = """\
# written by bench/ingest.py: the whole hub (leadhub serve), every lead to one destination
[hub]
data_dir = "{data_dir}"
database_url = ""      # LEADHUB_DATABASE_URL overrides
redis_url = ""         # embedded Redis, started by leadhub serve itself
admin_token = "{token}"
default_region = "RU"
default_destinations = ["{destination}"]

[sources.{source}]
plugin = "webform"

[sources.{warmup}]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
path = "leads.jsonl"

[destinations.hook]
plugin = "webhook"
url = "{receiver_url}"
{webhook_extra}
"""
DESTINATIONS = {"file": "jsonl", "webhook": "hook"}
STEADY_FIRST = 20_000_000  # lead numbers of --steady (phones distinct from load and warm-up)


def lead_body(i: int) -> bytes:
    """A landing-page form as a browser encodes it; the phone varies with ``i``."""
    n = 1_000_000 + i % 9_000_000
    phone = f"8 (916) {n // 10000 % 1000:03d}-{n // 100 % 100:02d}-{n % 100:02d}"
    return urlencode(
        {"name": "Иван", "phone": phone, "utm_source": "yandex", "utm_campaign": "spring"}
    ).encode()


# ---------------------------------------------------------------------------- servers
def serve_bare(port: int) -> None:
    """The bare endpoint: FastAPI + uvicorn with the same options as ``leadhub api``."""
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    from hub.cli import uvicorn_options

    app = FastAPI()

    @app.post("/hooks/{source}")
    async def hook(source: str, request: Request) -> JSONResponse:
        form = await request.form()
        return JSONResponse({"status": "accepted", "fields": len(form)})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    uvicorn.run(app, host="127.0.0.1", port=port, **uvicorn_options())


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) from /proc; 0.0 when unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Target:
    name: str
    url: str  # the measured hook
    warmup_url: str
    pids: list[int]  # server processes whose CPU is counted


# ---------------------------------------------------------------------------- client
@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    posted: list[tuple[str, float]] = field(default_factory=list)  # (lead id, wall time posted)
    errors: int = 0
    first_error: str = ""
    started: float = 0.0
    finished: float = 0.0
    cpu: float = 0.0


async def _post_httpx(url: str, bodies: list[bytes], concurrency: int, res: ClientResult) -> None:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        queue = iter(bodies)

        async def one_connection() -> None:
            for body in queue:
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=body, headers=HEADERS)
                    ok = r.status_code == 200
                    why = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, why = False, f"{type(exc).__name__}: {exc}"
                res.latencies.append(time.perf_counter() - t0)
                if not ok:
                    res.errors += 1
                    res.first_error = res.first_error or why

        await asyncio.gather(*(one_connection() for _ in range(concurrency)))


_LEAD_ID = re.compile(rb'"id":\s*"([0-9A-Z]{26})"')


async def _post_raw(url: str, bodies: list[bytes], concurrency: int, res: ClientResult,
                    rate: float | None = None) -> None:
    """HTTP/1.1 keep-alive over asyncio streams: one request in flight per connection, the
    status and Content-Length read from the answer. About 5x cheaper per request than httpx
    (whose connection pool also slows down as connections grow), so one client process on
    one core outruns the server instead of measuring itself.

    ``rate``: open loop, request k leaves at start + k/rate whatever the answers take (as
    long as a connection is free); otherwise each connection posts again at once. The lead
    id of every answer is kept with the wall time its request left."""
    parts = urlsplit(url)
    begin = time.time()
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())).encode()
    queue = iter(enumerate(bodies))

    async def one_connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        for k, body in queue:
            if rate is not None:
                await asyncio.sleep(max(0.0, begin + k / rate - time.time()))
            sent = time.time()
            t0 = time.perf_counter()
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(head + b"content-length: %d\r\n\r\n" % len(body) + body)
                answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
                status = int(answer[9:12])
                lines = answer.lower().split(b"\r\n")
                length = next(int(v.split(b":", 1)[1]) for v in lines
                              if v.startswith(b"content-length:"))
                payload = await reader.readexactly(length)
                if b"connection: close" in lines:
                    writer.close()
                    reader = writer = None
                ok, why = status == 200, f"HTTP {status}: {payload[:200].decode(errors='replace')}"
                found = _LEAD_ID.search(payload) if ok else None
                if found:
                    res.posted.append((found[1].decode(), sent))
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError, StopIteration) as exc:
                ok, why = False, f"{type(exc).__name__}: {exc}"
                if writer is not None:
                    writer.close()
                reader = writer = None
            res.latencies.append(time.perf_counter() - t0)
            if not ok:
                res.errors += 1
                res.first_error = res.first_error or why
        if writer is not None:
            writer.close()

    await asyncio.gather(*(one_connection() for _ in range(concurrency)))


async def _post_all(url: str, bodies: list[bytes], concurrency: int, client: str,
                    rate: float | None = None) -> ClientResult:
    res = ClientResult()
    cpu0 = time.process_time()
    res.started = time.time()
    if client == "raw":
        await _post_raw(url, bodies, concurrency, res, rate)
    else:
        await _post_httpx(url, bodies, concurrency, res)
    res.finished = time.time()
    res.cpu = time.process_time() - cpu0
    return res


def _client_proc(url: str, first: int, count: int, concurrency: int, client: str,
                 start_at: float, out: Any, rate: float | None = None) -> None:
    bodies = [lead_body(i) for i in range(first, first + count)]
    time.sleep(max(0.0, start_at - time.time()))  # all client processes start together
    out.send(asyncio.run(_post_all(url, bodies, concurrency, client, rate)))
    out.close()


def run_load(url: str, first: int, count: int, args: argparse.Namespace,
             rate: float | None = None) -> ClientResult:
    """``count`` posts from ``procs`` processes sharing ``concurrency`` connections (with
    ``rate``: one process, open loop at ``rate`` posts/s)."""
    concurrency, procs = args.concurrency, args.client_procs
    if rate is not None:
        procs = 1
    ctx = mp.get_context("spawn")
    children, pipes = [], []
    start_at = time.time() + 1.5  # leaves time for the children to import httpx
    share, extra = divmod(count, procs)
    conc_share, conc_extra = divmod(concurrency, procs)
    offset = first
    for k in range(procs):
        n = share + (1 if k < extra else 0)
        c = max(1, conc_share + (1 if k < conc_extra else 0))
        recv, send = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_client_proc, daemon=True,
                        args=(url, offset, n, c, "raw" if rate else args.client, start_at,
                              send, rate))
        p.start()
        send.close()
        children.append(p)
        pipes.append(recv)
        offset += n
    parts: list[ClientResult] = [pipe.recv() for pipe in pipes]
    for p in children:
        p.join(10)
    total = ClientResult(
        started=min(r.started for r in parts), finished=max(r.finished for r in parts),
        cpu=sum(r.cpu for r in parts), errors=sum(r.errors for r in parts),
        first_error=next((r.first_error for r in parts if r.first_error), ""),
    )
    for r in parts:
        total.latencies += r.latencies
        total.posted += r.posted
    return total


@dataclass
class Row:
    target: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu: float  # share of one core
    client_cpu: float
    first_error: str = ""
    # leadhub serve only: what reached the destination
    delivered: int | None = None
    delivered_in_load: int = 0  # arrived while the load ran
    drained_after_s: float | None = None  # last arrival, seconds after the load ended
    delivery_p50_ms: float | None = None  # posted -> at the destination
    delivery_p99_ms: float | None = None
    duplicates: int = 0  # arrivals beyond the first of a lead (the receiver's count)

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def measure(target: Target, args: argparse.Namespace) -> Row:
    return measure_full(target, args)[0]


def measure_full(target: Target, args: argparse.Namespace,
                 after_warmup: Any = None) -> tuple[Row, ClientResult]:
    if args.warmup:
        warm = run_load(target.warmup_url, 10_000_000, args.warmup, args)
        if warm.errors:
            print(f"  warm-up of {target.name}: {warm.errors} errors ({warm.first_error})")
        if after_warmup is not None:
            after_warmup(args.warmup - warm.errors)
    cpu0 = sum(cpu_seconds(p) for p in target.pids)
    res = run_load(target.url, 0, args.requests, args)
    server_cpu = sum(cpu_seconds(p) for p in target.pids) - cpu0
    # the server was also idle for part of the window the client processes start in; the
    # share reported is over the measured window only, so it can read a little high
    seconds = res.finished - res.started
    lat = sorted(res.latencies)
    return Row(
        target.name, args.requests, res.errors, seconds,
        percentile(lat, 0.50) * 1000, percentile(lat, 0.99) * 1000,
        server_cpu / seconds if seconds else 0.0, res.cpu / seconds if seconds else 0.0,
        res.first_error,
    ), res


# ---------------------------------------------------------------------------- run
def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    import httpx

    from hub.testing.cluster import wait_until

    def ok() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        return httpx.get(url, timeout=1).status_code == 200

    wait_until(ok, 60, 0.1, what)


def bench_bare(args: argparse.Namespace) -> Row:
    from hub.testing.cluster import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port)],
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz", proc, "the bare endpoint")
        target = Target("bare form()", f"{base}/hooks/{SOURCE}",
                        f"{base}/hooks/{WARMUP_SOURCE}", [proc.pid])
        return measure(target, args)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


@dataclass
class StoreCheck:
    sql_before: int
    sql_after: int
    raw_before: int
    raw_after: int
    api_count: int


def _count(url: str) -> tuple[int, int]:
    """(leads, raw requests) of the measured source, counted in the store itself."""
    from sqlalchemy import func, select

    from hub.store import tables as t
    from hub.store.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            leads = conn.execute(
                select(func.count()).select_from(t.leads).where(t.leads.c.source == SOURCE)
            ).scalar_one()
            raw = conn.execute(
                select(func.count()).select_from(t.inbound_events)
                .where(t.inbound_events.c.source == SOURCE)
            ).scalar_one()
        return int(leads), int(raw)
    finally:
        engine.dispose()


def bench_hub(args: argparse.Namespace, work: Path, processes: int = 1) -> tuple[Row, StoreCheck]:
    from hub.config import HubSettings
    from hub.testing.cluster import HubCluster

    data_dir = work / f"hub-{processes}"
    data_dir.mkdir()
    config = work / "plugins.toml"
    config.write_text(HUB_CONFIG.format(data_dir=data_dir, token=ADMIN_TOKEN, source=SOURCE,
                                        warmup=WARMUP_SOURCE))
    # a fresh PostgreSQL database: in a shared one, the bodies of an earlier run (same
    # phones) within the dedup window would be provider retries, not new leads
    database_url = fresh_database(args.database_url)
    db_url = HubSettings(data_dir=data_dir, database_url=database_url).sqlalchemy_url()
    store = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite"
    cluster = HubCluster(config, data_dir=data_dir, database_url=database_url,
                         admin_token=ADMIN_TOKEN)
    cluster.env["LEADHUB_API_PROCESSES"] = str(processes)  # `leadhub api --processes N`
    try:
        cluster.start_redis()
        cluster.start_api()  # migrates the store; no worker, no scheduler: ingest only
        assert cluster.api is not None and cluster.embedded is not None
        assert cluster.embedded.process is not None
        leads0, raw0 = _count(db_url)
        label = f"hub api ({store})" if processes == 1 else f"hub api ×{processes} ({store})"
        target = Target(label,
                        f"{cluster.base_url}/hooks/{SOURCE}",
                        f"{cluster.base_url}/hooks/{WARMUP_SOURCE}",
                        [*descendants(cluster.api.pid), cluster.embedded.process.pid])
        row = measure(target, args)
        leads1, raw1 = _count(db_url)
        api_count = len(cluster.leads(source=SOURCE))
        return row, StoreCheck(leads0, leads1, raw0, raw1, api_count)
    finally:
        cluster.stop()
        if database_url != args.database_url:
            drop_database(args.database_url, database_url)


# ---------------------------------------------------------------------------- leadhub serve
async def _read_body(receive: Any) -> bytes:
    """An ASGI request's whole body."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer_json(send: Any, answer: Any) -> None:
    """An ASGI answer: 200 with ``answer`` as JSON."""
    body = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve_receiver(port: int) -> None:
    """The webhook destination's far end: answers every POST 200 at once and remembers
    when each lead id first arrived (``GET /arrivals``) and how many came per source."""
    import uvicorn

    from hub.cli import uvicorn_options

    arrivals: dict[str, float] = {}
    per_source: dict[str, int] = {}
    duplicates = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal duplicates
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        now = time.time()
        answer: Any = {}
        if scope["method"] == "POST":
            lead = json.loads(body)
            if lead["id"] in arrivals:
                duplicates += 1
            else:
                arrivals[lead["id"]] = now
                per_source[lead["source"]] = per_source.get(lead["source"], 0) + 1
        elif scope["path"] == "/arrivals":
            answer = {"arrivals": arrivals, "duplicates": duplicates}
        elif scope["path"] == "/count":
            answer = {"per_source": per_source}
        await _answer_json(send, answer)

    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="off", **uvicorn_options())


def serve_relay(port: int, receiver_url: str, db_path: str) -> None:
    """A bare webhook -> webhook relay, for ``--steady`` to set beside ``leadhub serve``:
    what a lead's trip costs on this machine in Python without LeadHub. A raw ASGI app
    (no framework) parses the form and, with ``db_path``, stores the request in SQLite
    (WAL, ``synchronous=NORMAL``, as the hub's store does) and commits before answering;
    after the answer it POSTs the lead as JSON to the receiver (one keep-alive
    ``httpx.AsyncClient``) and, with a store, marks it sent. Nothing else: no routing,
    dedup, lease or retry (a POST that fails is not tried again). Without ``db_path``
    nothing is kept before the answer, as the issue's peer (n8n) keeps nothing."""
    import sqlite3
    import uuid
    from urllib.parse import parse_qsl

    import httpx
    import uvicorn

    from hub.cli import uvicorn_options

    db = None
    if db_path:
        db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE requests (id TEXT PRIMARY KEY, source TEXT, body BLOB,"
                   " received_at REAL, sent_at REAL)")
    client: Any = None
    in_flight: set[Any] = set()

    async def forward(lead: dict[str, str]) -> None:
        nonlocal client
        if client is None:
            client = httpx.AsyncClient(timeout=10)
        r = await client.post(receiver_url, json=lead)
        if db is not None and r.status_code == 200:
            db.execute("UPDATE requests SET sent_at = ? WHERE id = ?", (time.time(), lead["id"]))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        lead: dict[str, str] | None = None
        answer: dict[str, str] = {"status": "ok"}
        if scope["method"] == "POST":
            source = scope["path"].rsplit("/", 1)[-1]
            lead = {**dict(parse_qsl(body.decode())), "id": uuid.uuid4().hex.upper()[:26],
                    "source": source}
            if db is not None:  # autocommit: the INSERT is committed when it returns
                db.execute("INSERT INTO requests VALUES (?, ?, ?, ?, NULL)",
                           (lead["id"], source, body, time.time()))
            answer = {"status": "accepted", "id": lead["id"]}
        await _answer_json(send, answer)
        if lead is not None:
            task = asyncio.ensure_future(forward(lead))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="off", **uvicorn_options())


class Arrivals:
    """Where the leads end up: per source how many, per lead id when it first arrived."""

    def count(self, source: str) -> int:
        raise NotImplementedError

    def times(self) -> tuple[dict[str, float], int]:
        """(lead id -> first arrival, duplicate arrivals)"""
        raise NotImplementedError

    def close(self) -> None:
        pass


class FileArrivals(Arrivals):
    """Tails the file destination's JSON lines every few ms: a lead's arrival is when its
    complete line was first seen (the destination fsyncs each batch before recording it)."""

    def __init__(self, path: Path, interval: float = 0.005) -> None:
        self.path, self.interval = path, interval
        self.seen: dict[str, float] = {}
        self.per_source: dict[str, int] = {}
        self.duplicates = 0
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._tail, daemon=True, name="tail")
        self.thread.start()

    def _tail(self) -> None:
        offset, rest = 0, b""
        while not self.stopped.wait(self.interval):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                continue
            if size <= offset:
                continue
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = rest + f.read(size - offset)
            offset = size
            now = time.time()
            *lines, rest = data.split(b"\n")
            with self.lock:
                for line in lines:
                    lead = json.loads(line)
                    if lead["id"] in self.seen:
                        self.duplicates += 1
                        continue
                    self.seen[lead["id"]] = now
                    self.per_source[lead["source"]] = self.per_source.get(lead["source"], 0) + 1

    def count(self, source: str) -> int:
        with self.lock:
            return self.per_source.get(source, 0)

    def times(self) -> tuple[dict[str, float], int]:
        with self.lock:
            return dict(self.seen), self.duplicates

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)


class ReceiverArrivals(Arrivals):
    def __init__(self, base: str) -> None:
        import httpx

        self.client = httpx.Client(base_url=base, timeout=30)

    def count(self, source: str) -> int:
        return int(self.client.get("/count").json()["per_source"].get(source, 0))

    def times(self) -> tuple[dict[str, float], int]:
        doc = self.client.get("/arrivals").json()
        return doc["arrivals"], int(doc["duplicates"])

    def close(self) -> None:
        self.client.close()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (serve's workers and its embedded Redis)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


class ServeHub:
    """``leadhub serve`` as a real process (its own embedded Redis, SQLite under
    ``work``), and the receiver process when the destination is the webhook."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        from hub.config import HubSettings
        from hub.testing.cluster import free_port

        self.work, self.args = work, args
        self.data_dir = work / "serve"
        self.data_dir.mkdir()
        self.port = free_port()
        self.receiver: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        receiver_url = "http://127.0.0.1:9/unused"
        if args.destination == "webhook":
            self.receiver, base = start_receiver()
            receiver_url = f"{base}/leads"
        self.receiver_base = receiver_url.rsplit("/", 1)[0]
        self.config = work / "serve.toml"
        self.config.write_text(SERVE_CONFIG.format(
            data_dir=self.data_dir, token=ADMIN_TOKEN, source=SOURCE, warmup=WARMUP_SOURCE,
            destination=DESTINATIONS[args.destination], receiver_url=receiver_url,
            webhook_extra=_webhook_extra()))
        self.database_url = fresh_database(args.database_url)
        self.db_url = HubSettings(data_dir=self.data_dir,
                                  database_url=self.database_url).sqlalchemy_url()
        self.store = "PostgreSQL" if self.db_url.startswith("postgresql") else "SQLite"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
        env.update(LEADHUB_CONFIG=str(self.config), LEADHUB_DATA_DIR=str(self.data_dir),
                   LEADHUB_DATABASE_URL=self.database_url, LEADHUB_ADMIN_TOKEN=ADMIN_TOKEN,
                   PYTHONUNBUFFERED="1")
        log = open(self.work / "serve.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "serve", "--config", str(self.config),
             "--port", str(self.port),
             *([] if self.args.worker_nice is None else ["--worker-nice", str(self.args.worker_nice)])],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        _wait_http(f"{self.base}/readyz", self.proc, "leadhub serve to be ready")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arrivals(self) -> Arrivals:
        if self.args.destination == "webhook":
            return ReceiverArrivals(self.receiver_base)
        return FileArrivals(self.data_dir / "leads.jsonl")

    def target(self) -> Target:
        assert self.proc is not None
        return Target(f"hub serve ({self.store}, {self.args.destination})",
                      f"{self.base}/hooks/{SOURCE}", f"{self.base}/hooks/{WARMUP_SOURCE}",
                      descendants(self.proc.pid))

    def stop(self) -> None:
        pids = descendants(self.proc.pid) if self.proc is not None else []
        stop_group(self.proc, self.receiver)
        for pid in pids[1:]:  # a worker or the Redis that outlived serve's own clean-up
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.database_url != self.args.database_url:
            drop_database(self.args.database_url, self.database_url)


def stop_group(*procs: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM each process's group, SIGKILL what is still there after 20 s."""
    for proc in procs:
        if proc is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def start_receiver() -> tuple[subprocess.Popen[bytes], str]:
    """``serve_receiver`` as a process of its own, ready; and its base URL."""
    from hub.testing.cluster import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-receiver", str(port)],
        start_new_session=True)
    _wait_http(f"http://127.0.0.1:{port}/count", proc, "the receiver")
    return proc, f"http://127.0.0.1:{port}"


class Relay:
    """``serve_relay`` and a receiver of its own, as processes: the rows ``--steady``
    sets beside ``leadhub serve`` (same load, same receiver, same clock)."""

    def __init__(self, work: Path, durable: bool) -> None:
        self.work, self.durable = work, durable
        self.proc: subprocess.Popen[bytes] | None = None
        self.receiver: subprocess.Popen[bytes] | None = None
        self.receiver_base = ""
        self.port = 0

    def start(self) -> None:
        from hub.testing.cluster import free_port

        self.receiver, self.receiver_base = start_receiver()
        self.port = free_port()
        db = str(self.work / "relay.db") if self.durable else ""
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-relay", str(self.port),
             "--relay-to", f"{self.receiver_base}/leads", "--relay-db", db],
            start_new_session=True)
        _wait_http(f"http://127.0.0.1:{self.port}/healthz", self.proc, "the relay")

    def arrivals(self) -> Arrivals:
        return ReceiverArrivals(self.receiver_base)

    def target(self) -> Target:
        assert self.proc is not None
        name = "bare relay, SQLite commit" if self.durable else "bare relay, nothing stored"
        base = f"http://127.0.0.1:{self.port}"
        return Target(name, f"{base}/hooks/{SOURCE}", f"{base}/hooks/{WARMUP_SOURCE}",
                      [self.proc.pid])

    def stop(self) -> None:
        stop_group(self.proc, self.receiver)


def _admin_engine(url: str) -> Any:
    from sqlalchemy import create_engine

    from hub.config import HubSettings

    return create_engine(HubSettings(database_url=url).sqlalchemy_url(),
                         isolation_level="AUTOCOMMIT")


def fresh_database(url: str) -> str:
    """A new PostgreSQL database beside ``url``'s for ``serve`` (the dedup window would
    otherwise see the phones of an earlier run and route its leads as duplicates, which
    the file destination does not write); ``url`` itself when that is not possible."""
    if not url.startswith("postgresql"):
        return url
    name = f"leadhub_bench_{os.getpid()}_{int(time.time())}"
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no CREATEDB right: use the given database
        print(f"  cannot create a fresh database ({type(exc).__name__}); using {url}")
        return url
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str, fresh: str) -> None:
    engine = _admin_engine(url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{fresh.rsplit("/", 1)[1]}" WITH (FORCE)')
    except Exception as exc:
        print(f"  could not drop {fresh}: {exc}")
    finally:
        engine.dispose()


def _webhook_extra() -> str:
    """The webhook plugin once had a fixed default rate (10/s): lift it where it still has
    one; where it has none (the default since the plugin sends batches concurrently), set
    nothing, so no limiter runs, as for a receiver without a documented limit."""
    from plugins.webhook import WebhookConfig

    field = WebhookConfig.model_fields.get("requests_per_second")
    return "requests_per_second = 1000" if field is not None and field.default else ""


def wait_arrived(arrivals: Arrivals, source: str, expected: int, timeout: float) -> float | None:
    """Seconds until ``expected`` leads of ``source`` arrived, None on timeout."""
    t0 = time.time()
    while arrivals.count(source) < expected:
        if time.time() - t0 > timeout:
            return None
        time.sleep(0.05)
    return time.time() - t0


def delivery_stats(row: Row, res: ClientResult, arrivals: Arrivals, timeout: float) -> None:
    """Fill the delivery columns of ``row``: wait until every accepted lead arrived."""
    expected = len(res.posted)
    wait_arrived(arrivals, SOURCE, expected, timeout)
    seen, row.duplicates = arrivals.times()
    got = [(seen[lid], sent) for lid, sent in res.posted if lid in seen]
    row.delivered = len(got)
    row.delivered_in_load = sum(1 for at, _ in got if at <= res.finished)
    if got:
        row.drained_after_s = max(0.0, max(at for at, _ in got) - res.finished)
        lat = sorted(at - sent for at, sent in got)
        row.delivery_p50_ms = percentile(lat, 0.50) * 1000
        row.delivery_p99_ms = percentile(lat, 0.99) * 1000


def bench_serve(args: argparse.Namespace, work: Path) -> Row:
    hub = ServeHub(work, args)
    arrivals: Arrivals | None = None
    try:
        hub.start()
        arrivals = hub.arrivals()
        got = arrivals

        def after_warmup(accepted: int) -> None:  # measure from an idle worker
            if wait_arrived(got, WARMUP_SOURCE, accepted, args.drain_timeout) is None:
                print("  warm-up leads not all delivered: measuring anyway")

        row, res = measure_full(hub.target(), args, after_warmup)
        delivery_stats(row, res, arrivals, args.drain_timeout)
        return row
    finally:
        if arrivals is not None:
            arrivals.close()
        hub.stop()


@dataclass
class Steady:
    target: str
    rate: float
    posted: int
    errors: int
    answer_p50_ms: float
    answer_p99_ms: float
    delivered: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    duplicates: int
    first_error: str


def bench_steady(args: argparse.Namespace, hub: ServeHub | Relay) -> Steady:
    arrivals: Arrivals | None = None
    try:
        hub.start()
        arrivals = hub.arrivals()
        if args.warmup:  # a few leads through the whole path first (imports, connections)
            warm = run_load(hub.target().warmup_url, 10_000_000, min(args.warmup, 50), args,
                            rate=args.steady)
            wait_arrived(arrivals, WARMUP_SOURCE, len(warm.posted), args.drain_timeout)
        count = max(1, round(args.steady * args.duration))
        res = run_load(hub.target().url, STEADY_FIRST, count, args, rate=args.steady)
        wait_arrived(arrivals, SOURCE, len(res.posted), args.drain_timeout)
        seen, dups = arrivals.times()
        lat = sorted(seen[lid] - sent for lid, sent in res.posted if lid in seen)
        answers = sorted(res.latencies)
        return Steady(
            hub.target().name, args.steady, count, res.errors,
            percentile(answers, 0.5) * 1000, percentile(answers, 0.99) * 1000, len(lat),
            percentile(lat, 0.5) * 1000, percentile(lat, 0.9) * 1000,
            percentile(lat, 0.99) * 1000, (lat[-1] if lat else 0.0) * 1000, dups,
            res.first_error,
        )
    finally:
        if arrivals is not None:
            arrivals.close()
        hub.stop()


def _server_label() -> str:
    from hub.cli import uvicorn_options

    opts = uvicorn_options()
    return f"http={opts['http']}, loop={opts['loop']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", "-n", type=int, default=5000, help="measured posts per target")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="posts in flight")
    parser.add_argument("--warmup", type=int, default=500, help="posts before measuring (0: none)")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="client processes sharing the concurrency (default 1; see the CPU "
                        "columns: a client near 100%% of a core is the limit, not the server)")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw",
                        help="raw: HTTP/1.1 keep-alive on asyncio streams (default); httpx: "
                        "httpx.AsyncClient, which needs a whole core for ~350-900 req/s here")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL for the hub (postgresql://user@host/db); default SQLite "
                        "in a temporary directory. Leads are counted by source, so an existing "
                        "database works.")
    parser.add_argument("--api-processes", type=lambda v: [int(n) for n in v.split(",")],
                        default=None, metavar="N[,N...]",
                        help="measure `leadhub api --processes N` for each N (default: as "
                        "`leadhub api` runs when not told, 2 processes on 2 cores or more)")
    parser.add_argument("--only", choices=["bare", "hub", "serve"], help="run one target only")
    parser.add_argument("--serve", action="store_true",
                        help="also measure `leadhub serve` (api + worker + scheduler) delivering "
                        "every lead to --destination")
    parser.add_argument("--destination", choices=sorted(DESTINATIONS), default="file",
                        help="where `serve` delivers: the file destination (default) or the "
                        "webhook destination pointed at a receiver this bench runs")
    parser.add_argument("--steady", type=float, metavar="RATE",
                        help="instead: post RATE leads/s to `leadhub serve` for --duration s and "
                        "report webhook -> destination latency")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of --steady load")
    parser.add_argument("--worker-nice", type=int, metavar="N",
                        help="serve: pass --worker-nice N (default: serve's own, 10; 0 runs "
                        "the workers at the api's priority)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="how long to wait for every accepted lead to be delivered")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--relay-to", default="", help=argparse.SUPPRESS)
    parser.add_argument("--relay-db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--no-relays", action="store_true",
                        help="--steady into the webhook: leave out the bare relay rows")
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if args.serve_receiver:
        serve_receiver(args.serve_receiver)
        return 0
    if args.serve_relay:
        serve_relay(args.serve_relay, args.relay_to, args.relay_db)
        return 0
    if args.requests < 1 or args.concurrency < 1 or args.client_procs < 1:
        parser.error("--requests, --concurrency and --client-procs must be at least 1")
    if args.steady is not None and args.steady <= 0:
        parser.error("--steady RATE must be positive")

    from rich.console import Console

    console = Console(width=max(160, Console().width))
    work = Path(tempfile.mkdtemp(prefix="leadhub-bench-"))
    try:
        if args.steady is not None:
            return _main_steady(console, args, work)
        return _main_load(console, args, work)
    finally:
        if args.keep:
            console.print(f"data kept in {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def _main_steady(console: Any, args: argparse.Namespace, work: Path) -> int:
    from rich.table import Table

    console.print(
        f"[bold]Steady bench[/]: {args.steady:g} leads/s for {args.duration:g} s to `leadhub "
        f"serve`, delivered to {args.destination}; {os.cpu_count()} CPU(s)"
    )
    rows = [bench_steady(args, ServeHub(work, args))]
    if args.destination == "webhook" and not args.no_relays:
        for durable in (True, False):
            sub = work / f"relay-{int(durable)}"
            sub.mkdir()
            rows.append(bench_steady(args, Relay(sub, durable)))
    table = Table(title=f"Webhook → {args.destination}: posted → at the destination")
    for col in ("target", "leads/s", "posted", "errors", "answer p50 ms", "answer p99 ms",
                "delivered", "p50 ms", "p90 ms", "p99 ms", "max ms", "dups"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in rows:
        table.add_row(r.target, f"{r.rate:g}", str(r.posted), str(r.errors),
                      f"{r.answer_p50_ms:.1f}", f"{r.answer_p99_ms:.1f}", str(r.delivered),
                      f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.max_ms:.1f}",
                      str(r.duplicates))
    console.print(table)
    console.print("[dim]answer: the webhook's own answer (commit included); p50..max: from the "
                  "moment the lead was posted to the moment it was in the file (tailed every "
                  "5 ms) or at the receiver; dups: arrivals beyond the first of a lead. Bare "
                  "relay: a raw ASGI app that parses the form, commits it to SQLite (or keeps "
                  "nothing), answers, then POSTs it to its own receiver: the floor of the same "
                  "trip in Python on this machine, with none of the hub's routing, dedup, "
                  "leases or retries.[/]")
    ok = True
    for r in rows:
        if r.first_error:
            console.print(f"[red]{r.target}: first error: {r.first_error}[/]", markup=False)
        accepted = r.posted - r.errors
        good = r.errors == 0 and r.delivered == accepted
        ok = ok and good
        style = "green" if good else "red"
        console.print(f"[{style}]{r.target}: {r.delivered} of {accepted} accepted leads "
                      "delivered[/]")
    return 0 if ok else 1


def _main_load(console: Any, args: argparse.Namespace, work: Path) -> int:
    from rich.table import Table

    console.print(
        f"[bold]Ingest bench[/]: {args.requests} urlencoded lead forms, {args.concurrency} in "
        f"flight, {args.client_procs} {args.client} client process(es), warm-up {args.warmup}, "
        f"{os.cpu_count()} CPU(s); uvicorn for all: {_server_label()}"
    )
    rows: list[Row] = []
    checks: list[StoreCheck] = []
    if args.only in (None, "bare"):
        console.print("bare endpoint ...")
        rows.append(bench_bare(args))
    if args.only in (None, "hub"):
        from hub.cli import default_api_processes

        for n in args.api_processes or [default_api_processes()]:
            console.print(f"LeadHub api, {n} process(es) ...")
            hub_row, check = bench_hub(args, work, n)
            rows.append(hub_row)
            checks.append(check)
    if args.only == "serve" or (args.only is None and args.serve):
        console.print(f"LeadHub serve, delivering to {args.destination} ...")
        rows.append(bench_serve(args, work))

    bare = next((r for r in rows if r.target.startswith("bare")), None)
    table = Table(title="POST /hooks/{source}: urlencoded lead form")
    for col in ("target", "requests", "errors", "leads/s", "vs bare", "p50 ms", "p99 ms",
                "server CPU", "CPU ms/req", "client CPU", "delivered", "deliv/s in load",
                "all in +s", "deliv p99 s"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in rows:
        served = r.delivered is not None
        table.add_row(
            r.target, str(r.requests), str(r.errors), f"{r.rate:,.0f}",
            f"{r.rate / bare.rate:.0%}" if bare and bare.rate else "",
            f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}", f"{r.server_cpu:.0%}",
            f"{r.server_cpu * r.seconds / r.requests * 1000:.2f}", f"{r.client_cpu:.0%}",
            str(r.delivered) if served else "",
            f"{r.delivered_in_load / r.seconds:,.0f}" if served and r.seconds else "",
            f"{r.drained_after_s:.1f}" if r.drained_after_s is not None else "",
            f"{(r.delivery_p99_ms or 0) / 1000:.1f}" if served else "",
        )
    console.print(table)
    console.print("[dim]server CPU: the server process (the hub: with its embedded Redis; serve: "
                  "also its worker) as a share of one core, over the measured window; CPU ms/req: "
                  "server CPU per request (steadier than leads/s when other work shares the "
                  "machine); client CPU: all client processes. serve only: delivered = accepted "
                  "leads that reached the destination; deliv/s in load: of them, those that "
                  "arrived while the load ran, per second of load; all in +s: the last arrival, "
                  "after the load ended; deliv p99: posted -> at the destination.[/]")
    for r in rows:
        if r.first_error:
            console.print(f"[red]{r.target}: first error: {r.first_error}[/]", markup=False)

    ok = all(r.errors == 0 for r in rows)
    if bare is not None and bare.rate:
        for r in rows:
            if r is bare:
                continue
            goal = "≥ 30%, p99 < 100 ms" if r.delivered is not None else "≥ 50%"
            console.print(f"{r.target} / bare: [bold]{r.rate / bare.rate:.0%}[/] of the bare "
                          f"endpoint's leads/s, p99 {r.p99_ms:.0f} ms (target {goal})")
    for r in rows:
        if r.delivered is None:
            continue
        accepted = r.requests - r.errors
        fine = r.delivered == accepted
        dups = f"; {r.duplicates} duplicate arrival(s)" if r.duplicates else ""
        style = "green" if fine else "red"
        console.print(f"[{style}]{r.target}: {r.delivered} of {accepted} accepted leads "
                      f"delivered{dups}: {'OK' if fine else 'MISSING'}[/]")
        ok = ok and fine
    for check in checks:
        new_leads, new_raw = check.sql_after - check.sql_before, check.raw_after - check.raw_before
        exact = new_leads == args.requests and new_raw == args.requests
        api_ok = check.api_count == check.sql_after
        style = "green" if exact and api_ok else "red"
        console.print(
            f"[{style}]store check: {new_leads} new leads and {new_raw} raw requests of source "
            f"{SOURCE!r} in the store (expected {args.requests} each); admin API GET /api/leads "
            f"lists {check.api_count} ({'matches' if api_ok else 'DOES NOT match'} the store): "
            f"{'OK' if exact and api_ok else 'MISSING' if new_leads < args.requests else 'MISMATCH'}[/]"
        )
        ok = ok and exact and api_ok
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
