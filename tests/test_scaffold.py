"""``leadhub plugin new`` writes a package that installs with pip, registers itself through
the ``leadhub`` entry point, and whose own generated tests pass against the hub."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from tests.package_install import env_with_path, pip_install_target

runner = CliRunner()


@pytest.mark.parametrize(("kind", "plugin_id"), [("destination", "acme_crm"), ("source", "acme_forms")])
def test_generated_package_installs_and_its_tests_pass(tmp_path: Path, kind: str, plugin_id: str) -> None:
    made = runner.invoke(app, ["plugin", "new", plugin_id, "--dir", str(tmp_path), "--kind", kind])
    assert made.exit_code == 0, made.output
    project = tmp_path / f"leadhub-{plugin_id.replace('_', '-')}"
    assert str(project) in made.output

    meta = tomllib.loads((project / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["leadhub"] == {plugin_id: f"leadhub_{plugin_id}"}
    assert (project / "README.md").read_text().count(f'plugin = "{plugin_id}"') == 1
    assert (project / "tests" / f"test_{plugin_id}.py").exists()

    target = pip_install_target(project, tmp_path / "target")
    assert (target / f"leadhub_{plugin_id}" / "__init__.py").exists()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project, env=env_with_path(target, project), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "skipped" not in done.stdout

    listed = subprocess.run(
        [sys.executable, "-m", "hub.cli", "plugins", "--format", "csv"],
        env=env_with_path(target), capture_output=True, text=True, timeout=120,
    )
    assert f"{plugin_id},{kind}," in listed.stdout


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
