"""The telegram source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.telegram import TelegramSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestTelegramKit(SourceKit):
    connector = TelegramSource
    settings: ClassVar[dict[str, Any]] = {"secret_token": "kit-telegram-token"}
    payloads = PAYLOADS / "telegram"
    auth_headers = ("x-telegram-bot-api-secret-token",)

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.header("x-telegram-bot-api-secret-token", "secret_token")(request, settings)
