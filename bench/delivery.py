"""Delivery bench: drain throughput under a destination's rate limit, and isolation of a
healthy destination from one that times out.

    .venv/bin/python bench/delivery.py [--only drain|latency|isolation] [--faults 0.2]
                                       [--database-url URL]

Everything runs for real on loopback: ``HubCluster`` starts a ``leadhub api``, 4
``leadhub worker`` processes and a ``leadhub scheduler`` on an embedded Redis and a
fresh store (SQLite in a temporary directory, or a fresh database on the PostgreSQL of
``--database-url``); the destinations are ``FakeAmoCRM`` (which answers 429 above its
rate, counted in ``count_429``) and ``FakeServer`` webhook receivers in this process.

1. **Drain** (``--rates 7,2``, and the first rate again with ``--faults`` of the requests
   failing: 500, 429 or a timeout, half of them after the deal was made): the amoCRM destination is disabled
   (``POST /api/connectors/amo/disable``), N leads are posted through ``/hooks/site_form``
   and routed (held as pending), then it is enabled and the drain is timed from the
   enable call to the last ``delivered_at``. Rate 2 is Bitrix24's limit: the fake is set
   to 2 requests/s and the destination to ``rate_limit_per_s = 2``. Goals: no 429 for the
   limit at all, at least 95 % of the ceiling (requests/s × batch size) healthy and 80 %
   with faults.
2. **Latency** (``--lat-rate 100 --lat-seconds 30``): leads posted at a steady rate into
   the healthy fake amoCRM (7 requests/s, 50 leads per request), then with ``--faults``:
   p50/p99 of commit → deal; first under ``leadhub serve`` (the one-machine deployment,
   one worker), then with the 4 worker processes. Goals: p99 < 500 ms healthy, < 10 s with faults.
3. **Isolation**: two destinations get every lead, posted at a steady rate: the fake
   amoCRM (healthy) and a webhook. First both are healthy (baseline), then the webhook's
   receiver holds every request longer than the webhook's ``timeout_s`` (a new cluster
   and fresh store for each). What is compared is the p99 of received → delivered for
   the healthy amoCRM destination. Target: isolated p99 ≤ 1.5 × baseline p99.

Latencies come from the store (``leads.received_at``, ``deliveries.delivered_at``, both
stamped by the hub's processes on this machine's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/delivery.py` from a checkout
    sys.path.insert(0, str(ROOT))

ADMIN_TOKEN = "bench-admin-token"
AMO_TOKEN = "long-lived-token"
WORKERS = 4
BATCH = 50  # amoCRM: leads per leads/complex call
HEADERS = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}

DRAIN_CONFIG = """\
# written by bench/delivery.py (drain)
[hub]
data_dir = "{data_dir}"
admin_token = "{token}"
default_region = "RU"
dedup_window_minutes = 30

[sources.site_form]
plugin = "webform"

[destinations.amo]
plugin = "amocrm"
base_url = "{amo_url}"
access_token = "{amo_token}"
pipeline_id = 7000001
comment_field_id = {comment_field}
timeout_s = 10
{rate_line}

[[routes]]
name = "all"
match = {{ source = "site_form" }}
destinations = ["amo"]
"""

ISOLATION_CONFIG = """\
# written by bench/delivery.py (isolation)
[hub]
data_dir = "{data_dir}"
admin_token = "{token}"
default_region = "RU"

[sources.site_form]
plugin = "webform"

[destinations.amo]
plugin = "amocrm"
base_url = "{amo_url}"
access_token = "{amo_token}"
pipeline_id = 7000001
comment_field_id = {comment_field}
timeout_s = 10

[destinations.hook]
plugin = "webhook"
url = "{hook_url}"
timeout_s = {hook_timeout}
requests_per_second = 200

