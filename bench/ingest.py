"""Ingest bench: LeadHub's durable webhook path against a bare FastAPI form endpoint.

    .venv/bin/python bench/ingest.py [--requests N] [--concurrency C] [--database-url URL]

In one run on one machine:

1. a bare FastAPI app (uvicorn, one process) whose handler only does
   ``await request.form()`` and answers a small JSON: the ceiling of "FastAPI + form";
2. a real ``leadhub api`` (one process; SQLite under a temporary data_dir, or the
   PostgreSQL of ``--database-url``; an embedded Redis started here) with one webform
   source and the file destination, and NO worker: what is measured is the ingest path,
   i.e. the raw request and the lead committed before each answer;
3. N urlencoded lead forms with varying phones, C in flight at a time, after a warm-up,
   from ``--client-procs`` client processes (async httpx, keep-alive);
4. a table of both targets and the hub/bare ratio, then a check that the store holds
   exactly N new leads (SQL count, and the admin API ``GET /api/leads``).

CPU seconds of the server (and of its Redis) and of the clients are read from /proc so
the table shows which side was saturated: on a 2-core machine a client that needs a
whole core is as much a part of the result as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
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


async def _post_raw(url: str, bodies: list[bytes], concurrency: int, res: ClientResult) -> None:
    """HTTP/1.1 keep-alive over asyncio streams: one request in flight per connection, the
    status and Content-Length read from the answer. About 5x cheaper per request than httpx
    (whose connection pool also slows down as connections grow), so one client process on
    one core outruns the server instead of measuring itself."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = (f"POST {parts.path} HTTP/1.1\r\nhost: {parts.netloc}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items())).encode()
    queue = iter(bodies)

    async def one_connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        for body in queue:
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


async def _post_all(url: str, bodies: list[bytes], concurrency: int, client: str) -> ClientResult:
    res = ClientResult()
    cpu0 = time.process_time()
    res.started = time.time()
    post = _post_raw if client == "raw" else _post_httpx
    await post(url, bodies, concurrency, res)
    res.finished = time.time()
    res.cpu = time.process_time() - cpu0
    return res


def _client_proc(url: str, first: int, count: int, concurrency: int, client: str,
                 start_at: float, out: Any) -> None:
    bodies = [lead_body(i) for i in range(first, first + count)]
    time.sleep(max(0.0, start_at - time.time()))  # all client processes start together
    out.send(asyncio.run(_post_all(url, bodies, concurrency, client)))
    out.close()


def run_load(url: str, first: int, count: int, args: argparse.Namespace) -> ClientResult:
    """``count`` posts from ``procs`` processes sharing ``concurrency`` connections."""
    concurrency, procs = args.concurrency, args.client_procs
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
                        args=(url, offset, n, c, args.client, start_at, send))
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

    @property
    def rate(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def measure(target: Target, args: argparse.Namespace) -> Row:
    if args.warmup:
        warm = run_load(target.warmup_url, 10_000_000, args.warmup, args)
        if warm.errors:
            print(f"  warm-up of {target.name}: {warm.errors} errors ({warm.first_error})")
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
    )


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


def bench_hub(args: argparse.Namespace, work: Path) -> tuple[Row, StoreCheck]:
    from hub.config import HubSettings
    from hub.testing.cluster import HubCluster

    data_dir = work / "hub"
    data_dir.mkdir()
    config = work / "plugins.toml"
    config.write_text(HUB_CONFIG.format(data_dir=data_dir, token=ADMIN_TOKEN, source=SOURCE,
                                        warmup=WARMUP_SOURCE))
    db_url = HubSettings(data_dir=data_dir, database_url=args.database_url).sqlalchemy_url()
    store = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite"
    cluster = HubCluster(config, data_dir=data_dir, database_url=args.database_url,
                         admin_token=ADMIN_TOKEN)
    try:
        cluster.start_redis()
        cluster.start_api()  # migrates the store; no worker, no scheduler: ingest only
        assert cluster.api is not None and cluster.embedded is not None
        assert cluster.embedded.process is not None
        leads0, raw0 = _count(db_url)
        target = Target(f"LeadHub api ({store})",
                        f"{cluster.base_url}/hooks/{SOURCE}",
                        f"{cluster.base_url}/hooks/{WARMUP_SOURCE}",
                        [cluster.api.pid, cluster.embedded.process.pid])
        row = measure(target, args)
        leads1, raw1 = _count(db_url)
        api_count = len(cluster.leads(source=SOURCE))
        return row, StoreCheck(leads0, leads1, raw0, raw1, api_count)
    finally:
        cluster.stop()


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
    parser.add_argument("--only", choices=["bare", "hub"], help="run one target only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if args.requests < 1 or args.concurrency < 1 or args.client_procs < 1:
        parser.error("--requests, --concurrency and --client-procs must be at least 1")

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    console.print(
        f"[bold]Ingest bench[/]: {args.requests} urlencoded lead forms, {args.concurrency} in "
        f"flight, {args.client_procs} {args.client} client process(es), warm-up {args.warmup}, "
        f"{os.cpu_count()} CPU(s); uvicorn for both: {_server_label()}"
    )
    rows: list[Row] = []
    check: StoreCheck | None = None
    work = Path(tempfile.mkdtemp(prefix="leadhub-bench-"))
    try:
        if args.only != "hub":
            console.print("bare endpoint ...")
            rows.append(bench_bare(args))
        if args.only != "bare":
            console.print("LeadHub api ...")
            hub_row, check = bench_hub(args, work)
            rows.append(hub_row)
    finally:
        if args.keep:
            console.print(f"data kept in {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)

    table = Table(title="POST /hooks/{source}: urlencoded lead form")
    for col in ("target", "requests", "errors", "leads/s", "p50 ms", "p99 ms", "server CPU",
                "CPU ms/req", "client CPU"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for r in rows:
        table.add_row(r.target, str(r.requests), str(r.errors), f"{r.rate:,.0f}", f"{r.p50_ms:.1f}",
                      f"{r.p99_ms:.1f}", f"{r.server_cpu:.0%}",
                      f"{r.server_cpu * r.seconds / r.requests * 1000:.2f}", f"{r.client_cpu:.0%}")
    console.print(table)
    console.print("[dim]server CPU: the server process (and, for the hub, its embedded Redis) as "
                  "a share of one core, over the measured window; CPU ms/req: server CPU per "
                  "request (steadier than leads/s when other work shares the machine); client "
                  "CPU: all client processes.[/]")
    for r in rows:
        if r.first_error:
            console.print(f"[red]{r.target}: first error: {r.first_error}[/]", markup=False)

    ok = all(r.errors == 0 for r in rows)
    if len(rows) == 2 and rows[0].rate:
        ratio = rows[1].rate / rows[0].rate
        console.print(f"hub / bare: [bold]{ratio:.0%}[/] of the bare endpoint's leads/s "
                      f"(target ≥ 50%)")
    if check is not None:
        new_leads, new_raw = check.sql_after - check.sql_before, check.raw_after - check.raw_before
        exact = new_leads == args.requests and new_raw == args.requests
        api_ok = check.api_count == check.sql_after
        style = "green" if exact and api_ok else "red"
        console.print(
            f"[{style}]store check: {new_leads} new leads and {new_raw} raw requests of source "
            f"{SOURCE!r} in the store (expected {args.requests} each); admin API GET /api/leads "
            f"lists {check.api_count} ({'matches' if api_ok else 'DOES NOT match'} the store): "
            f"{'OK' if exact and api_ok else 'MISMATCH'}[/]"
        )
        ok = ok and exact and api_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
