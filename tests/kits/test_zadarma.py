"""The zadarma source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.zadarma import ZadarmaSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestZadarmaKit(SourceKit):
    connector = ZadarmaSource
    settings: ClassVar[dict[str, Any]] = {"secret": "kit-secret"}
    payloads = PAYLOADS / "zadarma"
    auth_headers = ("signature",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.zadarma(request, settings)