[[routes]]
name = "all"
match = {{ source = "site_form" }}
destinations = ["amo", "hook"]
"""


def lead_body(i: int) -> bytes:
    """A landing-page form; every lead has its own phone (no cross-channel duplicates)."""
    n = 1_000_000 + i
    phone = f"+7 916 {n // 10000 % 1000:03d}-{n // 100 % 100:02d}-{n % 100:02d}"
    return urlencode({"name": f"Иван {i}", "phone": phone, "utm_source": "yandex",
                      "utm_campaign": "spring"}).encode()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ---------------------------------------------------------------------------- store
@contextlib.contextmanager
def fresh_database(pg_url: str) -> Iterator[str]:
    """'' (SQLite under the cluster's data_dir) or a new database on ``pg_url``, dropped after."""
    if not pg_url:
        yield ""
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    sa = "postgresql+psycopg://" + pg_url.split("://", 1)[1]
    name = f"leadhub_bench_{secrets.token_hex(5)}"
    admin = create_engine(sa, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Store:
    """Read-only queries on the hub's store, for counting and latencies."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        from hub.config import HubSettings
        from hub.store.db import make_engine

        url = HubSettings(data_dir=data_dir, database_url=database_url).sqlalchemy_url()
        self.engine = make_engine(url)
        self.kind = "PostgreSQL" if url.startswith("postgresql") else "SQLite"

    def counts(self, destination: str) -> dict[str, int]:
        from sqlalchemy import func, select

        from hub.store import tables as t

        d = t.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(select(d.c.status, func.count()).where(d.c.destination == destination)
                                .group_by(d.c.status))
            return {status: int(n) for status, n in rows}

    def times(self, destination: str) -> list[tuple[float, float]]:
        """(received_at, delivered_at) of every delivered delivery to ``destination``."""
        return [(rc, dv) for rc, _, dv in self.stages(destination)]

    def stages(self, destination: str) -> list[tuple[float, float, float]]:
        """(received_at, routed, delivered_at) of every delivered delivery to
        ``destination``; routed is the delivery row's ``created_at`` (the routing commit)."""
        from sqlalchemy import select

        from hub.store import tables as t

        d, ld = t.deliveries, t.leads
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(ld.c.received_at, d.c.created_at, d.c.delivered_at)
                .join(ld, ld.c.id == d.c.lead_id)
                .where(d.c.destination == destination, d.c.status == "delivered")
            )
            return [(float(r), float(c), float(dv)) for r, c, dv in rows]

    def slowest(self, destination: str, since: float) -> tuple[str, float, float, int] | None:
        """(lead id, received_at, delivered_at, attempts) of the delivery to ``destination``
        that took longest, of the leads received since ``since``."""
        from sqlalchemy import select

        from hub.store import tables as t

        d, ld = t.deliveries, t.leads
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ld.c.id, ld.c.received_at, d.c.delivered_at, d.c.attempts)
                .join(ld, ld.c.id == d.c.lead_id)
                .where(d.c.destination == destination, d.c.status == "delivered",
                       ld.c.received_at >= since)
                .order_by((d.c.delivered_at - ld.c.received_at).desc()).limit(1)
            ).first()
        return None if row is None else (row[0], float(row[1]), float(row[2]), int(row[3]))

    def close(self) -> None:
        self.engine.dispose()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc), so ``leadhub serve``'s workers count."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def hub_cpu_s(hub: Any) -> float:
    """CPU seconds (user + system) used so far by the hub's processes and their children
    (api or serve, workers, scheduler, the embedded Redis)."""
    roots = [p.pid for p in [hub.api, hub.scheduler, *hub.workers] if p is not None]
    if hub.embedded is not None and hub.embedded.process is not None:
        roots.append(hub.embedded.process.pid)
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in {p for root in roots for p in _tree(root)}:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# ---------------------------------------------------------------------------- load
async def _post_all(url: str, first: int, count: int, concurrency: int) -> int:
    import httpx

    errors = 0
    bodies = iter(range(first, first + count))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one() -> None:
            nonlocal errors
            for i in bodies:
                r = await client.post(url, content=lead_body(i), headers=HEADERS)
                errors += r.status_code != 200

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return errors


async def _post_paced(url: str, first: int, rate: float, seconds: float) -> tuple[int, int]:
    """``rate`` posts per second for ``seconds``, each sent on schedule (not after the
    previous answer), so a slow hub does not slow the offered load."""
    import httpx

    errors, sent = 0, 0
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(i: int) -> None:
            nonlocal errors
            try:
                r = await client.post(url, content=lead_body(i), headers=HEADERS)
                errors += r.status_code != 200
            except httpx.HTTPError:
                errors += 1

        tasks = []
        start = time.monotonic()
        total = int(rate * seconds)
        for k in range(total):
            await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(first + k)))
            sent += 1
        await asyncio.gather(*tasks)
    return sent, errors


