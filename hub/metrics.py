"""Prometheus metrics. Counters live where the event happens; queue depth and age are
read from the store at scrape time, so they are true whichever process did the work."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from hub.store import tables as t

WEBHOOKS = Counter(
    "leadhub_webhooks_total", "Webhook requests by source and outcome", ["source", "outcome"]
)
INGEST_LATENCY = Histogram(
    "leadhub_ingest_seconds", "Time from request to committed raw request", ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class StoreCollector(Collector):
    """Delivery counts by destination and status, and the age of the oldest due item."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        count = GaugeMetricFamily(
            "leadhub_deliveries", "Deliveries by destination and status", labels=["destination", "status"]
        )
        age = GaugeMetricFamily(
            "leadhub_queue_oldest_seconds", "Age of the oldest due delivery", labels=["destination"]
        )
        leads = GaugeMetricFamily("leadhub_leads", "Leads by source and status", labels=["source", "status"])
        now = time.time()
        with self.engine.connect() as conn:
            for dest, status, n in conn.execute(
                select(t.deliveries.c.destination, t.deliveries.c.status, func.count())
                .group_by(t.deliveries.c.destination, t.deliveries.c.status)
            ):
                count.add_metric([dest, status], n)
            for dest, oldest in conn.execute(
                select(t.deliveries.c.destination, func.min(t.deliveries.c.next_attempt_at))
                .where(t.deliveries.c.status.in_(("pending", "failed")),
                       t.deliveries.c.next_attempt_at <= now)
                .group_by(t.deliveries.c.destination)
            ):
                age.add_metric([dest], max(0.0, now - float(oldest)))
            for source, status, n in conn.execute(
                select(t.leads.c.source, t.leads.c.status, func.count())
                .group_by(t.leads.c.source, t.leads.c.status)
            ):
                leads.add_metric([source, status], n)
        yield count
        yield age
        yield leads
