"""``leadhub plugin new`` writes a package that installs with pip, registers itself through
the ``leadhub`` entry point, and whose own tests (the contract kits and an end-to-end test
with the ``leadhub`` fixture) pass against the hub unchanged."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from tests.package_install import env_with_path, pip_install_target

runner = CliRunner()

#: Lines of the destination module the scaffold wrote before it used the SDK's HTTP client,
#: the kits and capabilities: ``git show 4667c13:hub/scaffold.py`` imported as a module,
#: ``len(PluginNames("acme_crm", "destination").fill(DEST_MODULE).splitlines())``.
OLD_DESTINATION_MODULE_LINES = 111

#: Distributions whose import name differs from their name.
IMPORT_NAMES = {"leadhub": "hub"}


def scaffold(tmp_path: Path, kind: str, plugin_id: str) -> Path:
    made = runner.invoke(app, ["plugin", "new", plugin_id, "--dir", str(tmp_path), "--kind", kind])
    assert made.exit_code == 0, made.output
    project = tmp_path / f"leadhub-{plugin_id.replace('_', '-')}"
    assert str(project) in made.output
    return project


def imported_top_names(paths: list[Path]) -> set[str]:
    """Top-level names of the modules ``paths`` import that are not the standard library."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def hub_modules(paths: list[Path]) -> set[str]:
    """The ``hub`` modules ``paths`` import."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "hub"}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hub":
                found.add(node.module)
    return found


def declared(requirements: list[str]) -> set[str]:
    """Import names of requirements such as ``"pydantic>=2"``."""
    dists = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip()
             for r in requirements}
    return {IMPORT_NAMES.get(d, d) for d in dists}


@pytest.mark.parametrize(("kind", "plugin_id"), [("destination", "acme_crm"), ("source", "acme_forms")])
def test_generated_package_installs_and_its_kit_and_end_to_end_tests_pass(
    tmp_path: Path, kind: str, plugin_id: str
) -> None:
    project = scaffold(tmp_path, kind, plugin_id)
    package = f"leadhub_{plugin_id}"
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["leadhub"] == {plugin_id: package}
    assert (project / "README.md").read_text().count(f'plugin = "{plugin_id}"') == 1

    # every package the plugin imports is a dependency (the old template imported httpx
    # without declaring it), and the tests' extra brings pytest
    plugin_imports = imported_top_names(sorted((project / package).glob("*.py")))
    assert plugin_imports - {package} <= declared(meta["project"]["dependencies"])
    assert "hub" in plugin_imports
    test_deps = declared(meta["project"]["dependencies"] + meta["project"]["optional-dependencies"]["test"])
    assert "pytest" in test_deps
    assert imported_top_names(sorted((project / "tests").glob("*.py"))) - {package} <= test_deps

    # the plugin imports only the SDK; its fake and tests add only the public hub.testing
    assert hub_modules([project / package / "__init__.py"]) == {"hub.sdk"}
    helpers = sorted((project / "tests").glob("*.py")) + sorted((project / package).glob("testing.py"))
    assert hub_modules(helpers) <= {"hub.sdk", "hub.testing", "hub.testing.kits", "hub.testing.pytest_plugin"}

    target = pip_install_target(project, tmp_path / "target")
    assert (target / package / "__init__.py").exists()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests"],
        cwd=project, env=env_with_path(target, project), capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = [line for line in done.stdout.splitlines() if line.startswith("PASSED ")]
    kit = "DestinationKit" if kind == "destination" else "SourceKit"
    # the kit's own checks ran in the generated package, none skipped, and the end-to-end test
    assert any("::test_empty_secrets_are_refused_with_section_and_key" in p for p in passed), passed
    if kind == "destination":
        for check in ("test_a_retry_after_an_uncertain_failure_creates_nothing_twice[timeout]",
                      "test_declared_limits_are_respected", "test_a_4xx_is_permanent",
                      "test_a_5xx_is_retried", "test_a_form_lead_becomes_a_contact"):
            assert any(check in p for p in passed), (kit, check, passed)
    else:
        for check in ("test_unsigned_and_wrongly_signed_requests_are_refused_and_not_stored",
                      "test_payloads_parse_as_expected", "test_answers_as_the_provider_expects",
                      "test_a_repeated_request_is_one_event", "test_a_webhook_becomes_a_lead"):
            assert any(check in p for p in passed), (kit, check, passed)
    assert "SKIPPED" not in done.stdout

    listed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "plugins", "--format", "csv"],
        env=env_with_path(target), capture_output=True, text=True, timeout=120,
    )
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(f"{plugin_id},")]
    assert row.startswith(f"{plugin_id},{kind},")
    assert "declares no capabilities" not in listed.stderr  # declared, so the hub asks nothing
    if kind == "destination":
        assert row.endswith('"batch_lookup, counts_own_requests, lookup"'), row


def test_generated_destination_is_a_third_shorter_and_reads_retry_after_dates(tmp_path: Path) -> None:
    """The module leaves status mapping and ``Retry-After`` to the SDK's client: it is at
    most two thirds of the old one, and a 429 whose ``Retry-After`` is an HTTP date (which
    the old hand-written parser read as "no value") makes the engine wait that long."""
    project = scaffold(tmp_path, "destination", "acme_crm")
    module = project / "leadhub_acme_crm" / "__init__.py"
    lines = len(module.read_text("utf-8").splitlines())
    assert lines * 3 <= OLD_DESTINATION_MODULE_LINES * 2, lines

    target = pip_install_target(project, tmp_path / "target")
    script = textwrap.dedent("""
        from datetime import UTC, datetime, timedelta
        from email.utils import format_datetime
        from pathlib import Path

        from hub.sdk import ConnectorContext, Contact, DeliveryItem, Lead, RateLimited
        from leadhub_acme_crm import AcmeCrmConfig, AcmeCrmDestination
        from leadhub_acme_crm.testing import FakeAcmeCrm

        lead = Lead(id="01L", source="form", channel="form", received_at=datetime.now(UTC),
                    contact=Contact(name="Ivan", phones=["+79161234567"]))
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
        with FakeAcmeCrm("k") as fake:
            fake.limit_rate(0, retry_after=when)  # every request is over the limit
            config = AcmeCrmConfig.model_validate(
                {"plugin": "acme_crm", "base_url": fake.base_url, "api_key": "k"})
            dest = AcmeCrmDestination(config, ConnectorContext(name="crm", data_dir=Path(".")))
            try:
                dest.deliver([DeliveryItem(delivery_id="d1", idempotency_key="k1", lead=lead)])
            except RateLimited as exc:
                print(exc.retry_after)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env_with_path(target),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 100 < float(done.stdout) <= 120, done.stdout


def test_refuses_bad_ids_and_existing_directories(tmp_path: Path) -> None:
    for bad in ("Acme", "acme-crm", "1acme", "", "webform"):
        result = runner.invoke(app, ["plugin", "new", bad, "--dir", str(tmp_path)])
        assert result.exit_code == 2, (bad, result.output)
    assert list(tmp_path.iterdir()) == []

    assert runner.invoke(app, ["plugin", "new", "acme", "--dir", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["plugin", "new", "acme", "--dir", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output

    wrong_kind = runner.invoke(app, ["plugin", "new", "other", "--dir", str(tmp_path), "--kind", "crm"])
    assert wrong_kind.exit_code == 2
