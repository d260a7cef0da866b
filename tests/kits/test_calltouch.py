"""The calltouch source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.calltouch import CalltouchSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestCalltouchKit(SourceKit):
    connector = CalltouchSource
    settings: ClassVar[dict[str, Any]] = {"token": "kit-token"}
    payloads = PAYLOADS / "calltouch"
    auth_headers = ("x-leadhub-token",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.token_query(request, settings)
