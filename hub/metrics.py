"""Prometheus metrics.

Request counters live in the api process where requests happen. Everything about leads
and deliveries is read from the store at scrape time, so it is true whichever process
(api, any worker) did the work and survives restarts: counts by source and outcome,
deliveries by destination and status, queue depth and the age of the oldest due item,
and delivery latency (webhook received → delivered) over the last 1,000 deliveries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from hub.store import metrics as counts

WEBHOOKS = Counter(
    "leadhub_webhooks_total", "Webhook requests by source and outcome", ["source", "outcome"]
)
INGEST_LATENCY = Histogram(
    "leadhub_ingest_seconds", "Time from request to committed raw request", ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LATENCY_SAMPLE = 1000


class StoreCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "leadhub_events", "Stored webhook events by source and outcome "
            "(lead, non_lead, quarantined, retry)", labels=["source", "outcome"])
        leads = GaugeMetricFamily(
            "leadhub_leads", "Leads by source and status (duplicate included)",
            labels=["source", "status"])
        quarantine = GaugeMetricFamily(
            "leadhub_quarantine_open", "Quarantined requests waiting for a fix", labels=["source"])
        deliveries = GaugeMetricFamily(
            "leadhub_deliveries", "Deliveries by destination and status", labels=["destination", "status"])
        depth = GaugeMetricFamily(
            "leadhub_queue_due", "Deliveries due now (queue depth)", labels=["destination"])
        age = GaugeMetricFamily(
            "leadhub_queue_oldest_seconds", "How long the oldest due delivery has waited",
            labels=["destination"])
        latency = SummaryMetricFamily(
            "leadhub_delivery_latency_seconds",
            f"Webhook received to delivered, over the last {LATENCY_SAMPLE} deliveries",
            labels=["destination"])
        now = time.time()
        with self.engine.connect() as conn:
            for source, outcome, n in counts.events(conn):
                events.add_metric([source, outcome], n)
            for source, status, n in counts.leads(conn):
                leads.add_metric([source, status], n)
            for source, n in counts.open_quarantine(conn):
                quarantine.add_metric([source], n)
            for dest, status, n in counts.deliveries(conn):
                deliveries.add_metric([dest, status], n)
            for dest, n, oldest in counts.due(conn, now):
                depth.add_metric([dest], n)
                age.add_metric([dest], max(0.0, now - float(oldest)))
            recent = counts.recent_latencies(conn, LATENCY_SAMPLE)
        by_dest: dict[str, list[float]] = {}
        for dest, seconds in recent:
            by_dest.setdefault(dest, []).append(float(seconds))
        for dest, values in by_dest.items():
            latency.add_metric([dest], count_value=len(values), sum_value=sum(values))
        yield from (events, leads, quarantine, deliveries, depth, age, latency)
