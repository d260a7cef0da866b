"""One plugin, several connector classes: a destination with a CRM reader and an accounting
reader (``tests/erp_plugin.py``), configured once as a ``[destinations.*]`` table that
``[reconcile.*]`` names; and notification hooks that one failing plugin cannot silence."""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hub import hookimpl
from hub.config import build_config
from hub.connectors import Connector, Source
from hub.engine.jobs import drain_job, process_job
from hub.errors import ConfigError
from hub.models import Lead
from hub.plugins import PluginError, discover, make_plugin_manager, notify
from hub.reconcile.frames import records_frame
from hub.reconcile.match import RECORD_SCHEMA
from hub.runtime import build_runtime, set_current
from hub.sdk import CrmReader, Payment, WonDeal
from hub.testing.cluster import running_app
from tests import erp_plugin
from tests.conftest import ConfigWriter

ADMIN = {"Authorization": "Bearer adm"}
ERP: list[tuple[str, object]] = [("erp", erp_plugin)]
ERP_CONFIG = """
    [hub]
    admin_token = "adm"
    [destinations.books]
    plugin = "erp"
    path = "books.jsonl"
    page_size = 2
    [reconcile.daily]
    crm = "books"
    accounting = "books"
"""


def plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


def registering(*classes: type[Connector[Any]]) -> types.ModuleType:
    def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
        for cls in classes:
            register(cls)

    return plugin("leadhub_test_" + "_".join(c.__name__.lower() for c in classes),
                  leadhub_register_connectors=leadhub_register_connectors)


# ---------------------------------------------------------------- discovery


def test_one_plugin_registers_a_destination_and_two_readers() -> None:
    info = discover(make_plugin_manager(ERP))["erp"]
    assert info.kind == "destination" and info.connector is erp_plugin.ErpDestination
    assert info.kinds == ["destination", "crm_reader", "accounting_reader"]
    assert info.provides("crm_reader") is erp_plugin.ErpDeals
    assert info.provides("accounting_reader") is erp_plugin.ErpPayments
    assert info.capabilities == ["accounting_reader", "crm_reader", "lookup"]
    assert {c.plugin_id for c in info.classes.values()} == {"erp"}
    listed = info.listing()
    assert listed["kind"] == "destination" and listed["kinds"] == info.kinds


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ((erp_plugin.ErpDeals,), "registers only crm_reader"),
        ((erp_plugin.ErpDestination, erp_plugin.ErpDestination), "registers two destination classes"),
        ((erp_plugin.ErpDestination, erp_plugin.MismatchedDeals),
         "MismatchedDeals.Config (OtherConfig) must be the destination's Config (ErpConfig)"),
        ((Source, erp_plugin.ErpDeals), "with a source: a reader goes with a destination"),
        ((Source, erp_plugin.ErpDestination), "registers a source and a destination"),
    ],
)
def test_a_plugin_whose_classes_do_not_pair_stops_discovery(
    classes: tuple[type[Connector[Any]], ...], message: str,
) -> None:
    with pytest.raises(PluginError, match="plugin 'odd'") as caught:
        discover(make_plugin_manager([("odd", registering(*classes))]))
    assert message in str(caught.value)


def test_the_api_lists_every_kind_a_plugin_provides(
    write_config: ConfigWriter, tmp_path: Path, redis_url: str,
) -> None:
    with running_app(write_config(ERP_CONFIG), data_dir=tmp_path / "data", redis_url=redis_url,
                     extra_plugins=ERP) as (_, client):
        items = {p["id"]: p for p in client.get("/api/plugins", headers=ADMIN).json()["items"]}
    erp = items["erp"]
    assert erp["kind"] == "destination"
    assert erp["kinds"] == ["destination", "crm_reader", "accounting_reader"]
    assert "page_size" in erp["settings_schema"]["properties"]
    assert items["webform"]["kinds"] == ["source"] and items["amocrm"]["kind"] == "destination"


# ---------------------------------------------------------------- configuration


def test_a_reconcile_job_needs_connectors_whose_plugins_read() -> None:
    plugins = discover(make_plugin_manager(ERP))
    raw = {"destinations": {"books": {"plugin": "erp"}, "out": {"plugin": "file"}},
           "reconcile": {"daily": {"crm": "out", "accounting": "books"}}}
    with pytest.raises(ConfigError) as caught:
        build_config(raw, plugins, env={})
    assert caught.value.problems == ["[reconcile.daily] crm: 'out' (plugin 'file') has no crm reader"]
    raw["reconcile"] = {"daily": {"crm": "books", "accounting": "books"}}
    assert build_config(raw, plugins, env={}).reconcile["daily"].crm == "books"


