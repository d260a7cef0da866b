"""plugins.toml validation: every problem at once, each with its section and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hub.config import build_config, expand_env, load_config
from hub.errors import ConfigError
from hub.plugins import discover, make_plugin_manager

PLUGINS = discover(make_plugin_manager())

BROKEN = """
[hub]
default_region = "RUS"
dedup_window_minutes = -5
colour = "blue"

[sources.site_form]
plugin = "webform"
tokn = "x"

[sources.calls]
plugin = "no_such_plugin"

[destinations.amo_main]
plugin = "amocrm"
base_url = "https://example.amocrm.ru"
access_token = "t"
pipeline_id = "not a number"

[destinations.hook]
plugin = "webhook"
url = "not a url"

[destinations.misplaced]
plugin = "webform"

[[routes]]
name = "ads"
match = { "utm.source" = "yandex*" }
destinations = ["amo_main", "nowhere"]
"""


def leadhub(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_check_reports_every_problem_with_section_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "plugins.toml"
    cfg.write_text(BROKEN, encoding="utf-8")
    run = leadhub("check", "--config", str(cfg), cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    out = " ".join(run.stderr.split())
    for expected in [
        "[hub] default_region:",
        "[hub] dedup_window_minutes:",
        "[hub] colour: unknown key",
        "[sources.site_form] tokn: unknown key",
        "[sources.calls] plugin: unknown plugin 'no_such_plugin'",
        "[destinations.amo_main] pipeline_id:",
        "[destinations.hook] url:",
        "[destinations.misplaced] plugin: 'webform' is a source, not a destination",
        "[routes.ads] destinations: unknown destination 'nowhere'",
    ]:
        assert expected in out, f"{expected!r} missing from:\n{run.stderr}"


def test_check_accepts_the_example_config() -> None:
    root = Path(__file__).resolve().parents[2]
    run = leadhub("check", "--config", str(root / "plugins.toml"), cwd=root)
    assert run.returncode == 0, run.stderr
    assert "ok" in run.stdout


def test_missing_file_and_bad_toml_exit_2(tmp_path: Path) -> None:
    assert leadhub("check", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path).returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[hub\n", encoding="utf-8")
    run = leadhub("check", "--config", str(bad), cwd=tmp_path)
    assert run.returncode == 2
    assert "not valid TOML" in run.stderr


def test_env_expansion_with_defaults() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert expand_env("${A}-${B:-two}-${EMPTY:-d}-${MISSING}", env) == "1-two-d-"
    assert expand_env({"k": ["${A}"]}, env) == {"k": ["1"]}


def test_env_overrides_hub_keys(tmp_path: Path) -> None:
    raw = {"hub": {"data_dir": "var", "admin_token": "from-file"}}
    env = {"LEADHUB_ADMIN_TOKEN": "from-env", "LEADHUB_DATA_DIR": str(tmp_path)}
    cfg = build_config(raw, PLUGINS, env)
    assert cfg.hub.admin_token.get_secret_value() == "from-env"
    assert cfg.hub.data_dir == tmp_path


def test_secrets_from_environment_reach_the_plugin_config(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[sources.f]\nplugin = "webform"\ntoken = "${FORM_TOKEN}"\n', encoding="utf-8")
    cfg = load_config(path, PLUGINS, {"FORM_TOKEN": "s3cret"})
    token = cfg.sources["f"].config.token  # type: ignore[attr-defined]
    assert token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(cfg.sources["f"].config)


def test_config_error_lists_all_problems() -> None:
    with pytest.raises(ConfigError) as exc:
        build_config({"sources": {"a": {}, "b": {"plugin": "nope"}}}, PLUGINS, {})
    assert len(exc.value.problems) == 2
