"""``docs/writing-plugins.md`` is the one page a plugin author reads, and it drifted: it
kept showing ``counts_own_requests = True`` after capabilities replaced it, and never
named the source attributes the core reads (``secret_fields``, ``kept_headers``,
``secret_headers``, ``nonce``). These tests read the page and hold it to the code: every
``hub.sdk`` name it imports or mentions exists in the SDK's public surface, every Python
example compiles, the examples marked ``<!-- complete example -->`` run and declare what
discovery accepts, and every attribute and capability the core reads has its row.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import re
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import hub.sdk
from hub.capabilities import Capability, problems
from hub.connectors import Connector, Destination, Source

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "writing-plugins.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
COMPLETE = "<!-- complete example -->"
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def code_blocks(doc: str, language: str) -> list[tuple[int, str, bool]]:
    """(line, dedented code, marked complete) of each fenced block in ``language``."""
    out = []
    for m in FENCE.finditer(doc):
        if m.group(2) != language:
            continue
        line = doc.count("\n", 0, m.start()) + 1
        before = doc[:m.start()].rstrip().rsplit("\n", 1)[-1].strip()
        out.append((line, textwrap.dedent(m.group(3)), before == COMPLETE))
    return out


def section(doc: str, heading: str) -> str:
    """The text under the ``##``/``###`` heading ``heading`` (backticks ignored), up to the
    next heading of the same or a higher level outside code blocks."""
    heads = [m for m in re.finditer(r"^(#{2,3}) (.+)$", doc, re.MULTILINE)
             if doc[:m.start()].count("```") % 2 == 0]
    for i, m in enumerate(heads):
        if m.group(2).replace("`", "").strip() == heading:
            level = len(m.group(1))
            end = next((h.start() for h in heads[i + 1:] if len(h.group(1)) <= level), len(doc))
            return doc[m.end():end]
    raise AssertionError(f"docs/writing-plugins.md has no section headed {heading!r}")


def table_names(text: str) -> set[str]:
    """The backticked names in the first column of the markdown tables in ``text``."""
    return {name for row in text.splitlines() if row.startswith("| `")
            for name in re.findall(r"`([^`]+)`", row.split("|")[1])}


def public_names(module: types.ModuleType) -> set[str]:
    """What a plugin may take from ``module``: its ``__all__``, else its public attributes."""
    listed = getattr(module, "__all__", None)
    return set(listed) if listed is not None else {n for n in vars(module) if not n.startswith("_")}


PYTHON = code_blocks(DOC, "python")


# ---------------------------------------------------------------- the checks themselves


def test_the_page_is_read_as_expected() -> None:
    """The helpers find what they look for, so the checks below cannot pass on nothing."""
    assert len(PYTHON) >= 10
    assert sum(complete for _, _, complete in PYTHON) >= 2
    assert "Source" in table_names(section(DOC, "The SDK: hub.sdk"))
    blocks = code_blocks("x\n\n  ```python\n  a = 1\n  ```\n<!-- complete example -->\n```python\nb\n```\n",
                         "python")
    assert blocks == [(3, "a = 1\n", False), (7, "b\n", True)]


# ---------------------------------------------------------------- names


def test_every_import_from_the_sdk_names_a_public_name() -> None:
    missing = []
    for line, code, _ in PYTHON:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hub.sdk"):
                module = importlib.import_module(node.module or "")
                missing += [f"line {line}: from {node.module} import {a.name}"
                            for a in node.names if a.name not in public_names(module)]
            elif (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "hub"
                  and not (node.module or "").startswith("hub.testing")):
                missing.append(f"line {line}: a plugin imports only hub.sdk, not {node.module}")
    assert not missing, "\n".join(missing)


def missing_dotted(doc: str) -> list[str]:
    """Each backticked ``hub.sdk.X`` (or ``hub.sdk.sub.Y``, ``hub.sdk.X.attr``) in ``doc``
    that the SDK's public surface does not hold."""
    missing = []
    for dotted in sorted(set(re.findall(r"`(hub\.sdk(?:\.\w+)+)", doc))):
        first, *rest = dotted.split(".")[2:]
        if first == "__all__":
            continue
        value: Any = getattr(hub.sdk, first, None) if first in hub.sdk.__all__ else None
        for part in rest:
            if isinstance(value, types.ModuleType) and part not in public_names(value):
                value = None
            value = getattr(value, part, None) if value is not None else None
        if value is None:
            missing.append(dotted)
    return missing


