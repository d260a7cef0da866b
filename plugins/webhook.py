"""``webhook`` destination: POST the Lead JSON to a URL, for systems LeadHub has no
plugin for.

Each request carries a Standard Webhooks signature (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``) when ``signing_secret`` is set, and always ``webhook-id`` and
``Idempotency-Key`` equal to the delivery's stable key: a receiver that deduplicates on
it sees a retried delivery as the same message. The receiver is the one that can
deduplicate, so there is no lookup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr

from hub import hookimpl
from hub.connectors import (
    Connector,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
)
from hub.errors import PermanentError, RateLimited, RetryableError
from hub.standard_webhooks import sign


class WebhookConfig(DestinationConfig):
    url: AnyHttpUrl = Field(description="Where each lead is POSTed as JSON.")
    signing_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks secret (whsec_...); signs every request."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    requests_per_second: float = Field(default=10.0, gt=0, description="The receiver's limit.")


def retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class WebhookDestination(Destination[WebhookConfig]):
    """POST each lead as JSON to a URL, signed (Standard Webhooks), with an idempotency key."""

    Config = WebhookConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=10, batch_size=1)

    def __init__(self, config: WebhookConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.client = httpx.Client(timeout=config.timeout_s, follow_redirects=False)

    def effective_limits(self) -> Limits:
        base = Limits(self.config.requests_per_second, 1, 1)
        low = self.config.rate_limit_per_s
        return base if low is None else Limits(min(low, base.requests_per_second), 1, 1)

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        return [self._send(item) for item in items]

    def _send(self, item: DeliveryItem) -> DeliveryOutcome:
        payload = item.lead.to_json_dict()
        if item.duplicate_of_external_id:
            payload["duplicate_of_external_id"] = item.duplicate_of_external_id
        body = json.dumps(payload, ensure_ascii=False)
        headers = {
            "content-type": "application/json",
            "idempotency-key": item.idempotency_key,
            "webhook-id": item.idempotency_key,
            "user-agent": "LeadHub",
        }
        if self.config.signing_secret is not None:
            headers.update(
                sign(self.config.signing_secret.get_secret_value(), item.idempotency_key,
                     datetime.now(UTC), body.encode())
            )
        try:
            r = self.client.post(str(self.config.url), content=body.encode(), headers=headers)
        except httpx.ConnectError as exc:
            raise RetryableError(f"cannot connect: {exc}", uncertain=False) from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}", uncertain=True) from exc
        if r.is_success:
            return DeliveryOutcome(item.delivery_id, external_id=_external_id(r) or item.idempotency_key)
        if r.status_code == 429:
            raise RateLimited("receiver says 429", retry_after_s(r))
        if r.status_code >= 500 or r.status_code in (408, 409, 423, 425):
            raise RetryableError(f"HTTP {r.status_code}", uncertain=True)
        raise PermanentError(f"HTTP {r.status_code}: {r.text[:200]}")

    def close(self) -> None:
        self.client.close()


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
