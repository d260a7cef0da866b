"""A plugin from a separate package, installed with pip, is discovered through its
``leadhub`` entry point and receives leads in a real hub: the core knows no plugin by name.
A plugin whose hook name is misspelled stops the hub at start instead of being ignored."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pluggy
import pytest

from hub import hookimpl
from hub.plugins import discover, make_plugin_manager
from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter
from tests.package_install import env_with_path, env_without_path, leadhub, pip_install_target

PACKAGE = Path(__file__).parents[1] / "thirdparty" / "leadhub-crm-echo"
CONFIG = """
[hub]
default_destinations = ["echo"]

[sources.site_form]
plugin = "webform"

[destinations.echo]
plugin = "crm_echo"
path = "echo/leads.tsv"
"""


@pytest.fixture(scope="module")
def echo_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """leadhub-crm-echo installed by pip into a directory of its own (not site-packages)."""
    return pip_install_target(PACKAGE, tmp_path_factory.mktemp("crm-echo") / "target")


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_installed_package_receives_leads_in_a_real_hub(
    echo_target: Path, write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    config = write_config(CONFIG)
    cluster = make_cluster(config, env={"PYTHONPATH": env_with_path(echo_target)["PYTHONPATH"]})
    cluster.start()

    r = cluster.client.post(
        "/hooks/site_form",
        data={"name": "Иван Петров", "phone": "8 916 123-45-67", "utm_source": "yandex"},
    )
    assert r.status_code == 200, r.text
    lead_id = r.json()["id"]

    # the destination got the lead, normalized by the core (E.164), through deliver()
    delivered = wait_until(lambda: _lines(cluster.data_dir / "echo" / "leads.tsv"), 60,
                           what="crm_echo to write the delivered lead")
    assert delivered == [[lead_id, "+79161234567"]]
    # the notification hook ran in the worker, with the source's name
    received = wait_until(lambda: _lines(cluster.data_dir / "crm_echo_received.txt"), 30,
                          what="leadhub_lead_received to write the lead")
    assert received == [[lead_id, "site_form"]]

    lead = wait_until(
        lambda: (doc := cluster.admin("GET", f"/api/leads/{lead_id}").json())["status"] == "delivered"
        and doc, 30, what="the lead to be delivered")
    assert [(d["destination"], d["status"], d["external_id"]) for d in lead["deliveries"]] == [
        ("echo", "delivered", f"echo-{lead_id}")
    ]


def test_cli_lists_the_plugin_only_where_it_is_installed(
    echo_target: Path, write_config: ConfigWriter, tmp_path: Path
) -> None:
    config = write_config(CONFIG)
    with_plugin = env_with_path(echo_target)
    with_plugin["LEADHUB_DATA_DIR"] = str(tmp_path / "data")

    listed = leadhub("plugins", "--format", "json", env=with_plugin)
    assert listed.returncode == 0, listed.stderr
    plugins: dict[str, Any] = {p["id"]: p for p in json.loads(listed.stdout)}
    assert plugins["crm_echo"]["kind"] == "destination"
    assert plugins["crm_echo"]["version"] == "0.3.1"  # from the package's own dist-info
    assert {"webform", "file", "crm_echo"} <= set(plugins)

    ok = leadhub("check", "--config", str(config), env=with_plugin)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    without = env_without_path()
    without["LEADHUB_DATA_DIR"] = str(tmp_path / "data")
    missing = leadhub("check", "--config", str(config), env=without)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "[destinations.echo] plugin: unknown plugin 'crm_echo'" in missing.stderr
    assert "crm_echo" not in leadhub("plugins", "--format", "json", env=without).stdout


def test_plugin_settings_are_validated_by_its_own_model(
    echo_target: Path, write_config: ConfigWriter, tmp_path: Path
) -> None:
    config = write_config(CONFIG + 'colour = "red"\n')
    env = env_with_path(echo_target)
    env["LEADHUB_DATA_DIR"] = str(tmp_path / "data")
    bad = leadhub("check", "--config", str(config), env=env)
    assert bad.returncode == 2
    assert "[destinations.echo] colour: unknown key" in bad.stderr


def _module(name: str, **functions: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, hookimpl(fn))
    return module


def test_misspelled_hook_fails_at_start() -> None:
    def leadhub_register_conectors(register: Any) -> None:  # sic: one "n"
        raise AssertionError("never called")

    bad = _module("leadhub_bad", leadhub_register_conectors=leadhub_register_conectors)
    with pytest.raises(pluggy.PluginValidationError) as caught:
        make_plugin_manager(extra=[("bad", bad)])
    message = str(caught.value)
    assert "unknown hook 'leadhub_register_conectors'" in message
    assert "leadhub_bad" in message  # names the plugin to fix


def test_hook_with_an_argument_the_spec_lacks_fails_at_start() -> None:
    def leadhub_lead_received(lead: Any, source: str, tenant: str) -> None:
        raise AssertionError("never called")

    bad = _module("leadhub_bad_args", leadhub_lead_received=leadhub_lead_received)
    with pytest.raises(pluggy.PluginValidationError, match="tenant"):
        make_plugin_manager(extra=[("bad_args", bad)])


def test_a_hook_may_take_fewer_arguments_than_the_spec() -> None:
    seen: list[str] = []

    def leadhub_lead_received(source: str) -> None:
        seen.append(source)

    pm = make_plugin_manager(extra=[("few", _module("few", leadhub_lead_received=leadhub_lead_received))])
    pm.hook.leadhub_lead_received(lead=None, source="site_form")
    assert seen == ["site_form"]
    assert "few" not in discover(pm)  # registers no connector, so it is not a connector plugin
