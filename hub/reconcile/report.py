"""Flags as the contract shows them: both sides' records, and the evidence.

``flag_frame`` says *that* a party is a discrepancy; an admin needs to see *who*: the
names, phones, e-mails, tax id, amounts, dates and external ids of each side's records,
so that the flag can be checked against 1C and the CRM without a search. Details are
gathered only for flagged clients (a semi-join on the records), not for the million
matched ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from hub.reconcile.flags import FlagParams


@dataclass(frozen=True)
class FlagRecord:
    """One discrepancy, ready to be stored: identified by kind and both sides' keys."""

    kind: str
    accounting_key: str
    crm_key: str
    accounting: dict[str, Any] | None
    crm: dict[str, Any] | None
    evidence: dict[str, Any]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _sides(records: pl.DataFrame, keys: set[str]) -> dict[str, dict[str, Any]]:
    """Per client key: its records summed up for a person to read."""
    if not keys:
        return {}
    picked = records.filter(pl.col("client_key").is_in(list(keys)))
    grouped = picked.group_by("client_key").agg(
        pl.col("name").drop_nulls().unique().sort().alias("names"),
        pl.col("inn").drop_nulls().unique().sort().alias("inns"),
        pl.col("phones").explode().drop_nulls().unique().sort().alias("phones"),
        pl.col("emails").explode().drop_nulls().unique().sort().alias("emails"),
        pl.col("amount").sum().alias("amount"),
        pl.col("date").min().alias("first_date"),
        pl.col("date").max().alias("last_date"),
        pl.col("external_id").drop_nulls().sort().alias("external_ids"),
    )
    return {row["client_key"]: row for row in grouped.iter_rows(named=True)}


def _side(details: dict[str, dict[str, Any]], joined: str) -> dict[str, Any] | None:
    """A party's side: its clients' records merged (a party may hold several clients)."""
    keys = [k for k in joined.split("|") if k]
    rows = [details[k] for k in keys if k in details]
    if not rows:
        return None

    def merged(field: str) -> list[Any]:
        return sorted({v for r in rows for v in r[field]})

    inns = merged("inns")
    return {
        "client_keys": keys,
        "names": merged("names"),
        "phones": merged("phones"),
        "emails": merged("emails"),
        "inn": inns[0] if len(inns) == 1 else (inns or None),
        "amount": round(sum(r["amount"] for r in rows), 2),
        "first_date": _iso(min(r["first_date"] for r in rows)),
        "last_date": _iso(max(r["last_date"] for r in rows)),
        "external_ids": sorted(x for r in rows for x in r["external_ids"]),
    }


def flag_records(flags: pl.DataFrame, accounting: pl.DataFrame, crm: pl.DataFrame,
                 params: FlagParams) -> list[FlagRecord]:
    """``flag_frame``'s rows with both sides' details and the evidence behind each."""
    acc_keys = {k for s in flags["accounting_key"].to_list() for k in s.split("|") if k}
    crm_keys = {k for s in flags["crm_key"].to_list() for k in s.split("|") if k}
    acc_details, crm_details = _sides(accounting, acc_keys), _sides(crm, crm_keys)
    out = []
    for row in flags.iter_rows(named=True):
        acc = _side(acc_details, row["accounting_key"])
        crm_side = _side(crm_details, row["crm_key"])
        evidence: dict[str, Any] = {}
        if row["kind"] == "amount_mismatch":
            difference = row["accounting_total"] - row["crm_total"]
            evidence = {
                "accounting_total": round(row["accounting_total"], 2),
                "crm_total": round(row["crm_total"], 2),
                "difference": round(difference, 2),
                "share": round(abs(difference) / abs(row["accounting_total"]), 4)
                if row["accounting_total"] else None,
                "amount_tolerance": params.amount_tolerance,
                "matched_by": (row["how"] or "").split(","),
            }
        elif row["kind"] == "missing_in_crm":
            evidence = {"accounting_total": round(row["accounting_total"], 2),
                        "searched_by": ["phone", "email", "inn", "name"]}
        else:
            evidence = {"crm_total": round(row["crm_total"], 2),
                        "payment_grace_days": params.payment_grace_days,
                        "won_at": crm_side["first_date"] if crm_side else None}
        out.append(FlagRecord(row["kind"], row["accounting_key"], row["crm_key"], acc, crm_side, evidence))
    return out