# ---------------------------------------------------------------------------- cluster
@contextlib.contextmanager
def cluster(config_text: str, work: Path, database_url: str, serve: bool = False,
            serve_options: tuple[str, ...] = ()) -> Iterator[tuple[Any, Store]]:
    """``WORKERS`` worker processes beside an api and a scheduler, or with ``serve`` the
    one-machine deployment: ``leadhub serve`` (with ``serve_options``) and its workers."""
    from hub.testing.cluster import HubCluster

    data_dir = work / "hub"
    data_dir.mkdir(parents=True)
    config = work / "plugins.toml"
    config.write_text(config_text.replace("{data_dir}", str(data_dir)))
    hub = HubCluster(config, data_dir=data_dir, database_url=database_url, admin_token=ADMIN_TOKEN)
    store: Store | None = None
    try:
        hub.start_redis()
        if serve:
            hub.start_serve(*serve_options)
        else:
            hub.start_api()
            for _ in range(WORKERS):
                hub.start_worker()
            hub.start_scheduler()
        store = Store(data_dir, database_url)
        yield hub, store
    finally:
        if store is not None:
            store.close()
        hub.stop()


@dataclass
class DrainRow:
    store: str
    rate: float
    leads: int
    seconds: float
    requests: int
    count_429: int
    p50: float
    p99: float
    span: float  # the shortest time in which rate+1 requests arrived (the fake wants > 1 s)
    faults: float = 0.0  # share of requests the fake failed on purpose
    faulted: int = 0
    creates: int = 0  # POST leads/complex
    lookups: int = 0  # GET leads (finding what an uncertain attempt made)
    hangs: int = 0  # requests held until the connection dropped (timeout faults)
    cpu_s: float = 0.0  # CPU of the hub's processes during the drain

    @property
    def ceiling(self) -> float:
        return self.rate * BATCH

    @property
    def leads_per_s(self) -> float:
        return self.leads / self.seconds if self.seconds else 0.0

    @property
    def batches(self) -> float:
        return self.leads / BATCH

    @property
    def reachable(self) -> float:
        """The share of the ceiling these requests allow: the fewest batches the leads
        need over the requests the run made, had every request slot been used. A hanging
        request also keeps its slot ``ARRIVAL_BOUND_S`` longer (the limiter cannot see
        when it arrived), about one more request each: ``reachable_hangs``."""
        return self.batches / self.requests if self.requests else 0.0

    @property
    def reachable_hangs(self) -> float:
        from hub.engine.limiter import ARRIVAL_BOUND_S

        cost = self.requests + self.hangs * ARRIVAL_BOUND_S
        return self.batches / cost if cost else 0.0

    @property
    def used(self) -> float:
        """Requests made over the requests the limit allowed in that time."""
        return self.requests / (self.rate * self.seconds) if self.seconds else 0.0


def expected_reachable(faults: float, after: float = 0.5) -> float:
    """The share of the ceiling a batch of 50 can reach through ``faults`` (a third each
    500, 429 and timeout; ``after`` of the 500s and timeouts strike after the deals were
    made). Requests per batch: C = 1 + p429·C + p_unsure·L for a create, L = 1 + f·L +
    (1 − f)(1 − after)·C for the look-up an uncertain create needs (a 429 is certain and
    needs none; a look-up that finds the deals ends the batch)."""
    p429, unsure = faults / 3, faults * 2 / 3
    if faults >= 1:
        return 0.0
    c = (1 + unsure / (1 - faults)) / (1 - p429 - unsure * (1 - after))
    return 1 / c


def say_story(say: Any, slowest: tuple[str, float, float, int] | None,
              requests: list[Any]) -> None:
    """The slowest lead's trip, from the fake's log: each request that carried its marker
    (its batch's creates) and every look-up meanwhile, in seconds from its commit. What the
    p99 with faults is made of is one unlucky batch; this says which luck."""
    if slowest is None:
        return
    lead_id, received, delivered, attempts = slowest
    marker = f"lh:{lead_id}:amo".encode()
    say(f"    slowest lead: {delivered - received:.2f} s, {attempts} attempt(s):")
    for q in requests:
        if not received <= q.time <= delivered + 0.01:
            continue
        mine = marker in q.body
        if q.method == "POST" and not mine:
            continue
        what = "its create" if mine else f"a look-up ({(q.q('query') or '')[:24]})"
        say(f"      +{q.time - received:6.2f} s  {q.method} {q.path}  {what}"
            f"{'  FAULT ' + q.fault if q.fault else ''}")


