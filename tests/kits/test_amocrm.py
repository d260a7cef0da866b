"""The amoCRM destination keeps the destination contract against the strict fake amoCRM
(``plugins.amocrm.testing``), run by the engine."""

from typing import Any

from hub.testing.kits import DestinationHub, DestinationKit
from plugins.amocrm import AmoCRMDestination
from plugins.amocrm.testing import FakeAmoCRM

TOKEN = "kit-amo-token"


class TestAmoCRMKit(DestinationKit):
    connector = AmoCRMDestination
    write_paths = ("/api/v4/leads/complex",)

    def make_fake(self) -> FakeAmoCRM:
        return FakeAmoCRM(token=TOKEN)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "access_token": TOKEN, "timeout_s": 1}

    def created(self, hub: DestinationHub) -> int:
        assert isinstance(hub.fake, FakeAmoCRM)
        return len(hub.fake.leads)
