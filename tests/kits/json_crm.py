"""A small outside plugin, never installed: a destination for a JSON CRM with an API key,
as a third party would write it. The end-to-end fixture test runs it by module path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from hub import hookimpl
from hub.connectors import (
    Connector,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
)
from hub.errors import PermanentError, RetryableError
from hub.testing import FakeServer, RecordedRequest, Response


class JsonCrmConfig(DestinationConfig):
    base_url: str = Field(description="The CRM's API address.")
    api_key: SecretStr = Field(description="Sent as X-Api-Key.")
    timeout_s: float = 5.0


class JsonCrmDestination(Destination[JsonCrmConfig]):
    """Creates one contact per lead; the delivery's idempotency key is the contact's
    external key, so a retry meets 409 "already exists" and takes the existing id."""

    Config = JsonCrmConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=5, batch_size=1)

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        cfg = self.config
        out = []
        for item in items:
            body = {"key": item.idempotency_key, "name": item.lead.contact.name,
                    "phones": item.lead.contact.phones}
            try:
                r = httpx.post(f"{cfg.base_url}/contacts", json=body, timeout=cfg.timeout_s,
                               headers={"X-Api-Key": cfg.api_key.get_secret_value()})
            except httpx.HTTPError as exc:
                raise RetryableError(f"{type(exc).__name__}", uncertain=True) from None
            if r.status_code in (200, 201, 409):  # 409: made by an earlier attempt
                out.append(DeliveryOutcome(item.delivery_id, external_id=str(r.json()["id"])))
            elif r.status_code >= 500 or r.status_code == 429:
                raise RetryableError(f"HTTP {r.status_code}", uncertain=r.status_code != 429)
            else:
                out.append(DeliveryOutcome(item.delivery_id, error=PermanentError(f"HTTP {r.status_code}")))
        return out


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(JsonCrmDestination)


class FakeJsonCrm(FakeServer):
    """The CRM: ``POST /contacts`` with ``X-Api-Key``; 409 with the id for a known key."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.contacts: dict[str, dict[str, Any]] = {}
        self.add_route("POST", "/contacts", self._create)

    def before_route(self, request: RecordedRequest) -> Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return Response.json({"error": "unauthorized"}, 401)
        return None

    def _create(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        data = request.json()
        if data["key"] in self.contacts:
            return Response.json({"id": self.contacts[data["key"]]["id"], "error": "exists"}, 409)
        self.contacts[data["key"]] = {"id": len(self.contacts) + 1, **data}
        return Response.json({"id": len(self.contacts)}, 201)