def test_the_dotted_name_check_finds_a_wrong_name() -> None:
    assert missing_dotted("`hub.sdk.Source`, `hub.sdk.telephony.call_event`, `hub.sdk.Source.nonce`") == []
    assert missing_dotted("`hub.sdk.Nonces`, `hub.sdk.telephony.nope`, `hub.sdk.ParseErrors`") == [
        "hub.sdk.Nonces", "hub.sdk.ParseErrors", "hub.sdk.telephony.nope"]


def test_every_dotted_sdk_name_exists() -> None:
    """``hub.sdk.X`` (and ``hub.sdk.sub.Y``) in prose or tables is in the public surface."""
    missing = missing_dotted(DOC)
    assert not missing, f"not in hub.sdk's public surface: {missing}"


def test_the_sdk_table_lists_only_names_that_exist() -> None:
    """The ``in hub.sdk`` table: first-column names are in ``hub.sdk.__all__``; a row for a
    submodule lists helpers that submodule has."""
    text = section(DOC, "The SDK: hub.sdk")
    missing = []
    for row in text.splitlines():
        if not row.startswith("| `"):
            continue
        cells = row.split("|")
        for name in re.findall(r"`([^`]+)`", cells[1]):
            if name.startswith("hub.sdk."):
                module = importlib.import_module(name)
                missing += [f"{name}.{n}" for n in re.findall(r"`(\w+)`", cells[2])
                            if n not in public_names(module)]
            elif not fnmatch.filter(hub.sdk.__all__, name):
                missing.append(name)
    assert not missing, f"the SDK table names what hub.sdk lacks: {missing}"


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize(("line", "code"), [(line, code) for line, code, _ in PYTHON],
                         ids=[f"line{line}" for line, _, _ in PYTHON])
def test_every_python_example_compiles(line: int, code: str) -> None:
    compile(code, f"docs/writing-plugins.md:{line}", "exec", dont_inherit=True)


COMPLETE_BLOCKS = [(line, code) for line, code, complete in PYTHON if complete]


@pytest.mark.parametrize(("line", "code"), COMPLETE_BLOCKS,
                         ids=[f"line{line}" for line, _ in COMPLETE_BLOCKS])
def test_complete_examples_run_and_declare_what_discovery_accepts(line: int, code: str) -> None:
    """A complete example defines its connector classes without error, and discovery would
    load them: valid capabilities, declared rather than inferred."""
    namespace: dict[str, Any] = {"__name__": "writing_plugins_example"}
    exec(compile(code, f"docs/writing-plugins.md:{line}", "exec", dont_inherit=True), namespace)
    classes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, Connector)
               and v.__module__ == "writing_plugins_example"]
    assert classes, "a complete example defines a connector class"
    for cls in classes:
        assert not problems(cls), problems(cls)
        assert not cls.capabilities_inferred, f"{cls.__name__} should declare its capabilities"
        assert cls.Config.model_json_schema()


def test_no_example_sets_the_old_capability_flags() -> None:
    """``counts_own_requests``/``annotates_duplicates`` became ``Capability`` members; the
    page shows the declaration (the flags are described once, as kept for old classes)."""
    old = [f"line {line}" for line, code, _ in PYTHON
           if re.search(r"^\s*(counts_own_requests|annotates_duplicates)\s*[:=]", code, re.MULTILINE)]
    assert not old


# ---------------------------------------------------------------- what the core reads


def test_every_source_attribute_the_core_reads_has_a_row() -> None:
    text = section(DOC, "Writing a source")
    declared = {n for klass in (Source, Connector) for n in vars(klass).get("__annotations__", {})}
    internal = {"kind", "plugin_id", "capabilities_declared", "capabilities_inferred", "capabilities"}
    missing = sorted(declared - internal - table_names(text))
    assert not missing, f"'Writing a source' needs a table row for {missing}"
    assert "nonce(request)" in text and "Nonce(value, ttl_s, content)" in text


def test_every_destination_attribute_has_a_row() -> None:
    text = section(DOC, "Writing a destination")
    declared = {n for klass in (Destination, Connector) for n in vars(klass).get("__annotations__", {})}
    internal = {"kind", "plugin_id", "capabilities_declared", "capabilities_inferred",
                "annotates_duplicates", "counts_own_requests"}  # the old flags: see Capabilities
    missing = sorted(declared - internal - table_names(text))
    assert not missing, f"'Writing a destination' needs a table row for {missing}"


def test_every_capability_has_a_row() -> None:
    rows = table_names(section(DOC, "Capabilities"))
    missing = [c.name for c in Capability if c.name not in rows]
    assert not missing, f"the Capabilities table needs a row for {missing}"
