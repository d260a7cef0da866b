"""The email_raw source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.email_raw import EmailRawSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestEmailRawKit(SourceKit):
    connector = EmailRawSource
    settings: ClassVar[dict[str, Any]] = {"token": "kit-token"}
    payloads = PAYLOADS / "email_raw"
    auth_headers = ("x-leadhub-token",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.token_query(request, settings)