def write_erp(data_dir: Path, rows: list[dict[str, Any]]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "books.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_readers_are_built_from_the_destination_table_and_read_page_by_page(
    write_config: ConfigWriter, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    rt = build_runtime(write_config(ERP_CONFIG), extra_plugins=ERP)
    try:
        dest, crm, books = rt.destination("books"), rt.crm_reader("books"), rt.accounting_reader("books")
        assert isinstance(crm, erp_plugin.ErpDeals) and isinstance(books, erp_plugin.ErpPayments)
        assert dest is not None
        assert crm.config is dest.config and books.config is dest.config  # one table, validated once
        assert crm.context is dest.context  # its requests share the destination's rate limit
        assert rt.crm_reader("nowhere") is None

        write_erp(tmp_path / "data", [
            {"type": "deal", "id": f"d{i}", "client": f"c{i % 2}", "amount": 100.0 * i,
             "date": f"2026-03-0{i}T12:00:00+03:00", "pipeline": 7 if i != 4 else 8,
             "phones": [f"8 916 123-45-6{i}"]}
            for i in range(1, 7)
        ] + [{"type": "payment", "id": "p1", "client": "k1", "amount": 300.0,
              "date": "2026-03-02T09:00:00+00:00", "inn": "7707083893"}])
        since, until = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC)
        pages = list(crm.won_deals(since, until, pipelines=[7]))
        # d1 is before since, d6 after until (exclusive), d4 is in another pipeline
        assert [[d.external_id for d in p] for p in pages] == [["d2", "d3"], ["d5"]]
        frame = records_frame(pages)
        assert frame.schema == RECORD_SCHEMA
        assert frame["external_id"].to_list() == ["d2", "d3", "d5"]
        assert frame["amount"].sum() == 1000.0
        assert frame["phones"].to_list()[0] == ["8 916 123-45-62"]
        [[payment]] = list(books.payments(since, until))
        assert payment == Payment(external_id="p1", client_key="k1", amount=300.0,
                                  date=datetime(2026, 3, 2, 9, tzinfo=UTC), inn="7707083893",
                                  document_kind="bank_receipt")
    finally:
        rt.close()


# ---------------------------------------------------------------- notification hooks


class Heard:
    """What a listening plugin was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def module(self) -> types.ModuleType:
        return plugin(
            "leadhub_test_listener",
            leadhub_startup=lambda settings: self.events.append(("startup", settings["data_dir"])),
            leadhub_lead_received=lambda lead, source: self.events.append(("received", source)),
            leadhub_delivery_finished=lambda lead, destination, status: self.events.append(
                ("finished", (destination, status))),
        )


def failing(*hooks: str) -> types.ModuleType:
    def fail(**_: Any) -> None:
        raise RuntimeError("the notifier is down")

    impls: dict[str, Callable[..., None]] = {
        "leadhub_startup": lambda settings: fail(),
        "leadhub_lead_received": lambda lead, source: fail(),
        "leadhub_delivery_finished": lambda lead, destination: fail(),
    }
    return plugin("leadhub_test_failing", **{hook: impls[hook] for hook in hooks})


def test_notify_calls_every_plugin_and_logs_the_one_that_failed(caplog: pytest.LogCaptureFixture) -> None:
    heard = Heard()
    # pluggy calls the last registered first: the failing plugin runs before the listener
    pm = make_plugin_manager([("listener", heard.module()), ("loud", failing("leadhub_lead_received"))])
    lead = Lead(id="01L", source="site_form", channel="form", received_at=datetime.now(UTC))
    with caplog.at_level(logging.ERROR, logger="leadhub.plugins"):
        notify(pm, "leadhub_lead_received", lead=lead, source="site_form")
    assert heard.events == [("received", "site_form")]
    [record] = caplog.records
    assert "plugin 'loud': leadhub_lead_received failed" in record.getMessage()
    assert record.exc_info is not None and "the notifier is down" in str(record.exc_info[1])


def test_a_failing_plugin_silences_no_other_at_startup_routing_and_delivery(
    write_config: ConfigWriter, tmp_path: Path, redis_url: str,
) -> None:
    """The hub's own call sites: the startup hook, ``process_job`` (lead received) and
    ``drain_job`` (delivery finished), with a plugin whose every hook raises."""
    heard = Heard()
    config = write_config("""
        [hub]
        default_destinations = ["jsonl"]
        [sources.site_form]
        plugin = "webform"
        [destinations.jsonl]
        plugin = "file"
        path = "leads.jsonl"
    """)
    loud = failing("leadhub_startup", "leadhub_lead_received", "leadhub_delivery_finished")
    with running_app(config, data_dir=tmp_path / "data", redis_url=redis_url,
                     extra_plugins=[("listener", heard.module()), ("loud", loud)]) as (rt, client):
        assert heard.events == [("startup", str(tmp_path / "data"))]
        assert client.post("/hooks/site_form", data={"phone": "+79161234567"}).status_code == 200
        set_current(rt)
        try:
            assert process_job() == 1
            assert drain_job("jsonl") == 1
        finally:
            set_current(None)
    assert heard.events[1:] == [("received", "site_form"), ("finished", ("jsonl", "delivered"))]


def test_won_deal_and_payment_records_refuse_what_the_matcher_cannot_use() -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        WonDeal(external_id="d1", client_key="c1", amount=1.0, date=datetime(2026, 3, 1))
    with pytest.raises(ValueError, match="client_key is empty"):
        Payment(external_id="p1", client_key="", amount=1.0, date=when)
    with pytest.raises(ValueError, match="finite"):
        Payment(external_id="p1", client_key="c", amount=float("nan"), date=when)
    assert issubclass(erp_plugin.ErpDeals, CrmReader)
