"""The twilio source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.twilio import TwilioSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestTwilioKit(SourceKit):
    connector = TwilioSource
    settings: ClassVar[dict[str, Any]] = {"auth_token": "kit-auth-token", "public_url": "https://hub.example/hooks/kit"}
    payloads = PAYLOADS / "twilio"
    auth_headers = ("x-twilio-signature",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.twilio(request, settings)
