"""The SDK is the plugins' only way into the hub, and the hub's only way to know plugins.

``docs/writing-plugins.md`` promises that ``hub.sdk`` (and ``hub.testing``, in tests) is
all a plugin needs and all that stays stable. That promise holds only if our own plugins
keep it: a first-party plugin importing ``hub.connectors`` or ``plugins.telephony`` is a
helper a third party cannot rely on. These tests read the imports (the AST, so imports
inside functions count too) of every file under ``plugins/`` and of the third-party
example plugin, and of the core the other way round.
"""

from __future__ import annotations

import ast
import importlib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import hub.sdk

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
THIRD_PARTY = ROOT / "tests" / "thirdparty"
CORE = ROOT / "hub"


def public_submodules() -> set[str]:
    """``hub.sdk.<name>`` modules the SDK lists in ``__all__``: importable by plugins."""
    return {name for name in hub.sdk.__all__ if isinstance(getattr(hub.sdk, name, None), types.ModuleType)}


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str, list[str]]]:
    """(line, absolute module, names) for every import in ``tree``; relative imports are
    the plugin's own and are skipped."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def is_testing_module(relative: Path) -> bool:
    """A plugin's test helpers (``plugins/amocrm/testing/fake.py``, ``plugins/x/testing.py``)."""
    return "testing" in relative.with_suffix("").parts


def plugin_violations(source: str, relative: Path, allowed_subs: set[str]) -> list[str]:
    """What a plugin file at ``relative`` (below ``plugins/``) imports that it may not:
    any ``hub`` module except ``hub.sdk`` and its public submodules (plus ``hub.testing``
    in testing modules), and any other plugin's modules."""
    allowed = {"hub.sdk", *(f"hub.sdk.{name}" for name in allowed_subs)}
    top_ok = {"sdk"}
    if is_testing_module(relative):
        top_ok.add("testing")
    own = relative.parts[0].removesuffix(".py") if relative.parts else ""
    out: list[str] = []
    for line, module, names in imported_modules(ast.parse(source)):
        where = f"{relative}:{line}"
        root, _, rest = module.partition(".")
        if root == "hub":
            if module == "hub" and names and set(names) <= top_ok:
                continue
            if module in allowed or (
                "testing" in top_ok and (module == "hub.testing" or module.startswith("hub.testing."))
            ):
                continue
            what = f"from {module} import {', '.join(names)}" if names else f"import {module}"
            out.append(f"{where}: {what}")
        elif root == "plugins":
            other = rest.partition(".")[0]
            if module == "plugins" or other != own:
                out.append(f"{where}: imports another plugin's module {module}")
    return out


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


# ---------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(("source", "relative", "bad"), [
    ("from hub.sdk import Source, hookimpl", "webform.py", False),
    ("from hub.sdk.telephony import call_event", "mango.py", False),
    ("import hub.sdk.meta", "whatsapp.py", False),
    ("from hub import sdk", "vk.py", False),
    ("from hub.connectors import Source", "webform.py", True),
    ("from hub import hookimpl", "webform.py", True),
    ("import hub", "webform.py", True),
    ("from hub.sdk.nonexistent_internal import x", "webform.py", True),
    ("def f():\n    from hub.engine import drain\n", "webform.py", True),  # inside a function too
    ("from hub.testing import FakeServer", "amocrm/plugin.py", True),
    ("from hub.testing import FakeServer", "amocrm/testing/fake.py", False),
    ("from hub.testing.fakeserver import Response", "x/testing.py", False),
    ("from plugins.amocrm.client import AmoClient", "amocrm/plugin.py", False),
    ("from plugins.telephony import text", "mango.py", True),
    ("from plugins import meta_webhooks", "whatsapp.py", True),
    ("from plugins.amocrm import AmoCRMDestination", "webhook.py", True),
    ("from . import client", "amocrm/plugin.py", False),
])
def test_the_checker_tells_sdk_imports_from_core_imports(source: str, relative: str, bad: bool) -> None:
    found = plugin_violations(source, Path(relative), {"telephony", "meta", "messengers"})
    assert bool(found) is bad, found


# ---------------------------------------------------------------- plugins → hub.sdk only


def test_plugins_import_nothing_from_hub_outside_the_sdk() -> None:
    subs = public_submodules()
    files = python_files(PLUGINS)
    assert len(files) > 20  # the walk found the plugins
    found = [v for path in files
             for v in plugin_violations(path.read_text(), path.relative_to(PLUGINS), subs)]
    assert not found, "only hub.sdk (hub.testing in testing modules):\n" + "\n".join(found)


def test_the_third_party_example_imports_only_the_sdk() -> None:
    subs = public_submodules()
    files = python_files(THIRD_PARTY)
    assert files
    found = [v for path in files
             for v in plugin_violations(path.read_text(), path.relative_to(THIRD_PARTY), subs)]
    assert not found, "\n".join(found)


# ---------------------------------------------------------------- the surface itself


def test_everything_the_sdk_lists_exists() -> None:
    names = hub.sdk.__all__
    assert len(names) == len(set(names)), "a name listed twice in hub.sdk.__all__"
    assert not [n for n in names if not hasattr(hub.sdk, n)], "listed in hub.sdk.__all__ but missing"
    assert not [n for n in names if n.startswith("_")]
    for sub in sorted(public_submodules()):
        module = importlib.import_module(f"hub.sdk.{sub}")
        listed = getattr(module, "__all__", [])
        assert not [n for n in listed if not hasattr(module, n)], f"hub.sdk.{sub}.__all__"


def test_the_sdk_holds_what_every_plugin_needs() -> None:
    """The names a connector cannot be written without; losing one breaks plugins."""
    needed = {"hookimpl", "Source", "Destination", "SourceConfig", "DestinationConfig",
              "InboundRequest", "ParsedEvent", "LeadDraft", "HookResponse", "Accepted",
              "DeliveryItem", "DeliveryOutcome", "Limits", "Lead", "ParseError", "AuthError",
              "RetryableError", "PermanentError", "check_token", "same_secret"}
    assert needed <= set(hub.sdk.__all__)


# ---------------------------------------------------------------- the core never imports plugins


def core_violations(source: str, relative: Path) -> list[str]:
    return [f"hub/{relative}:{line}: imports {module}"
            for line, module, _ in imported_modules(ast.parse(source))
            if module == "plugins" or module.startswith("plugins.")]


def test_the_checker_finds_a_core_import_of_plugins() -> None:
    assert core_violations("from plugins.telephony import text", Path("engine/ingest.py"))
    assert core_violations("def f():\n    import plugins.webhook\n", Path("cli.py"))
    assert not core_violations("from hub.sdk.telephony import text", Path("engine/ingest.py"))


def test_the_core_never_imports_plugins() -> None:
    """The core knows plugins only through entry points and ``pm.hook``; ``hub/testing``
    is for tests and may name first-party fakes."""
    files = [p for p in python_files(CORE) if "testing" not in p.relative_to(CORE).parts]
    assert len(files) > 30
    found = [v for path in files for v in core_violations(path.read_text(), path.relative_to(CORE))]
    assert not found, "\n".join(found)
