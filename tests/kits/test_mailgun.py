"""The mailgun source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.mailgun import MailgunSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestMailgunKit(SourceKit):
    connector = MailgunSource
    settings: ClassVar[dict[str, Any]] = {"signing_key": "kit-signing-key"}
    payloads = PAYLOADS / "mailgun"
    auth_headers = ()

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.mailgun(request, settings)
