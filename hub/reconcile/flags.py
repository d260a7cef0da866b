"""From a matching to the discrepancies the contract names (``CONTRACT.md`` "Reconciliation").

- ``missing_in_crm``: paid in accounting, no won deal in the CRM (the main one);
- ``missing_in_accounting``: won in the CRM more than ``payment_grace_days`` ago, no payment;
- ``amount_mismatch``: matched, the sums differ by more than ``amount_tolerance`` (a
  fraction of the accounting sum).

A flag is identified by its kind and both sides' client keys (joined by ``|``), so that a
later run finds the flag it raised before instead of raising it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from hub.reconcile.match import Matching

FLAG_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "kind": pl.Utf8,
    "accounting_key": pl.Utf8,
    "crm_key": pl.Utf8,
    "accounting_total": pl.Float64,
    "crm_total": pl.Float64,
    "how": pl.Utf8,
}


@dataclass(frozen=True)
class FlagParams:
    amount_tolerance: float = 0.01
    payment_grace_days: int = 0


def flag_frame(matching: Matching, params: FlagParams, now: datetime) -> pl.DataFrame:
    """One row per discrepancy (``FLAG_SCHEMA``), keys of several clients joined by ``|``."""
    alone_acc = matching.clients_accounting.filter(pl.col("party").is_null()).select(
        pl.lit("missing_in_crm").alias("kind"), pl.col("client_key").alias("accounting_key"),
        pl.lit("").alias("crm_key"), pl.col("total").alias("accounting_total"),
        pl.lit(None, pl.Float64).alias("crm_total"), pl.lit(None, pl.Utf8).alias("how"))
    due = now - timedelta(days=params.payment_grace_days)
    alone_crm = matching.clients_crm.filter(
        pl.col("party").is_null() & (pl.col("first_date") <= pl.lit(due, pl.Datetime("us", "UTC")))
    ).select(
        pl.lit("missing_in_accounting").alias("kind"), pl.lit("").alias("accounting_key"),
        pl.col("client_key").alias("crm_key"), pl.lit(None, pl.Float64).alias("accounting_total"),
        pl.col("total").alias("crm_total"), pl.lit(None, pl.Utf8).alias("how"))
    p = matching.parties
    mismatch = p.filter(
        (pl.col("accounting_total") - pl.col("crm_total")).abs()
        > params.amount_tolerance * pl.col("accounting_total").abs()
    ).select(
        pl.lit("amount_mismatch").alias("kind"),
        pl.col("accounting_keys").list.join("|").alias("accounting_key"),
        pl.col("crm_keys").list.join("|").alias("crm_key"), "accounting_total", "crm_total",
        pl.col("how").list.join(",").alias("how"))
    return pl.concat([alone_acc, alone_crm, mismatch]).cast(FLAG_SCHEMA)  # type: ignore[arg-type]
