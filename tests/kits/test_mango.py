"""The mango source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.mango import MangoSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestMangoKit(SourceKit):
    connector = MangoSource
    settings: ClassVar[dict[str, Any]] = {"api_key": "kit-key", "api_salt": "kit-salt"}
    payloads = PAYLOADS / "mango"
    auth_headers = ()

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.mango(request, settings)
