"""The webform source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from dataclasses import replace
from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.webform import WebformSource
from tests.payload_loader import PAYLOADS


class TestWebformKit(SourceKit):
    connector = WebformSource
    settings: ClassVar[dict[str, Any]] = {"token": "kit-form-token"}
    payloads = PAYLOADS / "webform"
    auth_headers = ("x-leadhub-token",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return replace(request, query=(*request.query, ("token", settings["token"])))
