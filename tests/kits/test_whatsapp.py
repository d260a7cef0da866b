"""The whatsapp source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.whatsapp import WhatsAppSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestWhatsappKit(SourceKit):
    connector = WhatsAppSource
    settings: ClassVar[dict[str, Any]] = {"verify_token": "kit-verify", "app_secret": "kit-app-secret"}
    payloads = PAYLOADS / "whatsapp"
    auth_headers = ("x-hub-signature-256",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.meta(request, settings)
