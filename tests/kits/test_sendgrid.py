"""The sendgrid source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.sendgrid import SendgridSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestSendgridKit(SourceKit):
    connector = SendgridSource
    settings: ClassVar[dict[str, Any]] = {"token": "kit-token"}
    payloads = PAYLOADS / "sendgrid"
    auth_headers = ("x-leadhub-token",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.token_query(request, settings)
