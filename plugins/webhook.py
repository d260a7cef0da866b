"""``webhook`` destination: POST the Lead JSON to a URL, for systems LeadHub has no
plugin for.

Each request carries a Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) when ``signing_secret`` is set, and always ``webhook-id`` and
``Idempotency-Key`` equal to the delivery's stable key: a receiver that deduplicates on
it sees a retried delivery as the same message. The receiver is the one that can
deduplicate, so there is no lookup.

One lead is one request, but the engine leases ``BATCH_SIZE`` leads at a time and
``deliver`` sends them concurrently: one lead per lease capped a worker at about 9
leads/s and spent most of a core on per-lead leases and commits (issue 7). A receiver
documents no rate, so by default there is none; the hub slows down when the receiver
says it is struggling instead (``InFlightWindow``). An admin who knows a rate sets
``requests_per_second``; every request then holds a slot of the limiter shared by all
workers (``context.request_slot()``) from when it leaves until it is answered.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from hub.sdk import (
    ANY_STATUS,
    Capability,
    Connector,
    ConnectorClient,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
    RateLimited,
    RetryableError,
    holds_key,
    hookimpl,
    sign_standard_webhook,
    url_secrets,
)

log = logging.getLogger("leadhub.webhook")

BATCH_SIZE = 50  # leads per lease: one lease and one record transaction per 50 leads
START_WINDOW = 16  # requests in flight before the receiver has shown what it takes
GRACE_S = 2.0  # a request started late in a batch still gets this long (see ``deliver``)
MAX_HOLD_S = 60.0  # the longest a 429 holds this process back (the engine's cap too)

Signal = Literal["grow", "shrink", "keep"]


class WebhookConfig(DestinationConfig):
    url: AnyHttpUrl = Field(description="Where each lead is POSTed as JSON.")
    signing_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret (whsec_...); signs every request."
    )
    timeout_s: float = Field(
        default=10.0, gt=0, le=120,
        description="HTTP timeout of one request, in seconds; one batch of leads also ends "
                    "within it (plus 2 s), so a slow receiver gets the rest later.",
    )
    requests_per_second: float | None = Field(
        default=None, gt=0,
        description="The receiver's documented rate limit, never exceeded across all workers. "
                    "Unset: no fixed rate; the hub sends fewer requests at once on 429 and 5xx.",
    )
    max_in_flight: int = Field(
        default=32, ge=1, le=256,
        description="Most requests in flight at once from one worker process; the hub starts "
                    "at 16 (or this, if lower) and adapts between 1 and this to the receiver.",
    )

    _key_after_prefix = field_validator("signing_secret")(holds_key)


class InFlightWindow:
    """How many requests may be in flight to one receiver: AIMD, shared by threads.

    It starts at ``start`` and grows by one per success ("slow start") until the receiver
    first struggles; from then on by one per window's worth of successes, since +1 per
    success doubles the window every round trip and would undo a halving within one.
    A 429, 408, 5xx, timeout or broken connection halves it (never below 1), once per
    round: requests that were already in flight when it halved, and fail the same way,
    are the same overload and do not halve it again. ``hold`` stops new requests for a
    while (a 429's ``Retry-After``).
    """

    def __init__(self, start: int, ceiling: int) -> None:
        self.ceiling = ceiling
        self._limit = float(max(1, min(start, ceiling)))
        self._threshold = float(ceiling)  # below it, slow start
        self._in_flight = 0
        self._generation = 0  # bumped by each halving
        self._hold_until = 0.0
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        with self._cond:
            return int(self._limit)

    def held_for(self) -> float:
        """Seconds left of a hold; 0.0 when there is none."""
        with self._cond:
            return max(0.0, self._hold_until - time.monotonic())

    def acquire(self, end: float) -> int | None:
        """Wait for a place in the window; its generation (for ``release``), or None when
        none frees (or a hold lasts) until ``end`` (``time.monotonic()``)."""
        with self._cond:
            while True:
                now = time.monotonic()
                if now >= end or self._hold_until >= end:
                    return None
                if now < self._hold_until:
                    self._cond.wait(self._hold_until - now)
                elif self._in_flight < int(self._limit):
                    self._in_flight += 1
                    return self._generation
                else:
                    self._cond.wait(end - now)

    def release(self, generation: int, signal: Signal) -> None:
        """Give the place back, with what the request said about the receiver."""
        with self._cond:
            self._in_flight -= 1
            if signal == "grow":
                step = 1.0 if self._limit < self._threshold else 1.0 / self._limit
                self._limit = min(float(self.ceiling), self._limit + step)
            elif signal == "shrink" and generation == self._generation:
                self._limit = max(1.0, self._limit / 2)
                self._threshold = self._limit
                self._generation += 1
            self._cond.notify_all()

    def hold(self, seconds: float) -> None:
        """Start no request for ``seconds``."""
        with self._cond:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)
            self._cond.notify_all()


class WebhookDestination(Destination[WebhookConfig]):
    """POST each lead as JSON to a URL, signed (Standard Webhooks), with an idempotency key."""

    Config = WebhookConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=None, batch_size=BATCH_SIZE)
    #: one request per lead, concurrently; no lookup: the receiver deduplicates on the key
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.COUNTS_OWN_REQUESTS, Capability.REPORTS})

    def __init__(self, config: WebhookConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        size = config.max_in_flight
        # the URL is absolute; each request's slot is taken in ``deliver`` (in order), so
        # the client takes none itself (``slot=False``)
        # the URL is the receiver's: a key in its path, query or credentials stays out of
        # error messages (last_error, logs)
        self.client = ConnectorClient(config, context, base_url="", timeout_s=config.timeout_s,
                                      max_connections=size, secrets=url_secrets(str(config.url)))
        self.window = InFlightWindow(START_WINDOW, size)
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"webhook-{context.name}")

    def effective_limits(self) -> Limits:
        """No fixed rate unless ``requests_per_second`` or ``rate_limit_per_s`` sets one.

        With a rate, a batch holds no more leads than the rate lets go in half of
        ``timeout_s``, so a throttled batch still ends within its time (see ``deliver``).
        """
        rates = [r for r in (self.config.requests_per_second, self.config.rate_limit_per_s) if r]
        if not rates:
            return Limits(None, BATCH_SIZE, 1)
        rate = min(rates)
        return Limits(rate, max(1, min(BATCH_SIZE, int(rate * self.config.timeout_s / 2))), 1)

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        """POST every item, up to the window's number at once; one outcome per item, in order.

        A request's failure is that item's outcome, never the batch's. The batch ends
        within ``timeout_s`` + ``GRACE_S`` of the call, inside the lease the engine took
        for it (``timeout_s`` + 5 s): no request starts after ``timeout_s``, and one
        started late gets only what is left of that (but at least ``GRACE_S``). Items
        not started by then, or held back by a 429, fail without being sent.
        """
        end = time.monotonic() + self.config.timeout_s
        started: list[Future[DeliveryOutcome] | DeliveryOutcome] = []
        for n, item in enumerate(items, start=1):
            generation = self.window.acquire(end)
            if generation is None:
                started.append(DeliveryOutcome(item.delivery_id, error=self._not_sent()))
                continue
            # the rate slot is taken here, in order, and given back by the thread that
            # gets the answer: the shared limiter counts the request until it is answered
            slot = ExitStack()
            try:
                slot.enter_context(self.context.request_slot())
            except Exception as exc:  # the shared limiter is unreachable: this one is not sent
                self.window.release(generation, "keep")
                log.warning("%s: rate limiter failed: %s", self.name, exc)
                error = RetryableError(f"not sent: rate limiter failed: {exc}", uncertain=False)
                started.append(DeliveryOutcome(item.delivery_id, error=error))
                continue
            if time.monotonic() >= end:  # the limiter held us past the batch's time
                _give_back(slot)
                self.window.release(generation, "keep")
                started.append(DeliveryOutcome(item.delivery_id, error=self._not_sent()))
                continue
            if n == len(items):  # the last one on this thread, which would only wait for it
                started.append(self._send(item, generation, slot, end))
            else:
                started.append(self._pool.submit(self._send, item, generation, slot, end))
        return [s if isinstance(s, DeliveryOutcome) else s.result() for s in started]

    def send_report(self, report: dict[str, Any], key: str) -> None:
        """POST a reconcile run's report (``{"type": "reconciliation", "run", "flags"}``)
        to the same URL, with the same headers and signature as a lead; ``key`` (the run's
        id) is its ``webhook-id``. Raises ``hub.errors`` when it is not taken."""
        body = json.dumps(report, ensure_ascii=False, default=str).encode()
        headers = {"content-type": "application/json", "idempotency-key": key, "webhook-id": key,
                   "user-agent": "LeadHub"}
        if self.config.signing_secret is not None:
            headers.update(sign_standard_webhook(self.config.signing_secret.get_secret_value(),
                                                 key, datetime.now(UTC), body))
        self.client.post(str(self.config.url), content=body, headers=headers)

    def _not_sent(self) -> RetryableError:
        held = self.window.held_for()
        if held > 0:
            return RateLimited("not sent: the receiver asked to wait (429)", held)
        return RetryableError("not sent: the batch ran out of time (slow receiver)", uncertain=False)

    def _send(self, item: DeliveryItem, generation: int, slot: ExitStack, end: float) -> DeliveryOutcome:
        signal: Signal = "keep"
        try:
            outcome, signal = self._post(item, end)
            return outcome
        finally:
            _give_back(slot)
            self.window.release(generation, signal)

    def _post(self, item: DeliveryItem, end: float) -> tuple[DeliveryOutcome, Signal]:
        payload = item.lead.to_json_dict()
        if item.duplicate_of_external_id:
            payload["duplicate_of_external_id"] = item.duplicate_of_external_id
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "content-type": "application/json",
            "idempotency-key": item.idempotency_key,
            "webhook-id": item.idempotency_key,
            "user-agent": "LeadHub",
        }
        if self.config.signing_secret is not None:
            headers.update(
                sign_standard_webhook(self.config.signing_secret.get_secret_value(),
                                      item.idempotency_key, datetime.now(UTC), body)
            )
        timeout = min(self.config.timeout_s, max(GRACE_S, end + GRACE_S - time.monotonic()))
        failed = _failed(item)
        try:
            r = self.client.post(str(self.config.url), content=body, headers=headers,
                                 timeout=timeout, accept=ANY_STATUS, slot=False)
        except RetryableError as exc:  # no answer: not sent (certain), or lost on the way
            # a timeout cut short by the batch's time, not the receiver's slowness: no signal
            cut = (exc.uncertain and isinstance(exc.__cause__, httpx.TimeoutException)
                   and timeout < self.config.timeout_s)
            return failed(exc), "keep" if cut else "shrink"
        error = self.client.error_for(r)
        if error is None:
            external_id = _external_id(r) or item.idempotency_key
            return DeliveryOutcome(item.delivery_id, external_id=external_id), "grow"
        if isinstance(error, RateLimited):
            wait = error.retry_after
            self.window.hold(min(1.0 if wait is None else wait, MAX_HOLD_S))
            return failed(error), "shrink"
        if r.status_code >= 500 or r.status_code == 408:
            return failed(error), "shrink"
        if r.status_code in (409, 423, 425):  # about this request, not the receiver's load
            # a conflict or a lock the receiver may resolve (another delivery of the same
            # key in flight): tried again, not dead
            return failed(RetryableError(str(error), uncertain=True)), "keep"
        return failed(error), "keep"

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()


def _give_back(slot: ExitStack) -> None:
    """Tell the limiter the request was answered; if it cannot be told, its entry expires."""
    try:
        slot.close()
    except Exception as exc:
        log.warning("rate limiter: could not end a request slot: %s", exc)


def _failed(item: DeliveryItem) -> Callable[[Exception], DeliveryOutcome]:
    return lambda error: DeliveryOutcome(item.delivery_id, error=error)


def _external_id(r: httpx.Response) -> str | None:
    try:
        data = r.json()
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str | int):
        return str(data["id"])
    return None


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(WebhookDestination)
