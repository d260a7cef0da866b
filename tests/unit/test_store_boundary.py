"""The store owns the queries: outside ``hub/store/`` no module builds SQL or asks which
database it runs on (docs/architecture.md, "Where queries live").

An AST check over every module of ``hub`` outside ``hub/store`` (and ``hub/testing``,
whose kits and fixtures read the tables to check what a test did): it may import
``Connection`` and ``Engine`` from ``sqlalchemy`` (to pass a connection to a store
function) and its exceptions (``sqlalchemy.exc``), nothing else of SQLAlchemy, and never
``hub.store.tables``; and it never reads ``<engine or connection>.dialect.name``
(``hub/store/dialect.py`` does). The modules not converted yet are listed below with
the reason; the test also fails when a listed module no longer needs its entry, so the
list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HUB = Path(__file__).resolve().parents[2] / "hub"

#: sqlalchemy names a module outside the store may import: types, not query builders
ALLOWED_SQLALCHEMY = {"Connection", "Engine"}
#: sqlalchemy modules it may import from: the exceptions a store call raises
ALLOWED_SQLALCHEMY_MODULES = {"sqlalchemy.exc"}

#: module (relative to the repository) -> why it still holds SQL
NOT_CONVERTED: dict[str, str] = {}


def _modules() -> list[Path]:
    outside = (HUB / "store", HUB / "testing")
    return sorted(p for p in HUB.rglob("*.py") if not any(d in p.parents for d in outside))


def _name(path: Path) -> str:
    return path.relative_to(HUB.parent).as_posix()


def violations(source: str) -> list[str]:
    """What in ``source`` (a module's text) reaches past the store: SQLAlchemy beyond
    ``Connection``/``Engine`` (and ``sqlalchemy.exc``), the tables, or the dialect's name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "sqlalchemy" or alias.name.startswith("sqlalchemy."):
                    found.append(f"line {node.lineno}: import {alias.name}")
                if alias.name == "hub.store.tables":
                    found.append(f"line {node.lineno}: import hub.store.tables")
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {a.name for a in node.names}
            if node.module == "sqlalchemy" and not names <= ALLOWED_SQLALCHEMY:
                found.append(f"line {node.lineno}: from sqlalchemy import "
                             f"{', '.join(sorted(names - ALLOWED_SQLALCHEMY))}")
            elif node.module.startswith("sqlalchemy.") and node.module not in ALLOWED_SQLALCHEMY_MODULES:
                found.append(f"line {node.lineno}: from {node.module} import ...")
            elif node.module == "hub.store.tables" or (node.module == "hub.store" and "tables" in names):
                found.append(f"line {node.lineno}: the tables (hub.store.tables)")
        elif (isinstance(node, ast.Attribute) and node.attr == "name"
              and isinstance(node.value, ast.Attribute) and node.value.attr == "dialect"):
            found.append(f"line {node.lineno}: .dialect.name (use hub.store.dialect)")
    return found


@pytest.mark.parametrize("path", _modules(), ids=_name)
def test_no_sql_outside_the_store(path: Path) -> None:
    found = violations(path.read_text(encoding="utf-8"))
    name = _name(path)
    if name in NOT_CONVERTED:
        assert found, f"{name} holds no SQL any more: remove it from NOT_CONVERTED"
    else:
        assert not found, f"{name} builds SQL outside hub/store: " + "; ".join(found)


def test_listed_modules_exist() -> None:
    missing = [name for name in NOT_CONVERTED if not (HUB.parent / name).exists()]
    assert not missing, f"NOT_CONVERTED lists modules that are gone: {missing}"


@pytest.mark.parametrize("source", [
    "from sqlalchemy import select",
    "from sqlalchemy import Connection, update",
    "import sqlalchemy",
    "from sqlalchemy.dialects.postgresql import insert",
    "from hub.store import tables as t",
    "from hub.store.tables import leads",
    "def f():\n    from sqlalchemy import text\n",
    "ok = conn.dialect.name == 'postgresql'",
])
def test_the_check_sees(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize("source", [
    "from sqlalchemy import Connection, Engine",
    "from sqlalchemy.exc import IntegrityError",
    "from hub.store import leads as lead_store",
    "from hub.store.dialect import for_update",
    "name = spec.plugin.name",
])
def test_the_check_allows(source: str) -> None:
    assert not violations(source)
