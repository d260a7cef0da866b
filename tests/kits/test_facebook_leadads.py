"""The facebook_leadads source keeps the source contract (``hub.testing.kits.SourceKit``)."""

from typing import Any, ClassVar

from hub.connectors import InboundRequest
from hub.testing.kits import SourceKit
from plugins.facebook_leadads import FacebookLeadAdsSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class TestFacebookLeadadsKit(SourceKit):
    connector = FacebookLeadAdsSource
    settings: ClassVar[dict[str, Any]] = {
        "verify_token": "kit-verify", "app_secret": "kit-app-secret", "access_token": "kit-access",
        "base_url": "http://127.0.0.1:9/v24.0",  # enrichment runs in a worker: none here
    }
    payloads = PAYLOADS / "facebook_leadads"
    auth_headers = ("x-hub-signature-256",)
    ignored_payloads = ("graph_lead_response",)  # what the fake Graph API serves

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return signing.meta(request, settings)
