"""Reader pages into the matcher's frame: one row per won deal or payment, ``RECORD_SCHEMA``.

A reader streams pages (``hub/sdk/readers.py``); this turns them into the columnar frame
``hub/reconcile/match.py`` takes, column by column, without keeping the records: a page
is folded into the columns and dropped, so a million records cost their columns (tens of
MB), not a million Python objects held until the end. Pure: no I/O, no clock.

``details=True`` adds what a flag shows but the matcher does not use: the deal's title,
pipeline and status, or the payment's document kind and number.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

import polars as pl

from hub.reconcile.match import RECORD_SCHEMA
from hub.sdk.readers import Payment, WonDeal

#: Columns ``details=True`` adds, by record type, after ``RECORD_SCHEMA``'s.
DEAL_DETAILS: dict[str, pl.DataType | type[pl.DataType]] = {
    "title": pl.Utf8, "pipeline": pl.Utf8, "status": pl.Utf8,
}
PAYMENT_DETAILS: dict[str, pl.DataType | type[pl.DataType]] = {
    "document_kind": pl.Utf8, "number": pl.Utf8,
}


def records_frame(
    pages: Iterable[Sequence[WonDeal]] | Iterable[Sequence[Payment]], *, details: bool = False,
) -> pl.DataFrame:
    """One frame of ``RECORD_SCHEMA`` (plus the details) from a reader's pages, in order.

    Pages of one reader hold one record type; ``details`` needs to know which, and takes
    it from the first record (no records: the deal columns, all empty)."""
    schema = dict(RECORD_SCHEMA)
    columns: dict[str, list[Any]] = {name: [] for name in schema}
    extra: dict[str, pl.DataType | type[pl.DataType]] | None = None
    for page in pages:
        for record in page:
            if extra is None:
                extra = DEAL_DETAILS if isinstance(record, WonDeal) else PAYMENT_DETAILS
                if details:
                    columns.update({name: [] for name in extra})
            _append(columns, record)
    if details:
        extra = extra or DEAL_DETAILS
        schema.update(extra)
        columns.update({name: [] for name in extra if name not in columns})
    return pl.DataFrame(columns, schema=schema)


_RECORD_FIELDS = {cls: {f.name for f in fields(cls)} for cls in (WonDeal, Payment)}


def _append(columns: dict[str, list[Any]], record: WonDeal | Payment) -> None:
    known = _RECORD_FIELDS[WonDeal if isinstance(record, WonDeal) else Payment]
    for name, values in columns.items():
        if name not in known:
            raise TypeError(f"pages mix won deals and payments ({type(record).__name__} "
                            f"has no {name!r})")
        value = getattr(record, name)
        values.append(list(value) if isinstance(value, tuple) else value)