def limit_429s(amo: Any, before: int) -> int:
    """429s the fake answered for its rate limit (not the ones injected as faults)."""
    injected = sum(1 for q in amo.requests if (q.fault or "").startswith("429"))
    return amo.count_429 - before - injected


def bench_drain(rate: float, n: int, work: Path, pg_url: str, say: Any,
                faults: float = 0.0) -> DrainRow:
    from plugins.amocrm.testing import FakeAmoCRM

    with FakeAmoCRM(token=AMO_TOKEN, rate_limit=rate) as amo, fresh_database(pg_url) as db:
        field = amo.account.add_field("leads", "Комментарий", "textarea")
        text = DRAIN_CONFIG.format(
            data_dir="{data_dir}", token=ADMIN_TOKEN, amo_url=amo.base_url, amo_token=AMO_TOKEN,
            comment_field=field, rate_line=f"rate_limit_per_s = {rate:g}" if rate < 7 else "",
        )
        with cluster(text, work, db) as (hub, store):
            r = hub.admin("POST", "/api/connectors/amo/disable")
            assert r.status_code == 200, r.text
            say(f"  rate {rate:g}/s: posting {n} leads with amo disabled ...")
            errors = asyncio.run(_post_all(f"{hub.base_url}/hooks/site_form", 0, n, 16))
            if errors:
                raise RuntimeError(f"{errors} posts failed")
            wait_for(lambda: store.counts("amo").get("pending", 0) >= n, 120,
                     f"{n} leads routed to amo")
            amo.clear_records()
            c429 = amo.count_429
            say(f"  rate {rate:g}/s: enabling amo and timing the drain ...")
            if faults:
                amo.faults(faults, ("500", "429", "timeout"), seed=5, after_ratio=0.5, hang_s=3)
            t_enable = time.time()
            cpu0 = hub_cpu_s(hub)
            r = hub.admin("POST", "/api/connectors/amo/enable")
            assert r.status_code == 200, r.text
            wait_for(lambda: store.counts("amo").get("delivered", 0) >= n,
                     n / (rate * BATCH) * 4 + 60, f"{n} leads delivered", 0.25)
            amo.no_faults()
            times = store.times("amo")
            end = max(dv for _, dv in times)
            lat = [dv - max(rc, t_enable) for rc, dv in times]
            sent = sorted(q.time for q in amo.requests if q.path.startswith("/api/"))
            requests = len(sent)
            k = int(rate)  # the fake refuses a request with k others in the second before it
            span = min((b - a for a, b in zip(sent, sent[k:], strict=False)), default=0.0)
            assert len(amo.leads_by_marker("lh:")) == n and all(
                len(v) == 1 for v in amo.leads_by_marker("lh:").values()), "a deal missing or twice"
            api = [q for q in amo.requests if q.path.startswith("/api/")]
            return DrainRow(store.kind, rate, n, end - t_enable, requests,
                            limit_429s(amo, c429), percentile(lat, 0.5), percentile(lat, 0.99),
                            span, faults, sum(1 for q in api if q.fault),
                            creates=sum(1 for q in api if q.path.endswith("/leads/complex")),
                            lookups=sum(1 for q in api if q.method == "GET"),
                            hangs=sum(1 for q in api if (q.fault or "").startswith("timeout")),
                            cpu_s=hub_cpu_s(hub) - cpu0)


@dataclass
class LatencyRow:
    deployment: str
    faults: float
    store: str
    sent: int
    delivered: int
    faulted: int
    requests: int
    count_429: int
    p50: float
    p99: float
    max: float
    duplicated: int
    route_p50: float = 0.0  # received_at → the delivery row (routing)
    route_p99: float = 0.0
    cpu_ms: float = 0.0  # the hub's CPU per lead posted


def route_times(stages: list[tuple[float, float, float]], since: float) -> list[float]:
    return [c - rc for rc, c, _ in stages if rc >= since]


