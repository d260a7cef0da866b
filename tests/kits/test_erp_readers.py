"""The reader kit on the readers of the test plugin ``tests/erp_plugin.py`` (no
first-party plugin has a reader yet): both page to the end and honour their dates."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

from hub.testing.kits import ReaderKit, ReaderPlace
from tests.erp_plugin import ErpDeals, ErpPayments


def seed(place: ReaderPlace, kind: str, dates: list[datetime]) -> list[str]:
    ids = [f"{kind}-{i}-{d.timestamp():.0f}" for i, d in enumerate(dates)]
    with open(place.data_dir / "erp.jsonl", "a", encoding="utf-8") as f:
        for record_id, date in zip(ids, dates, strict=True):
            f.write(json.dumps({"type": kind, "id": record_id, "client": "c1", "amount": 100,
                                "date": date.isoformat(), "pipeline": 1}) + "\n")
    return ids


class TestErpDealsKit(ReaderKit):
    connector = ErpDeals
    plugin_id = "erp"
    settings: ClassVar[dict[str, Any]] = {"page_size": 2}
    page_size = 2

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        return seed(place, "deal", dates)


class TestErpPaymentsKit(ReaderKit):
    connector = ErpPayments
    plugin_id = "erp"
    settings: ClassVar[dict[str, Any]] = {"page_size": 3}
    page_size = 3

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        return seed(place, "payment", dates)
