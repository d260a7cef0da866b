"""The reader kit: a CRM or accounting reader pages to the end and honours its dates.

Subclass ``ReaderKit``, say how to put records at the remote, and the kit reads them back
through the reader (``hub.sdk.readers``)::

    class TestMyDeals(ReaderKit):
        connector = MyCrmDeals                   # a CrmReader or an AccountingReader
        page_size = 250                          # records per page of the remote API

        def make_fake(self):
            return FakeMyCrm(token="kit")

        def settings_for(self, base_url):        # its destination's plugins.toml table
            return {"base_url": base_url, "token": "kit"}

        def seed(self, place, dates):            # one won deal (or payment) per date
            return [str(place.fake.add_won_deal(closed_at=d)) for d in dates]

Checks: records spread over more than two pages all come back, once each (the last,
partial page included); only records dated in ``[since, until)`` come back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hub.connectors import Connector, ConnectorContext
from hub.sdk.readers import AccountingReader, CrmReader, Payment, WonDeal
from hub.testing.fakeserver import FakeServer
from hub.testing.kits.common import ConnectorKit

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)


@dataclass
class ReaderPlace:
    """Where the records live: the fake remote (None without one) and the data dir."""

    fake: FakeServer | None
    data_dir: Path


class ReaderKit(ConnectorKit):
    """Base class of a reader's contract tests; see the module docstring."""

    connector: ClassVar[type[Connector[Any]]]
    section: ClassVar[str] = "destinations"  # a reader is configured by its destination's table
    #: Records per page of the remote, so the kit can spread records over several pages.
    page_size: ClassVar[int]

    def make_fake(self) -> FakeServer | None:
        return None

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return dict(self.settings)

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        """Put one record per date at the remote; their external ids, in order."""
        raise NotImplementedError

    def kit_settings(self) -> dict[str, Any]:
        return self.settings_for("http://127.0.0.1:9")

    @pytest.fixture
    def place(self, tmp_path: Path) -> Iterator[ReaderPlace]:
        fake = self.make_fake()
        if fake is None:
            yield ReaderPlace(None, tmp_path)
            return
        with fake:
            yield ReaderPlace(fake, tmp_path)
            fake.assert_clean()

    def read(self, place: ReaderPlace, since: datetime, until: datetime) -> list[list[WonDeal | Payment]]:
        base = place.fake.base_url if place.fake is not None else "http://127.0.0.1:9"
        table = {"plugin": self.kit_plugin_id(), **self.settings_for(base)}
        reader = self.connector(self.connector.Config.model_validate(table),
                                ConnectorContext(name="kit", data_dir=place.data_dir))
        try:
            if isinstance(reader, CrmReader):
                return [list(page) for page in reader.won_deals(since, until)]
            if isinstance(reader, AccountingReader):
                return [list(page) for page in reader.payments(since, until)]
            raise TypeError(f"{self.connector!r} is neither a CrmReader nor an AccountingReader")
        finally:
            reader.close()

    def test_empty_secrets_are_refused_with_section_and_key(self) -> None:
        pytest.skip("a reader has no settings of its own: its destination's kit checks them")

    def test_pages_to_the_end(self, place: ReaderPlace) -> None:
        count = 2 * self.page_size + 1  # two full pages and a partial one
        dates = [SINCE + timedelta(hours=i + 1) for i in range(count)]
        seeded = self.seed(place, dates)
        pages = self.read(place, SINCE, UNTIL)
        ids = [r.external_id for page in pages for r in page]
        assert len([p for p in pages if p]) >= 3, f"{count} records came in {len(pages)} page(s)"
        assert sorted(ids) == sorted(seeded), "records missing or read twice"

    def test_since_and_until_are_honoured(self, place: ReaderPlace) -> None:
        dates = [SINCE - timedelta(days=1), SINCE - timedelta(seconds=1), SINCE,
                 SINCE + timedelta(days=10), UNTIL - timedelta(seconds=1), UNTIL,
                 UNTIL + timedelta(days=1)]
        seeded = self.seed(place, dates)
        inside = [i for i, d in zip(seeded, dates, strict=True) if SINCE <= d < UNTIL]
        read = [r.external_id for page in self.read(place, SINCE, UNTIL) for r in page]
        assert sorted(read) == sorted(inside), f"read {read}, dated inside: {inside}"
