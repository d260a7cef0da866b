"""The destination kit: the delivery contract, run by the hub's own engine against the
plugin's fake server over real HTTP.

Subclass ``DestinationKit`` and say how to start the fake and configure the instance::

    class TestMyCRM(DestinationKit):
        connector = MyCRMDestination

        def make_fake(self):                        # a FakeServer of the remote API
            return FakeMyCRM(api_key="kit-key")

        def settings_for(self, base_url):           # one instance's plugins.toml table
            return {"base_url": base_url, "api_key": "kit-key", "timeout_s": 1}

        def created(self, hub):                     # records the remote holds now
            return len(hub.fake.deals)

Leads enter through a webform source of the same hub and are delivered by the engine's
steps (``process_received``, ``drain``) with a clock the kit moves, so the kit checks
what the engine does with the connector's answers:

- a batch is delivered, one external record per lead;
- a batch whose request was applied by the remote but answered 500, or timed out
  (the fake's "after" faults), creates nothing twice when retried;
- the declared ``Limits`` hold: requests per second measured at the fake, no 429;
- a 4xx is permanent (the delivery is dead and not retried); a 5xx is retried.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from hub.connectors import Destination
from hub.engine.drain import drain
from hub.engine.process import process_received
from hub.store import tables as t
from hub.testing.fakeserver import FakeServer
from hub.testing.kits.common import ConnectorKit, KitHub, running_kit_hub, toml_table

_phones = itertools.count(1)
DAY_S = 86400.0


@dataclass
class DestinationHub(KitHub):
    """The kit's hub, the fake remote (None for a destination without one) and its data dir."""

    fake: FakeServer | None = None
    data_dir: Path = Path()


