"""The webhook destination keeps the destination contract against a Standard Webhooks
receiver that deduplicates on ``webhook-id`` as the specification asks receivers to
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
"Idempotency"), run by the engine."""

from typing import Any

from hub.testing import FakeServer, RecordedRequest, Response
from hub.testing.kits import DestinationHub, DestinationKit
from plugins.webhook import WebhookDestination


class Receiver(FakeServer):
    """A receiver that keeps one record per ``webhook-id`` and answers 200 to a repeat."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, Any] = {}
        self.add_route("POST", "/leads", self._receive)

    def _receive(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        key = request.headers.get("webhook-id", "")
        if not key:
            return Response.json({"error": "webhook-id missing"}, 400)
        self.records.setdefault(key, request.json())
        return Response.json({"id": key})


class TestWebhookKit(DestinationKit):
    connector = WebhookDestination
    write_paths = ("/leads",)

    def make_fake(self) -> Receiver:
        return Receiver()

    def settings_for(self, base_url: str) -> dict[str, Any]:
        # a documented rate, so the kit can measure it (unset, the receiver paces the hub)
        return {"url": f"{base_url}/leads", "timeout_s": 1, "requests_per_second": 5,
                "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}

    def created(self, hub: DestinationHub) -> int:
        assert isinstance(hub.fake, Receiver)
        with hub.fake.lock:
            return len(hub.fake.records)