def bench_latency(rate: float, seconds: float, faults: float, work: Path, pg_url: str,
                  say: Any, serve: bool = False, serve_options: tuple[str, ...] = ()) -> LatencyRow:
    """Webhook → deal: leads posted at a steady ``rate`` into the healthy (or flaky) fake
    amoCRM; the time from a lead's commit (``received_at``) to its deal (``delivered_at``)."""
    from plugins.amocrm.testing import FakeAmoCRM

    with FakeAmoCRM(token=AMO_TOKEN) as amo, fresh_database(pg_url) as db:
        field = amo.account.add_field("leads", "Комментарий", "textarea")
        text = DRAIN_CONFIG.format(
            data_dir="{data_dir}", token=ADMIN_TOKEN, amo_url=amo.base_url, amo_token=AMO_TOKEN,
            comment_field=field, rate_line="",
        )
        with cluster(text, work, db, serve=serve, serve_options=serve_options) as (hub, store):
            asyncio.run(_post_all(f"{hub.base_url}/hooks/site_form", 9_000_000, 20, 4))
            wait_for(lambda: store.counts("amo").get("delivered", 0) >= 20, 60, "warm-up")
            amo.clear_records()
            c429 = amo.count_429
            if faults:
                amo.faults(faults, ("500", "429", "timeout"), seed=9, after_ratio=0.5, hang_s=3)
            t0 = time.time()
            cpu0 = hub_cpu_s(hub)
            deployment = "leadhub serve" if serve else f"{WORKERS} workers"
            say(f"  {deployment}: {rate:g} leads/s for {seconds:g} s, {faults:.0%} faults ...")
            sent, errors = asyncio.run(_post_paced(f"{hub.base_url}/hooks/site_form", 0,
                                                   rate, seconds))
            if errors:
                raise RuntimeError(f"{errors} posts failed")
            wait_for(lambda: store.counts("amo").get("delivered", 0) >= sent + 20, 180,
                     "every lead delivered to amo", 0.25)
            cpu = hub_cpu_s(hub) - cpu0
            amo.no_faults()
            stages = store.stages("amo")
            lat = [dv - rc for rc, _, dv in stages if rc >= t0]
            route = route_times(stages, t0)
            markers = amo.leads_by_marker("lh:")
            if faults:
                say_story(say, store.slowest("amo", t0), amo.requests)
            return LatencyRow(deployment, faults, store.kind, sent, len(lat),
                              sum(1 for q in amo.requests if q.fault), len(amo.requests),
                              limit_429s(amo, c429), percentile(lat, 0.5), percentile(lat, 0.99),
                              max(lat), sum(1 for v in markers.values() if len(v) > 1),
                              percentile(route, 0.5), percentile(route, 0.99),
                              cpu * 1000 / max(1, sent))


@dataclass
class IsoRow:
    case: str
    store: str
    sent: int
    amo_delivered: int
    hook: dict[str, int]
    p50: float
    p99: float
    max: float
    count_429: int
    route_p99: float = 0.0
    cpu_ms: float = 0.0


