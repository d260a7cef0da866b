"""The store: every table LeadHub keeps (``tables.py``) and the modules that own its
queries, one per subject (``leads.py``, ``deliveries.py``, ``quarantine.py`` ...), for
SQLite and PostgreSQL alike; where the two differ, ``dialect.py`` decides."""

from __future__ import annotations

from typing import Any, TypeAlias

from sqlalchemy import Row

#: a result row of any shape; its columns are attributes (``row.id``)
StoredRow: TypeAlias = Row[*tuple[Any, ...]]
