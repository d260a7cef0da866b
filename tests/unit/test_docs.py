"""The docs keep up with the code: every hook, every CLI command and option, and every
``plugins.toml`` key of the hub and of the first-party plugins is documented."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel

from hub import hookspecs
from hub.cli import app
from hub.config import AssignRule, HubSettings, ReconcileJob, Route
from hub.connectors import ConnectorConfig, DestinationConfig, SourceConfig
from hub.plugins import PluginInfo, discover, make_plugin_manager

DOCS = Path(__file__).resolve().parents[2] / "docs"
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)


def sections(doc: str) -> list[tuple[int, str, str]]:
    """(level, heading, body up to the next heading of the same or a higher level).

    Lines inside fenced code blocks (a ``# comment`` in a TOML example) are not headings.
    """
    heads = [m for m in HEADING.finditer(doc) if doc[:m.start()].count("```") % 2 == 0]
    out = []
    for i, m in enumerate(heads):
        level = len(m.group(1))
        end = len(doc)
        for later in heads[i + 1:]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        out.append((level, m.group(2), doc[m.end():end]))
    return out


def section(doc: str, heading: str, where: str) -> str:
    """The body of the section whose heading, without backticks, is ``heading``."""
    for _, head, body in sections(doc):
        if head.replace("`", "").strip() == heading:
            return body
    raise AssertionError(f"{where}: no section headed {heading!r}")


def undocumented(body: str, keys: Iterator[str] | list[str]) -> list[str]:
    return [k for k in keys if f"`{k}`" not in body]


# ---------------------------------------------------------------- hooks


def hook_signatures() -> dict[str, str]:
    """Each hookspec as the heading that documents it: ``name(arg, ...)``."""
    out = {}
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("leadhub_"):
            params = ", ".join(inspect.signature(fn).parameters)
            out[name] = f"{name}({params})"
    return out


def test_every_hook_has_a_section_headed_by_its_signature() -> None:
    doc = (DOCS / "plugin_hooks.md").read_text(encoding="utf-8")
    headings = {head for level, head, _ in sections(doc) if level == 2}
    specs = hook_signatures()
    assert specs, "no hookspecs found"
    missing = [sig for sig in specs.values() if sig not in headings]
    assert not missing, f"docs/plugin_hooks.md needs a '## <signature>' section for: {missing}"


def test_no_section_documents_a_hook_that_does_not_exist() -> None:
    doc = (DOCS / "plugin_hooks.md").read_text(encoding="utf-8")
    documented = {head for level, head, _ in sections(doc) if level == 2 and head.startswith("leadhub_")}
    stale = documented - set(hook_signatures().values())
    assert not stale, f"docs/plugin_hooks.md documents hooks with another signature or none: {stale}"


# ---------------------------------------------------------------- CLI


def cli_commands() -> dict[str, Any]:
    """'leadhub <path>' for every command of the app, sub-apps included."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            found[" ".join(path)] = cmd
            return
        for name, sub in subs.items():
            if not getattr(sub, "hidden", False):
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), ["leadhub"])
    return found


def test_every_cli_command_and_option_is_documented() -> None:
    doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = cli_commands()
    assert {"leadhub serve", "leadhub check", "leadhub plugin new"} <= set(commands)
    problems = []
    for path, cmd in sorted(commands.items()):
        body = next(
            (b for level, head, b in sections(doc)
             if level == 2 and re.fullmatch(rf"`?{re.escape(path)}(\s[^`]*)?`?", head)),
            None,
        )
        if body is None:
            problems.append(f"{path}: no '## `{path}`' section")
            continue
        for param in cmd.params:
            if param.param_type_name == "argument":
                name = str(param.name).upper()
                if f"`{name}`" not in body:
                    problems.append(f"{path}: argument {name} not described")
            else:
                longs = [o for o in param.opts if o.startswith("--")]
                if longs and not any(f"`{o}" in body for o in longs):
                    problems.append(f"{path}: option {longs[0]} not described")
    assert not problems, "docs/cli.md is missing:\n" + "\n".join(problems)


# ---------------------------------------------------------------- plugins.toml


def first_party_plugins() -> list[PluginInfo]:
    """Installed plugins shipped in this repository's ``plugins`` package."""
    infos = discover(make_plugin_manager()).values()
    return sorted((p for p in infos if p.connector.__module__.split(".")[0] == "plugins"),
                  key=lambda p: p.id)


def fields(model: type[BaseModel], without: type[BaseModel] | None = None) -> list[str]:
    inherited = set(without.model_fields) if without else set()
    return [k for k in model.model_fields if k not in inherited]


def config_doc() -> str:
    return (DOCS / "configuration.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("heading", "models"),
    [
        ("[hub]", [HubSettings]),
        ("Sources and destinations", [ConnectorConfig, SourceConfig, DestinationConfig]),
        ("[[routes]]", [Route, AssignRule]),
        ("[reconcile.NAME]", [ReconcileJob]),
    ],
)
def test_every_hub_key_is_documented(heading: str, models: list[type[BaseModel]]) -> None:
    body = section(config_doc(), heading, "docs/configuration.md")
    missing = [f"{m.__name__}.{k}" for m in models for k in undocumented(body, fields(m))]
    assert not missing, f"docs/configuration.md, section {heading!r}, does not mention: {missing}"


def test_every_first_party_plugin_key_is_documented() -> None:
    doc = config_doc()
    plugins = first_party_plugins()
    assert {"webform", "file", "webhook"} <= {p.id for p in plugins}
    problems = []
    for info in plugins:
        heading = f"{info.id} ({info.kind})"
        try:
            body = section(doc, heading, "docs/configuration.md")
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        base = SourceConfig if info.kind == "source" else DestinationConfig
        problems += [f"[{info.id}] {k}" for k in undocumented(body, fields(info.connector.Config, base))]
    assert not problems, "docs/configuration.md is missing plugin settings:\n" + "\n".join(problems)
