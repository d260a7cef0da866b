"""``hub.testing.pytest_plugin``: a plugin that is not installed runs in a real hub (api,
worker, scheduler as processes) by its module path; ``settle`` waits for its deliveries;
a failing test gets the hub's logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from hub.testing import serving
from tests.kits.json_crm import FakeJsonCrm

if TYPE_CHECKING:  # imported by pytest_plugins below, not before it
    from hub.testing.pytest_plugin import HubFactory

pytest_plugins = ["hub.testing.pytest_plugin", "pytester"]
KEY = "crm-test-key"


def config(base_url: str) -> str:
    return f"""
        [hub]
        default_destinations = ["crm"]
        [sources.form]
        plugin = "webform"
        [destinations.crm]
        plugin = "json_crm"
        base_url = "{base_url}"
        api_key = "{KEY}"
    """


def test_an_uninstalled_plugin_delivers_through_a_real_hub(leadhub: HubFactory) -> None:
    for fake in serving(FakeJsonCrm(KEY)):
        hub = leadhub(config(fake.base_url), plugins={"json_crm": "tests.kits.json_crm"})
        r = hub.client.post("/hooks/form", data={"name": "Иван", "phone": "+79161234567"})
        assert r.status_code == 200, r.text
        [delivery] = hub.settle(expect=1)
        assert delivery["status"] == "delivered", delivery
        assert [c["phones"] for c in fake.contacts.values()] == [["+79161234567"]]
        assert delivery["external_id"] == "1"


def test_a_failing_test_shows_the_hubs_logs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="""
        pytest_plugins = ["hub.testing.pytest_plugin"]

        def test_fails(leadhub):
            leadhub('[sources.form]\\nplugin = "webform"\\n')
            assert False, "on purpose"
    """)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*===== logs of the hub in*", "*----- api.log*"])