class DestinationKit(ConnectorKit):
    """Base class of a destination's contract tests; see the module docstring."""

    connector: ClassVar[type[Destination[Any]]]
    section: ClassVar[str] = "destinations"
    #: Requests that create or change records at the remote (where the kit injects faults).
    write_methods: ClassVar[tuple[str, ...]] = ("POST", "PUT", "PATCH")
    write_paths: ClassVar[tuple[str, ...]] = ()
    #: How long a "timeout" fault holds the request; more than the instance's ``timeout_s``.
    hang_s: ClassVar[float] = 3.0

    _fake: ClassVar[FakeServer | None] = None

    # ------------------------------------------------------------ what a subclass adapts

    def make_fake(self) -> FakeServer | None:
        """The remote API's fake (not started); None for a destination without a remote."""
        return None

    def settings_for(self, base_url: str) -> dict[str, Any]:
        """The instance's settings for a remote at ``base_url``."""
        return dict(self.settings)

    def created(self, hub: DestinationHub) -> int:
        """How many records the remote holds now (the kit compares before and after)."""
        raise NotImplementedError

    # ------------------------------------------------------------ helpers

    def kit_settings(self) -> dict[str, Any]:
        fake = type(self)._fake
        return self.settings_for(fake.base_url if fake is not None else "http://127.0.0.1:9")

    @pytest.fixture(scope="class")
    @classmethod
    def kit_hub(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DestinationHub]:
        kit = cls()
        fake = kit.make_fake()
        if fake is not None:
            fake.start()
        cls._fake = fake
        try:
            config = (toml_table("sources.kit_in", {"plugin": "webform"}) + "\n"
                      + toml_table("destinations.kit", kit.table()))
            workdir = tmp_path_factory.mktemp("destination-kit")
            with running_kit_hub(config, workdir, kit.extra_plugins(),
                                 {"default_destinations": ["kit"]}) as hub:
                yield DestinationHub(hub.rt, hub.client, fake, workdir / "data")
            if fake is not None:
                fake.assert_clean()
        finally:
            cls._fake = None
            if fake is not None:
                fake.stop()

    @staticmethod
    def post_leads(hub: DestinationHub, n: int) -> list[str]:
        """``n`` leads with phones of their own, through the webform source."""
        ids = []
        for _ in range(n):
            phone = f"+7916{next(_phones):07d}"
            r = hub.client.post("/hooks/kit_in", content=json.dumps({"name": "Kit", "phone": phone}),
                                headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        return ids

    @staticmethod
    def run_engine(hub: DestinationHub, at: float | None = None) -> None:
        """Route what came in, then drain the destination as a worker would at time ``at``."""
        while process_received(hub.rt).leads:
            pass
        now = time.time() if at is None else at
        drain(hub.rt, "kit", clock=lambda: now)

    @staticmethod
    def deliveries(hub: DestinationHub, lead_ids: list[str]) -> list[Any]:
        with hub.rt.db.connect() as conn:
            rows = conn.execute(select(t.deliveries).where(t.deliveries.c.lead_id.in_(lead_ids)))
            return list(rows)

    def need_fake(self, hub: DestinationHub) -> FakeServer:
        if hub.fake is None:
            pytest.skip(f"{self.kit_plugin_id()} has no remote to fail")
        return hub.fake

    def faults(self, fake: FakeServer, kind: str, when: str) -> Any:
        return fake.faults(1.0, (kind,), after_ratio=1.0 if when == "after" else 0.0,
                           hang_s=self.hang_s, methods=self.write_methods, paths=self.write_paths)

    # ------------------------------------------------------------ the tests

    def test_a_batch_is_delivered(self, kit_hub: DestinationHub) -> None:
        size = min(3, self.connector.limits.batch_size) + 1
        before = self.created(kit_hub)
        ids = self.post_leads(kit_hub, size)
        self.run_engine(kit_hub)
        rows = self.deliveries(kit_hub, ids)
        assert sorted(r.status for r in rows) == ["delivered"] * size, [r.last_error for r in rows]
        assert all(r.external_id for r in rows)
        assert self.created(kit_hub) == before + size

    @pytest.mark.parametrize("kind", ["500", "timeout"])
    def test_a_retry_after_an_uncertain_failure_creates_nothing_twice(
        self, kit_hub: DestinationHub, kind: str
    ) -> None:
        fake = self.need_fake(kit_hub)
        before = self.created(kit_hub)
        ids = self.post_leads(kit_hub, 2)
        with self.faults(fake, kind, "after"):  # the remote applies it, the answer is lost
            self.run_engine(kit_hub)
        rows = self.deliveries(kit_hub, ids)
        assert all(r.status == "failed" for r in rows), [(r.status, r.last_error) for r in rows]
        assert self.created(kit_hub) == before + 2, "the faulted attempt did not reach the fake"
        self.run_engine(kit_hub, at=time.time() + DAY_S / 4)
        rows = self.deliveries(kit_hub, ids)
        assert all(r.status == "delivered" for r in rows), [(r.status, r.last_error) for r in rows]
        assert self.created(kit_hub) == before + 2, "the retry created records twice"

    def test_declared_limits_are_respected(self, kit_hub: DestinationHub) -> None:
        fake = self.need_fake(kit_hub)
        dest = kit_hub.rt.destination("kit")
        assert dest is not None
        limits = dest.effective_limits()
        if limits.requests_per_second is None:
            pytest.skip(f"{self.kit_plugin_id()} declares no request rate")
        rate = limits.requests_per_second
        requests = math.ceil(rate) + limits.burst + 2  # more than one second's worth
        ids = self.post_leads(kit_hub, requests * limits.batch_size)
        fake.clear_records()
        self.run_engine(kit_hub)
        times = sorted(r.time for r in fake.requests)
        assert len(times) >= requests, len(times)
        busiest = max(sum(1 for u in times if s <= u < s + 1.0) for s in times)
        assert busiest <= math.floor(rate) + limits.burst, (busiest, rate, limits.burst)
        assert fake.answered(429) == 0, "the fake answered 429"
        rows = self.deliveries(kit_hub, ids)
        assert all(r.status == "delivered" for r in rows), {(r.status, r.last_error) for r in rows}

    def test_a_4xx_is_permanent(self, kit_hub: DestinationHub) -> None:
        fake = self.need_fake(kit_hub)
        before = self.created(kit_hub)
        [lead] = self.post_leads(kit_hub, 1)
        with self.faults(fake, "400", "before"):
            self.run_engine(kit_hub)
        [row] = self.deliveries(kit_hub, [lead])
        assert (row.status, row.attempts) == ("dead", 1), (row.status, row.last_error)
        sent = len(fake.requests)
        self.run_engine(kit_hub, at=time.time() + DAY_S)
        assert len(fake.requests) == sent, "a dead delivery was tried again"
        assert self.created(kit_hub) == before

    def test_a_5xx_is_retried(self, kit_hub: DestinationHub) -> None:
        fake = self.need_fake(kit_hub)
        before = self.created(kit_hub)
        [lead] = self.post_leads(kit_hub, 1)
        with self.faults(fake, "503", "before"):
            self.run_engine(kit_hub)
        [row] = self.deliveries(kit_hub, [lead])
        assert row.status == "failed", (row.status, row.last_error)
        self.run_engine(kit_hub, at=time.time() + DAY_S / 4)
        [row] = self.deliveries(kit_hub, [lead])
        assert row.status == "delivered", (row.status, row.last_error)
        assert self.created(kit_hub) == before + 1