def bench_isolation(case: str, dead: bool, args: argparse.Namespace, work: Path,
                    say: Any) -> IsoRow:
    from hub.testing import FakeServer, RecordedRequest, Response
    from plugins.amocrm.testing import FakeAmoCRM

    receiver = FakeServer()

    def ok(req: RecordedRequest, _: dict[str, str]) -> Response:
        return Response.json({"id": req.headers.get("webhook-id", "")})

    receiver.add_route("POST", "/hook", ok)
    with FakeAmoCRM(token=AMO_TOKEN) as amo, receiver, fresh_database(args.database_url) as db:
        if dead:  # every request is held past the client's timeout, then dropped
            receiver.faults(1.0, ("timeout",), hang_s=args.hook_timeout * 3, after_ratio=0.0)
        field = amo.account.add_field("leads", "Комментарий", "textarea")
        text = ISOLATION_CONFIG.format(
            data_dir="{data_dir}", token=ADMIN_TOKEN, amo_url=amo.base_url, amo_token=AMO_TOKEN,
            comment_field=field, hook_url=f"{receiver.base_url}/hook",
            hook_timeout=args.hook_timeout,
        )
        with cluster(text, work, db) as (hub, store):
            # warm-up (imports, connections): a few leads before the measured window
            asyncio.run(_post_all(f"{hub.base_url}/hooks/site_form", 9_000_000, 20, 4))
            wait_for(lambda: store.counts("amo").get("delivered", 0) >= 20, 60, "warm-up")
            t0 = time.time()
            cpu0 = hub_cpu_s(hub)
            say(f"  {case}: {args.iso_rate:g} leads/s for {args.iso_seconds:g} s ...")
            sent, errors = asyncio.run(_post_paced(f"{hub.base_url}/hooks/site_form", 0,
                                                   args.iso_rate, args.iso_seconds))
            if errors:
                raise RuntimeError(f"{errors} posts failed")
            wait_for(lambda: store.counts("amo").get("delivered", 0) >= sent + 20, 120,
                     "every lead delivered to amo")
            cpu = hub_cpu_s(hub) - cpu0
            stages = store.stages("amo")
            lat = [dv - rc for rc, _, dv in stages if rc >= t0]
            hook = store.counts("hook")
            return IsoRow(case, store.kind, sent, len(lat), hook, percentile(lat, 0.5),
                          percentile(lat, 0.99), max(lat), amo.count_429,
                          percentile(route_times(stages, t0), 0.99), cpu * 1000 / max(1, sent))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=["drain", "latency", "isolation"])
    parser.add_argument("--faults", type=float, default=0.2,
                        help="share of amoCRM requests failed (500/429/timeout, half of them after "
                        "the effect) in the runs with faults; 0 skips those runs")
    parser.add_argument("--lat-rate", type=float, default=100.0, help="latency: leads/s posted")
    parser.add_argument("--lat-seconds", type=float, default=30.0, help="latency: seconds")
    parser.add_argument("--rates", default="7,2", help="amoCRM requests/s for the drain runs")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="drain: size the backlog to last about this long at the ceiling")
    parser.add_argument("--iso-rate", type=float, default=30.0, help="isolation: leads/s posted")
    parser.add_argument("--iso-seconds", type=float, default=30.0, help="isolation: seconds")
    parser.add_argument("--hook-timeout", type=float, default=10.0,
                        help="isolation: the webhook's timeout_s (the dead receiver holds 3x)")
    parser.add_argument("--database-url", default="",
                        help="PostgreSQL server (postgresql://user@host/db): each run gets a "
                        "fresh database there; default SQLite in a temporary directory")
    parser.add_argument("--worker-nice", type=int, metavar="N",
                        help="latency under serve: pass --worker-nice N (default: serve's own)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    say = console.print
    say(f"[bold]Delivery bench[/]: {WORKERS} worker processes, {os.cpu_count()} CPU(s)")
    root = Path(tempfile.mkdtemp(prefix="leadhub-bench-delivery-"))
    ok = True
    drains: list[DrainRow] = []
    lats: list[LatencyRow] = []
    isos: list[IsoRow] = []
    try:
        if args.only in (None, "drain"):
            for k, rate in enumerate(float(x) for x in args.rates.split(",")):
                n = int(rate * BATCH * args.seconds)
                drains.append(bench_drain(rate, n, root / f"drain-{k}", args.database_url, say))
                if args.faults and k == 0:
                    drains.append(bench_drain(rate, n, root / f"drain-{k}-faults", args.database_url,
                                              say, faults=args.faults))
        if args.only in (None, "latency"):
            shares = [0.0] + ([args.faults] if args.faults else [])
            serve_options = () if args.worker_nice is None else ("--worker-nice", str(args.worker_nice))
            for k, (serve, share) in enumerate((s, f) for s in (True, False) for f in shares):
                lats.append(bench_latency(args.lat_rate, args.lat_seconds, share,
                                          root / f"latency-{k}", args.database_url, say, serve,
                                          serve_options))
        if args.only in (None, "isolation"):
            isos.append(bench_isolation("baseline: both healthy", False, args, root / "iso-0", say))
            isos.append(bench_isolation("webhook times out", True, args, root / "iso-1", say))
    finally:
        if args.keep:
            say(f"data kept in {root}")
        else:
            import shutil

            shutil.rmtree(root, ignore_errors=True)

    if drains:
        table = Table(title=f"Drain a backlog into the fake amoCRM ({WORKERS} workers)")
        for col in ("store", "faults", "rate req/s", "ceiling leads/s", "leads", "seconds",
                    "leads/s", "% of ceiling", "limit 429s", "requests (create/look-up)",
                    "hangs", "reachable model/run/−hangs", "slots used", "CPU ms/req",
                    "min span s", "p50 s", "p99 s"):
            table.add_column(col, justify="right")
        for d in drains:
            share = d.leads_per_s / d.ceiling
            goal = 0.80 if d.faults else 0.95
            good = share >= goal and d.count_429 == 0
            ok &= good
            table.add_row(d.store, f"{d.faults:.0%} ({d.faulted})", f"{d.rate:g}",
                          f"{d.ceiling:g}", str(d.leads),
                          f"{d.seconds:.1f}", f"{d.leads_per_s:.1f}",
                          f"[{'green' if share >= goal else 'red'}]{share:.0%}[/]",
                          f"[{'green' if d.count_429 == 0 else 'red'}]{d.count_429}[/]",
                          f"{d.requests} ({d.creates}/{d.lookups})", str(d.hangs),
                          f"{expected_reachable(d.faults):.0%}/{d.reachable:.0%}/"
                          f"{d.reachable_hangs:.0%}",
                          f"{d.used:.0%}", f"{d.cpu_s * 1000 / max(1, d.requests):.0f}",
                          f"{d.span:.3f}", f"{d.p50:.1f}", f"{d.p99:.1f}")
        say(table)
        say("[dim]seconds: from POST /api/connectors/amo/enable to the last delivered_at; "
            "p50/p99: delivered_at − max(received_at, enable), i.e. mostly the lead's place "
            "in the backlog; min span: the shortest time in which rate+1 requests reached the "
            "fake (it answers 429 under 1 s); limit 429s: the fake's own, not injected ones. "
            "reachable: the share of the ceiling the requests allow with every slot used "
            "(model: expected for the fault mix; run: batches needed / requests made; −hangs: "
            "also charging each hanging request its longer slot); slots used: requests made / "
            "(rate × seconds), so % of ceiling ≈ reachable × slots used. CPU: the hub's "
            "processes during the drain, per request made. "
            "Goals: 0 limit 429s; ≥ 95 % of the ceiling healthy, ≥ 80 % with faults.[/]")
    if lats:
        table = Table(title=f"Webhook → deal in the fake amoCRM at {args.lat_rate:g} leads/s "
                      f"for {args.lat_seconds:g} s")
        for col in ("deployment", "faults", "store", "leads", "delivered", "faults injected", "requests",
                    "limit 429s", "route p50/p99 ms", "p50 ms", "p99 ms", "max ms", "duplicated",
                    "CPU ms/lead"):
            table.add_column(col, justify="right")
        for r in lats:
            goal_ms = 10_000 if r.faults else 500
            good = r.p99 * 1000 < goal_ms and r.count_429 == 0 and r.duplicated == 0
            ok &= good
            table.add_row(r.deployment, f"{r.faults:.0%}", r.store, str(r.sent), str(r.delivered),
                          str(r.faulted), str(r.requests), str(r.count_429),
                          f"{r.route_p50 * 1000:.0f}/{r.route_p99 * 1000:.0f}",
                          f"{r.p50 * 1000:.0f}",
                          f"[{'green' if good else 'red'}]{r.p99 * 1000:.0f}[/]",
                          f"{r.max * 1000:.0f}", str(r.duplicated), f"{r.cpu_ms:.1f}")
        say(table)
        say("[dim]received_at (the lead's commit) → delivered_at (the deal's answer recorded); "
            "route: received_at → the delivery row's created_at (routed); CPU: the hub's "
            "processes (serve with its workers, or api, workers, scheduler; Redis) per lead. "
            "Goals: p99 < 500 ms healthy, < 10 s with faults; 0 duplicated deals.[/]")
    if isos:
        table = Table(title=f"Isolation: amoCRM latency while a webhook destination times out "
                      f"({args.iso_rate:g} leads/s for {args.iso_seconds:g} s, both destinations)")
        for col in ("case", "store", "leads", "amo delivered", "hook delivered/failed/pending",
                    "route p99 ms", "amo p50 ms", "amo p99 ms", "amo max ms", "amo 429s",
                    "CPU ms/lead"):
            table.add_column(col, justify="left" if col == "case" else "right")
        for r in isos:
            table.add_row(r.case, r.store, str(r.sent), str(r.amo_delivered),
                          f"{r.hook.get('delivered', 0)}/{r.hook.get('failed', 0)}/"
                          f"{r.hook.get('pending', 0)}",
                          f"{r.route_p99 * 1000:.0f}",
                          f"{r.p50 * 1000:.0f}", f"{r.p99 * 1000:.0f}", f"{r.max * 1000:.0f}",
                          str(r.count_429), f"{r.cpu_ms:.1f}")
        say(table)
        if len(isos) == 2:
            ratio = isos[1].p99 / isos[0].p99
            good = ratio <= 1.5
            ok &= good
            say(f"amo p99 with the webhook timing out / baseline: "
                f"[{'green' if good else 'red'}][bold]{ratio:.2f}×[/][/] (target ≤ 1.5×; "
                f"webhook timeout_s = {args.hook_timeout:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
