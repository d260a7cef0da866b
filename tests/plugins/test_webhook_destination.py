"""The ``webhook`` destination over real loopback HTTP: a batch goes out concurrently with
one outcome per lead, errors stay with their lead, the in-flight window adapts to 429 and
5xx, a rate slot is held by each request, and through the engine every lead reaches
the receiver exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.connectors import ConnectorContext, DeliveryItem
from hub.engine.drain import drain
from hub.engine.process import process_received
from hub.errors import PermanentError, RateLimited, RetryableError
from hub.models import Contact, Lead
from hub.runtime import build_runtime
from hub.sdk import verify_standard_webhook as verify
from hub.store import tables as t
from plugins.webhook import (
    START_WINDOW,
    InFlightWindow,
    Signal,
    WebhookConfig,
    WebhookDestination,
)
from tests.conftest import ConfigWriter
from tests.engine.test_engine import form, ingest


@dataclass
class Answer:
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


#: How the receiver answers one request: from the lead's JSON and the request headers.
Policy = Callable[[dict[str, Any], dict[str, str]], Answer]


class Receiver:
    """A plain webhook receiver on loopback that counts the requests in flight at once.

    Handlers run concurrently (a thread per connection); only the bookkeeping is locked.
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy: Policy = policy or (lambda lead, headers: Answer(body={"id": f"ext-{lead['id']}"}))
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.received: list[tuple[dict[str, str], dict[str, Any], int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                lead = json.loads(body)
                with receiver.lock:
                    receiver.in_flight += 1
                    receiver.max_in_flight = max(receiver.max_in_flight, receiver.in_flight)
                try:
                    answer = receiver.policy(lead, headers)
                    headers["x-raw-body"] = body.decode()
                    time.sleep(answer.delay_s)
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1
                        receiver.received.append((headers, lead, answer.status))
                payload = json.dumps(answer.body or {}).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def reset_counts(self) -> None:
        with self.lock:
            self.max_in_flight = 0
            self.received.clear()

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class CountingSlots:
    """A ``request_slot`` that counts the requests it let go and those it was told were
    answered, and the most held at once."""

    def __init__(self) -> None:
        self.taken = self.given_back = self.most_held = 0
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            self.taken += 1
            self.most_held = max(self.most_held, self.taken - self.given_back)
        try:
            yield
        finally:
            with self._lock:
                self.given_back += 1


def destination(url: str, slots: CountingSlots | None = None, **settings: Any
                ) -> WebhookDestination:
    config = WebhookConfig.model_validate({"plugin": "webhook", "url": url, **settings})
    context = ConnectorContext(name="hook", data_dir=Path("."), request_slot=slots or CountingSlots())
    return WebhookDestination(config, context)


def items(n: int) -> list[DeliveryItem]:
    return [
        DeliveryItem(
            delivery_id=f"d{i}", idempotency_key=f"key-{i}",
            lead=Lead(id=f"lead{i}", source="site_form", channel="form",
                      received_at=datetime(2026, 11, 23, tzinfo=UTC),
                      contact=Contact(phones=[f"+7916000{i:04d}"])),
        )
        for i in range(n)
    ]


def slow(delay_s: float, status: int = 200, **headers: str) -> Policy:
    return lambda lead, _: Answer(status, delay_s, headers, {"id": f"ext-{lead['id']}"})


# ---------------------------------------------------------------- settings


def test_the_default_has_no_fixed_rate_and_a_batch_of_50() -> None:
    dest = destination("http://127.0.0.1:9/hook")
    try:
        limits = dest.effective_limits()
        assert limits.requests_per_second is None
        assert limits.batch_size == 50
        assert dest.counts_own_requests
        assert dest.config.max_in_flight == 32 and dest.window.limit == START_WINDOW
    finally:
        dest.close()


def test_a_configured_rate_is_the_limit_and_rate_limit_per_s_lowers_it() -> None:
    dest = destination("http://127.0.0.1:9/hook", requests_per_second=20)
    lowered = destination("http://127.0.0.1:9/hook", requests_per_second=20, rate_limit_per_s=2)
    admin_only = destination("http://127.0.0.1:9/hook", rate_limit_per_s=5, timeout_s=4)
    try:
        assert dest.effective_limits().requests_per_second == 20
        assert lowered.effective_limits().requests_per_second == 2
        # a throttled batch fits in half of the time one call has
        assert lowered.effective_limits().batch_size == 10
        assert admin_only.effective_limits().requests_per_second == 5
        assert admin_only.effective_limits().batch_size == 10
    finally:
        for d in (dest, lowered, admin_only):
            d.close()


# ---------------------------------------------------------------- one batch


def test_a_batch_of_50_goes_out_concurrently_with_one_outcome_per_lead(receiver: Receiver) -> None:
    receiver.policy = slow(0.1)
    dest = destination(receiver.url)
    batch = items(50)
    try:
        outcomes = dest.deliver(batch)
    finally:
        dest.close()
    assert [o.delivery_id for o in outcomes] == [i.delivery_id for i in batch]
    assert [o.error for o in outcomes] == [None] * 50
    assert [o.external_id for o in outcomes] == [f"ext-lead{i}" for i in range(50)]
    assert receiver.max_in_flight > 1
    assert receiver.max_in_flight <= 32
    got = Counter(h["webhook-id"] for h, _, _ in receiver.received)
    assert got == Counter(i.idempotency_key for i in batch)
    assert all(h["idempotency-key"] == h["webhook-id"] for h, _, _ in receiver.received)


def test_a_500_fails_only_its_lead(receiver: Receiver) -> None:
    receiver.policy = lambda lead, _: (
        Answer(500) if lead["id"] == "lead3" else Answer(body={"id": f"ext-{lead['id']}"})
    )
    dest = destination(receiver.url)
    try:
        outcomes = dest.deliver(items(10))
    finally:
        dest.close()
    failed = {o.delivery_id: o.error for o in outcomes if o.error is not None}
    assert list(failed) == ["d3"]
    assert isinstance(failed["d3"], RetryableError) and failed["d3"].uncertain
    assert [o.external_id for o in outcomes if o.error is None] == [
        f"ext-lead{i}" for i in range(10) if i != 3
    ]


def test_429_rate_limits_its_lead_and_halves_the_window(receiver: Receiver) -> None:
    dest = destination(receiver.url)
    try:
        # every request of the first round is answered 429 (they are all in flight when
        # the first answer comes): one overload, one halving
        receiver.policy = slow(0.2, 429, **{"Retry-After": "0"})
        outcomes = dest.deliver(items(START_WINDOW))
        assert all(isinstance(o.error, RateLimited) and o.error.retry_after == 0.0 for o in outcomes)
        assert dest.window.limit == START_WINDOW // 2

        receiver.reset_counts()
        receiver.policy = slow(0.2)
        outcomes = dest.deliver(items(START_WINDOW))
        assert [o.error for o in outcomes] == [None] * START_WINDOW
        # a fresh destination sends all 16 at once (the test above); now fewer go at once
        assert 1 < receiver.max_in_flight < START_WINDOW
    finally:
        dest.close()


def test_429_with_retry_after_holds_the_requests_that_follow(receiver: Receiver) -> None:
    receiver.policy = lambda lead, _: (
        Answer(429, 0.1, {"Retry-After": "30"}) if lead["id"] == "lead1"
        else Answer(200, 0.1, body={"id": f"ext-{lead['id']}"})
    )
    dest = destination(receiver.url)
    try:
        first = dest.deliver(items(3))
        assert [o.error is None for o in first] == [True, False, True]
        limited = first[1].error
        assert isinstance(limited, RateLimited) and limited.retry_after == 30.0
        sent = len(receiver.received)
        # the receiver asked for 30 s, longer than a batch's time: nothing more goes now
        later = dest.deliver(items(2))
        assert all(isinstance(o.error, RateLimited) and o.error.retry_after for o in later)
        assert len(receiver.received) == sent == 3
    finally:
        dest.close()


def test_a_rate_slot_is_held_by_each_request_until_its_answer(receiver: Receiver) -> None:
    receiver.policy = slow(0.1)
    slots = CountingSlots()
    dest = destination(receiver.url, slots, requests_per_second=20)
    try:
        outcomes = dest.deliver(items(10))
    finally:
        dest.close()
    assert [o.error for o in outcomes] == [None] * 10
    assert slots.taken == slots.given_back == 10 == len(receiver.received)
    assert slots.most_held > 1  # held while in flight, and several were in flight at once


def test_errors_map_per_lead(receiver: Receiver) -> None:
    statuses = {"lead0": 400, "lead1": 409, "lead2": 503, "lead3": 200}
    receiver.policy = lambda lead, _: Answer(statuses[lead["id"]], body={"id": "x"})
    dest = destination(receiver.url)
    try:
        outcomes = dest.deliver(items(4))
    finally:
        dest.close()
    errors = [o.error for o in outcomes]
    assert isinstance(errors[0], PermanentError)
    assert isinstance(errors[1], RetryableError) and errors[1].uncertain
    assert isinstance(errors[2], RetryableError) and errors[2].uncertain
    assert errors[3] is None and outcomes[3].external_id == "x"


def test_a_refused_connection_is_not_uncertain_and_a_timeout_is() -> None:
    with Receiver() as gone:
        url = gone.url
    refused = destination(url)  # nothing listens there any more
    try:
        [outcome] = refused.deliver(items(1))
        assert isinstance(outcome.error, RetryableError) and not outcome.error.uncertain
    finally:
        refused.close()
    with Receiver(slow(1.0)) as hanging:
        dest = destination(hanging.url, timeout_s=0.2)
        try:
            [outcome] = dest.deliver(items(1))
            assert isinstance(outcome.error, RetryableError) and outcome.error.uncertain
            assert dest.window.limit == START_WINDOW // 2
        finally:
            dest.close()


def test_a_batch_ends_in_its_time_and_what_was_not_sent_says_so(receiver: Receiver) -> None:
    """One request at a time to a receiver that takes 0.3 s, with a 0.5 s timeout: the
    batch stops starting requests once its time is up, so it ends inside the lease."""
    receiver.policy = slow(0.3)
    dest = destination(receiver.url, timeout_s=0.5, max_in_flight=1)
    try:
        outcomes = dest.deliver(items(5))
    finally:
        dest.close()
    sent = [o for o in outcomes if o.error is None]
    unsent = [o.error for o in outcomes if o.error is not None]
    assert sent and unsent
    assert outcomes[:len(sent)] == sent  # in order: the first ones went
    assert all(isinstance(e, RetryableError) and not e.uncertain and "not sent" in str(e)
               for e in unsent)
    assert len(receiver.received) == len(sent)


def test_every_request_is_signed(receiver: Receiver) -> None:
    dest = destination(receiver.url, signing_secret="whsec_c2VjcmV0LWtleS1ieXRlcw==")
    try:
        outcomes = dest.deliver(items(3))
    finally:
        dest.close()
    assert [o.error for o in outcomes] == [None] * 3
    for headers, _, _ in receiver.received:
        verify("whsec_c2VjcmV0LWtleS1ieXRlcw==", headers, headers["x-raw-body"].encode())


# ---------------------------------------------------------------- the window


def test_the_window_grows_halves_once_per_round_and_stays_between_1_and_its_ceiling() -> None:
    window = InFlightWindow(start=4, ceiling=6)
    far = time.monotonic() + 60

    def one(signal: Signal) -> None:
        generation = window.acquire(far)
        assert generation is not None
        window.release(generation, signal)

    for _ in range(5):  # slow start: one per success, up to the ceiling
        one("grow")
    assert window.limit == 6
    round_one = [window.acquire(far) for _ in range(6)]
    assert window.acquire(time.monotonic() + 0.01) is None  # full
    for generation in round_one:  # six failures of one round: one halving
        assert generation is not None
        window.release(generation, "shrink")
    assert window.limit == 3
    for _ in range(3):  # after an overload: about one per window's worth of successes
        one("grow")
    assert window.limit == 3
    one("grow")
    assert window.limit == 4
    for _ in range(5):  # one halving per round, never below 1
        one("shrink")
    assert window.limit == 1


# ---------------------------------------------------------------- through the engine


@pytest.mark.parametrize("rate", ["", "requests_per_second = 400"], ids=["no-rate", "rate"])
def test_200_leads_through_the_engine_reach_the_receiver_exactly_once(
    rate: str, receiver: Receiver, write_config: ConfigWriter, tmp_path: Path,
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every tenth lead's first request is answered 503 (the receiver took nothing): it is
    retried, and in the end each lead was accepted by the receiver exactly once."""
    refused: set[str] = set()
    lock = threading.Lock()

    def policy(lead: dict[str, Any], _: dict[str, str]) -> Answer:
        with lock:
            first_time = lead["id"] not in refused
            if lead["contact"]["phones"][0].endswith("0") and first_time:
                refused.add(lead["id"])
                return Answer(503)
        return Answer(200, 0.01, body={"id": f"ext-{lead['id']}"})

    receiver.policy = policy
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADHUB_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    rt = build_runtime(write_config(f"""
        [hub]
        default_destinations = ["hook"]
        [sources.site_form]
        plugin = "webform"
        [destinations.hook]
        plugin = "webhook"
        url = "{receiver.url}"
        {rate}
    """))
    try:
        lead_ids = [ingest(rt, form(f"name=L{i}&phone=%2B7916100{i:04d}")).lead_ids[0]
                    for i in range(200)]
        while process_received(rt).leads:
            pass
        later = {"now": time.time()}
        for _ in range(20):  # the clock moves on so the retries fall due
            drain(rt, "hook", clock=lambda: later["now"])
            later["now"] += 3600
            with rt.reader.connect() as conn:
                statuses = Counter(conn.execute(select(t.deliveries.c.status)).scalars())
            if statuses == {"delivered": 200}:
                break
        assert statuses == {"delivered": 200}
        accepted = Counter(lead["id"] for _, lead, status in receiver.received if status == 200)
        assert accepted == Counter(lead_ids)
        assert len(refused) == 20
        assert receiver.max_in_flight > 1
    finally:
        rt.close()
