"""Capabilities are declared as data, checked when a plugin loads, and read by the engine:
a declaration without its method stops the hub at start naming the plugin, and the drain
looks up uncertain deliveries only the way a destination declares it can."""

from __future__ import annotations

import logging
import time
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import Field

from hub import hookimpl
from hub.connectors import (
    DEFAULT_POLL_INTERVAL_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    Connector,
    ConnectorConfig,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
    PolledMessage,
    PollingSource,
    PollingSourceConfig,
    Source,
)
from hub.engine.drain import Drain, DrainStats
from hub.models import Lead
from hub.plugins import PluginError, discover, make_plugin_manager
from hub.runtime import Runtime, build_runtime
from hub.sdk import Capability, CrmReader
from tests.conftest import ConfigWriter


def registering(cls: type[Connector[Any]]) -> types.ModuleType:
    module = types.ModuleType(f"leadhub_test_{cls.__name__.lower()}")

    @hookimpl
    def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
        register(cls)

    module.leadhub_register_connectors = leadhub_register_connectors  # type: ignore[attr-defined]
    return module


# ---------------------------------------------------------------- checked at load


class HalfBatch(Destination[DestinationConfig]):
    """Declares batch look-ups and forgot to write them."""

    capabilities = frozenset({Capability.LOOKUP, Capability.BATCH_LOOKUP})

    def lookup(self, item: DeliveryItem) -> str | None:
        return None


class PollsNothing(Source[PollingSourceConfig]):
    """A webhook source claiming to be polled."""

    capabilities = frozenset({Capability.POLLING})


class ReadsAsDestination(Destination[DestinationConfig]):
    capabilities = frozenset({Capability.CRM_READER})


class ForgetsItPolls(PollingSource[PollingSourceConfig]):
    capabilities = frozenset({Capability.ENRICHMENT})

    def poll(self, limit: int, max_bytes: int) -> list[PolledMessage]:
        return []

    def ack(self, messages: list[PolledMessage]) -> None:
        return None

    def enrich(self, lead: Lead) -> Lead:
        return lead


class NamesItsCapabilities(Destination[DestinationConfig]):
    capabilities = frozenset({"lookup"})  # type: ignore[arg-type]

    def lookup(self, item: DeliveryItem) -> str | None:
        return None


class ReadsNothing(CrmReader[ConnectorConfig]):
    """A CRM reader without ``won_deals``."""


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (HalfBatch, "HalfBatch declares BATCH_LOOKUP but does not implement lookup_many()"),
        (PollsNothing, "PollsNothing declares POLLING but is not a PollingSource"),
        (ReadsAsDestination, "ReadsAsDestination is a destination and cannot declare CRM_READER"),
        (ForgetsItPolls, "ForgetsItPolls is a PollingSource and must declare POLLING"),
        (NamesItsCapabilities, "must be a frozenset of hub.sdk.Capability"),
        (ReadsNothing, "ReadsNothing declares CRM_READER but does not implement won_deals()"),
    ],
)
def test_a_declaration_the_class_does_not_live_up_to_stops_discovery(
    cls: type[Connector[Any]], message: str,
) -> None:
    pm = make_plugin_manager([("acme", registering(cls))])
    with pytest.raises(PluginError, match=r"^plugin 'acme': ") as caught:
        discover(pm)
    assert message in str(caught.value)


def test_every_first_party_class_declares_what_it_does() -> None:
    infos = discover(make_plugin_manager())
    first_party = [cls for info in infos.values() for cls in info.classes.values()
                   if cls.__module__.startswith("plugins.")]
    assert first_party and not [c.__qualname__ for c in first_party if c.capabilities_inferred]
    assert infos["amocrm"].connector.capabilities == {
        Capability.LOOKUP, Capability.BATCH_LOOKUP, Capability.ANNOTATES_DUPLICATES,
        Capability.COUNTS_OWN_REQUESTS}
    assert infos["imap"].capabilities == ["polling"]
    assert infos["webhook"].capabilities == ["counts_own_requests", "reports"]


class Legacy(Destination[DestinationConfig]):
    """Written before capabilities: the old flag and an overridden ``lookup``."""

    counts_own_requests: ClassVar[bool] = True

    def lookup(self, item: DeliveryItem) -> str | None:
        return None


class LegacyChild(Legacy):
    def lookup_many(self, items: list[DeliveryItem]) -> dict[str, str] | None:
        return None


class DeclaresFlagOff(Destination[DestinationConfig]):
    capabilities = frozenset({Capability.ANNOTATES_DUPLICATES, Capability.COUNTS_OWN_REQUESTS})
    counts_own_requests: ClassVar[bool] = False  # the old flag still switches it off


