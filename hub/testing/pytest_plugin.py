"""A plugin author's end-to-end test, with nothing installed: a real hub (api, worker and
scheduler as processes, an embedded Redis, SQLite) running the plugin under test by its
module path. Enable it in a ``conftest.py`` or test module::

    pytest_plugins = ["hub.testing.pytest_plugin"]

    def test_a_lead_reaches_my_crm(leadhub, my_fake):
        hub = leadhub('''
            [hub]
            default_destinations = ["crm"]
            [sources.form]
            plugin = "webform"
            [destinations.crm]
            plugin = "my_crm"
            base_url = "%s"
            api_key = "test-key"
        ''' % my_fake.base_url, plugins={"my_crm": "my_crm_plugin"})
        hub.client.post("/hooks/form", data={"name": "Ivan", "phone": "+79161234567"})
        [delivery] = hub.settle()
        assert delivery["status"] == "delivered"

``plugins`` maps plugin ids to importable module paths; the hub's processes register them
through ``LEADHUB_PLUGIN_MODULES`` (``hub.plugins``) and import them from this test's
``sys.path``. When the test fails, the hub's logs are printed with its report.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.plugins import PLUGIN_MODULES_ENV
from hub.testing.cluster import HubCluster

#: Delivery states that will not change by themselves.
SETTLED = ("delivered", "dead")
_REPORT = pytest.StashKey[dict[str, pytest.TestReport]]()


class RunningHub(HubCluster):
    """A started ``HubCluster`` with the helpers an end-to-end test needs."""

    def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        """Every delivery (``GET /api/deliveries``), following cursors."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = {"limit": 1000, **params, **({"cursor": cursor} if cursor else {})}
            r = self.admin("GET", "/api/deliveries", params=q)
            r.raise_for_status()
            page = r.json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def settle(self, timeout: float = 60.0, *, expect: int | None = None) -> list[dict[str, Any]]:
        """Wait until every lead is routed and every delivery is delivered or dead (and,
        with ``expect``, that there are that many deliveries); return the deliveries.

        A delivery that failed and waits for its retry is not settled: the retry schedule
        (docs/writing-plugins.md) decides when it is tried again.
        """
        deadline = time.monotonic() + timeout
        while True:
            routed = all(lead["status"] != "received" for lead in self.leads())
            found = self.deliveries()
            done = routed and all(d["status"] in SETTLED for d in found)
            if done and (expect is None or len(found) >= expect):
                return found
            if time.monotonic() > deadline:
                states = sorted((d["status"], d["last_error"] or "") for d in found)
                raise TimeoutError(f"deliveries not settled after {timeout}s: {states}")
            time.sleep(0.1)

    def log_text(self, tail: int = 200) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            lines = log.read_text("utf-8", "replace").splitlines()[-tail:]
            parts.append(f"----- {log.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)


HubFactory = Callable[..., RunningHub]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so the fixture knows the test failed."""
    report = yield
    item.stash.setdefault(_REPORT, {})[report.when] = report
    return report


def _search_path() -> str:
    """This process's import path, for the hub's processes to import the plugin from."""
    entries = [p for p in sys.path if p and Path(p).is_dir()]
    old = os.environ.get("PYTHONPATH")
    return os.pathsep.join([*entries, *([old] if old else [])])


@pytest.fixture
def leadhub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubFactory]:
    """Start hubs: ``leadhub(config_text, plugins={"id": "module.path"}, workers=1)``.

    Each is stopped at the end of the test; its logs are printed when the test failed.
    """
    made: list[RunningHub] = []

    def start(config: str, plugins: dict[str, str] | None = None, *, workers: int = 1,
              database_url: str = "", env: dict[str, str] | None = None) -> RunningHub:
        workdir = tmp_path / f"leadhub{len(made)}"
        workdir.mkdir()
        path = workdir / "plugins.toml"
        path.write_text(textwrap.dedent(config), "utf-8")
        modules = ",".join(f"{pid}={module}" for pid, module in (plugins or {}).items())
        hub = RunningHub(path, data_dir=workdir / "data", database_url=database_url,
                         env={PLUGIN_MODULES_ENV: modules, "PYTHONPATH": _search_path(),
                              **(env or {})})
        made.append(hub)
        hub.start(workers=workers)
        return hub

    yield start
    reports = request.node.stash.get(_REPORT, {})
    failed = any(r.failed for r in reports.values())
    for hub in made:
        if failed:
            sys.stderr.write(f"\n===== logs of the hub in {hub.data_dir.parent}\n{hub.log_text()}\n")
        hub.stop()
