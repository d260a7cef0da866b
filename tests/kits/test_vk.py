"""The vk source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.vk import VKSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestVkKit(SourceKit):
    connector = VKSource
    settings: ClassVar[dict[str, Any]] = {"confirmation_code": "abc123", "secret": "kit-vk-secret"}
    payloads = PAYLOADS / "vk"
    auth_headers = ()
    open_payloads = ("confirmation",)  # plugins/vk.py: the code it returns proves nothing

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.vk(request, settings)

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        return signing.vk_unsigned(super().unsigned(request))
