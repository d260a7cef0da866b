"""The store: every table LeadHub keeps (``tables.py``) and the modules that own its
queries, one per subject (``leads.py``, ``deliveries.py``, ``quarantine.py`` ...), for
SQLite and PostgreSQL alike; where the two differ, ``dialect.py`` decides."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

from sqlalchemy import Row


class JsonText(str):
    """A JSON column's value already encoded (a lead is encoded straight from its model,
    about a fifth of the cost of a dict then ``json.dumps``); every engine writes it as
    it is (``hub/store/db.py``'s JSON serializer)."""


def encode_json(value: Any) -> str:
    """The engines' JSON serializer: ``JsonText`` as it is, anything else ``json.dumps``."""
    return value if isinstance(value, JsonText) else json.dumps(value)


#: a result row of any shape; its columns are attributes (``row.id``)
StoredRow: TypeAlias = Row[*tuple[Any, ...]]
