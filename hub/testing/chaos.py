"""A chaos run: leads posted from several sources while workers are SIGKILLed, the api is
killed and restarted, Redis is restarted, and the CRM fails a share of its calls, the
whole time: the final drain too, unless ``faults_through_drain=False``. Afterwards every
accepted lead must be in the CRM exactly once, nothing dead, and the ledger balanced.
``bench/chaos.py`` runs it at full size; ``tests/e2e/test_chaos.py`` runs a short one.
Plugin authors can point it at their own fake the same way.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hub.testing.cluster import HubCluster, wait_until
from plugins.amocrm.testing import FakeAmoCRM

TOKEN = "chaos-token"
SOURCES = ("site_a", "site_b", "site_c")


def chaos_config(amo_url: str) -> str:
    sources = "\n".join(f'[sources.{s}]\nplugin = "webform"\n' for s in SOURCES)
    return f"""
[hub]
default_destinations = ["amo_main"]

{sources}
[destinations.amo_main]
plugin = "amocrm"
base_url = "{amo_url}"
access_token = "{TOKEN}"
timeout_s = 2
"""


@dataclass
class ChaosReport:
    posted: int = 0
    accepted: int = 0
    client_retries: int = 0
    worker_kills: int = 0
    api_restarts: int = 0
    redis_restarts: int = 0
    crm_faults: int = 0
    crm_requests: int = 0
    in_crm: int = 0
    duplicated: int = 0
    missing: int = 0
    dead: int = 0
    ledger_balanced: bool = False
    drain_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.accepted == self.posted and self.missing == 0 and self.duplicated == 0
                and self.dead == 0 and self.ledger_balanced)


class Poster:
    """Posts leads like a provider does: retries until it gets a 2xx (keeps the same body)."""

    def __init__(self, cluster: HubCluster, total: int, rate: float, concurrency: int = 8) -> None:
        self.cluster, self.total, self.rate = cluster, total, rate
        self.accepted: dict[int, str] = {}
        self.retries = 0
        self.lock = threading.Lock()
        self.next = 0
        self.concurrency = concurrency
        self.started = time.monotonic()

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.total:
                return None
            i = self.next
            self.next += 1
        due = self.started + i / self.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return i

    def _post(self, client: httpx.Client, i: int) -> None:
        source = SOURCES[i % len(SOURCES)]
        data = {"name": f"Chaos {i}", "phone": f"+7916{i:07d}", "utm_source": "chaos"}
        while True:
            try:
                r = client.post(f"{self.cluster.base_url}/hooks/{source}", data=data, timeout=10)
                if r.status_code == 200:
                    with self.lock:
                        self.accepted[i] = r.json()["id"]
                    return
            except httpx.HTTPError:
                pass
            with self.lock:
                self.retries += 1
            time.sleep(0.2)

    def _run(self) -> None:
        with httpx.Client() as client:
            while (i := self._take()) is not None:
                self._post(client, i)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.concurrency)]
        for th in threads:
            th.start()
        return threads


def run_chaos(
    workdir: Path,
    *,
    leads: int = 5000,
    rate: float = 120.0,
    workers: int = 3,
    kill_every_s: float = 3.0,
    fault_ratio: float = 0.2,
    database_url: str = "",
    seed: int = 7,
    drain_timeout_s: float = 600.0,
    faults_through_drain: bool = True,
    min_worker_kills: int = 0,
    log: Any = print,
) -> ChaosReport:
    """``min_worker_kills``: workers go on being killed (every ``kill_every_s``) after the
    posting ends until that many were, so a run whose posting went faster than the kill
    schedule still kills as many (the kills then hit the delivery instead)."""
    rng = random.Random(seed)
    report = ChaosReport(posted=leads)
    with FakeAmoCRM(token=TOKEN) as amo:
        config = workdir / "plugins.toml"
        config.write_text(chaos_config(amo.base_url), encoding="utf-8")
        hub = HubCluster(config, data_dir=workdir / "hub", database_url=database_url)
        try:
            hub.start(workers=workers)
            amo.faults(fault_ratio, ("500", "429", "timeout"), seed=seed, after_ratio=0.5, hang_s=3)
            poster = Poster(hub, leads, rate)
            threads = poster.start()
            posting_s = leads / rate
            t0 = time.monotonic()
            api_at, redis_at = posting_s / 3, posting_s * 2 / 3
            api_done = redis_done = False
            next_kill = t0 + kill_every_s
            while (any(th.is_alive() for th in threads)
                   or report.worker_kills < min_worker_kills):
                now = time.monotonic()
                if now >= next_kill:
                    hub.restart_worker(rng.randrange(len(hub.workers)))
                    report.worker_kills += 1
                    next_kill = now + kill_every_s * rng.uniform(0.5, 1.5)
                if not api_done and now - t0 >= api_at:
                    hub.kill(hub.api)
                    hub.start_api()
                    report.api_restarts += 1
                    api_done = True
                    log(f"api killed and restarted at {now - t0:.1f}s")
                if not redis_done and now - t0 >= redis_at:
                    hub.stop_redis()
                    time.sleep(1.0)
                    hub.start_redis()
                    report.redis_restarts += 1
                    redis_done = True
                    log(f"redis restarted at {now - t0:.1f}s")
                time.sleep(0.1)
            log(f"posted {len(poster.accepted)} leads (and killed {report.worker_kills} workers) "
                f"in {time.monotonic() - t0:.1f}s "
                f"({poster.retries} client retries)")
            report.accepted = len(poster.accepted)
            report.client_retries = poster.retries
            if not faults_through_drain:
                amo.no_faults()
            drain_started = time.monotonic()
            expected = set(poster.accepted.values())

            def settled() -> bool:
                leads_now = hub.leads()
                done = sum(1 for x in leads_now if x["status"] == "delivered")
                return len(leads_now) >= len(expected) and done == len(leads_now)

            try:
                wait_until(settled, drain_timeout_s, 1.0, "every accepted lead delivered")
            except TimeoutError as exc:
                report.notes.append(str(exc))
            report.drain_seconds = time.monotonic() - drain_started
            by_tag = amo.leads_by_marker("lh:")
            delivered_ids = Counter(tag.split(":")[1] for tag in by_tag for _ in by_tag[tag])
            report.in_crm = sum(1 for i in expected if delivered_ids.get(i))
            report.missing = len(expected) - report.in_crm
            report.duplicated = sum(1 for n in delivered_ids.values() if n > 1)
            report.duplicated += sum(1 for i in delivered_ids if i not in expected)
            amo.no_faults()
            report.crm_requests = len(amo.requests)
            report.crm_faults = sum(1 for r in amo.requests if r.fault)
            dead = hub.admin("GET", "/api/deliveries", params={"status": "dead"}).json()["items"]
            report.dead = len(dead)
            ledger = hub.admin("GET", "/api/ledger").json()
            report.ledger_balanced = bool(ledger["balanced"]) and ledger["totals"]["leads"] == len(expected)
            if not ledger["balanced"] or ledger["totals"]["leads"] != len(expected):
                report.notes.append(f"ledger: {ledger['totals']}")
        finally:
            hub.stop()
    return report
