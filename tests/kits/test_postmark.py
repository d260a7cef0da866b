"""The postmark source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.postmark import PostmarkSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestPostmarkKit(SourceKit):
    connector = PostmarkSource
    settings: ClassVar[dict[str, Any]] = {"token": "kit-token"}
    payloads = PAYLOADS / "postmark"
    auth_headers = ("x-leadhub-token", "authorization")

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.token_query(request, settings)