def test_a_class_that_declares_nothing_gets_what_its_methods_and_flags_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert Legacy.capabilities == {Capability.LOOKUP, Capability.COUNTS_OWN_REQUESTS}
    assert LegacyChild.capabilities == Legacy.capabilities | {Capability.BATCH_LOOKUP}
    assert Legacy.counts_own_requests and not Legacy.annotates_duplicates
    assert DeclaresFlagOff.capabilities == {Capability.ANNOTATES_DUPLICATES}
    assert DeclaresFlagOff.annotates_duplicates and not DeclaresFlagOff.counts_own_requests
    with caplog.at_level(logging.WARNING, logger="leadhub.plugins"):
        discover(make_plugin_manager([("old_crm", registering(Legacy))]))
    [record] = caplog.records
    assert "plugin 'old_crm': Legacy declares no capabilities" in record.getMessage()
    assert "frozenset({Capability.COUNTS_OWN_REQUESTS, Capability.LOOKUP})" in record.getMessage()


# ---------------------------------------------------------------- typed settings


class TimedConfig(DestinationConfig):
    timeout_s: float | None = Field(default=None, gt=0)


class Timed(Destination[TimedConfig]):
    Config = TimedConfig


class Bare(Destination[ConnectorConfig]):
    """Its ``Config`` has neither ``timeout_s`` nor ``rate_limit_per_s``."""

    Config = ConnectorConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=5)


class Polled(PollingSource[PollingSourceConfig]):
    def poll(self, limit: int, max_bytes: int) -> list[PolledMessage]:
        return []

    def ack(self, messages: list[PolledMessage]) -> None:
        return None


def context() -> ConnectorContext:
    return ConnectorContext(name="x", data_dir=Path("."))


def test_request_timeout_and_poll_interval_come_from_the_declared_settings() -> None:
    assert Timed(TimedConfig(plugin="t", timeout_s=2.5), context()).request_timeout_s == 2.5
    assert Timed(TimedConfig(plugin="t"), context()).request_timeout_s == DEFAULT_REQUEST_TIMEOUT_S
    bare = Bare(ConnectorConfig(plugin="b"), context())
    assert bare.request_timeout_s == DEFAULT_REQUEST_TIMEOUT_S
    assert bare.effective_limits() == Limits(requests_per_second=5)
    lowered = Timed(TimedConfig(plugin="t", rate_limit_per_s=2), context()).effective_limits()
    assert lowered.requests_per_second == 2
    assert Polled(PollingSourceConfig(plugin="p", poll_interval_s=5), context()).poll_interval_s == 5
    assert Polled(PollingSourceConfig(plugin="p"), context()).poll_interval_s == DEFAULT_POLL_INTERVAL_S


# ---------------------------------------------------------------- read by the drain


class Probe(Destination[DestinationConfig]):
    """Records which look-up the drain called; finds every item (``ext-<delivery id>``)."""

    calls: ClassVar[list[str]] = []
    limits: ClassVar[Limits] = Limits(requests_per_second=100, batch_size=10)
    capabilities = frozenset({Capability.LOOKUP})

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        raise AssertionError("not called here")

    def lookup(self, item: DeliveryItem) -> str | None:
        Probe.calls.append(f"lookup {item.delivery_id}")
        return f"ext-{item.delivery_id}"

    def lookup_many(self, items: list[DeliveryItem]) -> dict[str, str] | None:
        Probe.calls.append("lookup_many " + ",".join(i.delivery_id for i in items))
        return {i.delivery_id: f"ext-{i.delivery_id}" for i in items}


class BatchProbe(Probe):
    capabilities = frozenset({Capability.LOOKUP, Capability.BATCH_LOOKUP})


class BlindProbe(Probe):
    """Has the methods, declares neither: cannot look anything up as far as the hub knows."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset()


PROBES = {"probe": Probe, "batch_probe": BatchProbe, "blind_probe": BlindProbe}


@pytest.fixture
def rt(write_config: ConfigWriter, tmp_path: Path, redis_url: str,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    tables = "".join(f'[destinations.{n}]\nplugin = "{n}"\n' for n in PROBES)
    runtime = build_runtime(write_config(tables),
                            extra_plugins=[(n, registering(c)) for n, c in PROBES.items()])
    yield runtime
    runtime.close()


def uncertain(n: int) -> DeliveryItem:
    lead = Lead(id=f"01L{n}", source="site_form", channel="form", received_at=datetime.now(UTC))
    return DeliveryItem(delivery_id=f"d{n}", idempotency_key=f"k{n}", lead=lead, uncertain=True,
                        previous_attempt_id="a1")


@pytest.mark.parametrize(
    ("name", "calls", "found"),
    [
        ("probe", ["lookup d1", "lookup d2"], {"d1", "d2"}),  # has lookup_many, did not declare it
        ("batch_probe", ["lookup_many d1,d2"], {"d1", "d2"}),
        ("blind_probe", [], set()),
    ],
)
def test_the_drain_looks_up_only_as_declared(
    rt: Runtime, name: str, calls: list[str], found: set[str],
) -> None:
    dest = rt.destination(name)
    assert dest is not None
    Probe.calls.clear()
    drain = Drain(rt, dest, name, time.time, DrainStats())
    assert drain.timeout == DEFAULT_REQUEST_TIMEOUT_S
    got, failed = drain.look_up([uncertain(1), uncertain(2)])
    assert Probe.calls == calls
    assert set(got) == found and not failed

