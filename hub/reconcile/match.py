"""Who paid, who was won, and who is missing where: the reconcile engine's core.

Input: two frames of records, one row per payment (accounting) or per won deal (CRM),
each naming its client. Output: the clients of both sides grouped into matches, plus the
clients left alone on either side. Everything is columnar (polars), so a million rows per
side take seconds and a few hundred MB, not a Python loop per row.

How clients match, in order:
1. **Exact keys.** Each client's phones, emails and tax id become keys
   (``hub/reconcile/keys.py``); an accounting client and a CRM client sharing any key are
   one party. Keys shared by too many clients on one side (a switchboard number, the
   manager's own phone typed into every card) say nothing and are dropped. Matches chain
   (a 1C counterparty with two phones, each on another amoCRM contact), so a party is a
   connected component of the key graph, found by min-label propagation.
2. **Names**, for clients still alone on both sides: ``hub/reconcile/fuzzy.py``.

A party's payments are summed, and so are its won deals; the sums are compared by the
caller (``hub/reconcile/flags.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from hub.reconcile.fuzzy import FuzzyParams, match_names
from hub.reconcile.keys import email_key, inn_key, name_key, phone_keys

#: The columns a side's records come in; ``phones``/``emails`` are lists of strings as
#: written, ``date`` is when it was paid (accounting) or won (CRM).
RECORD_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "client_key": pl.Utf8,
    "name": pl.Utf8,
    "inn": pl.Utf8,
    "phones": pl.List(pl.Utf8),
    "emails": pl.List(pl.Utf8),
    "amount": pl.Float64,
    "date": pl.Datetime("us", "UTC"),
    "external_id": pl.Utf8,
}
#: A key held by more clients than this on one side identifies nobody.
MAX_CLIENTS_PER_KEY = 5


@dataclass(frozen=True)
class MatchParams:
    default_region: str = "RU"
    max_clients_per_key: int = MAX_CLIENTS_PER_KEY
    fuzzy: FuzzyParams = field(default_factory=FuzzyParams)


@dataclass(frozen=True)
class Matching:
    """``clients_*``: one row per client of a side, with ``party`` (null when alone) and
    its sums; ``parties``: one row per matched party with both sides' sums and how it matched."""

    clients_accounting: pl.DataFrame
    clients_crm: pl.DataFrame
    parties: pl.DataFrame


def _numbered(records: pl.LazyFrame, offset: int = 0) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """(clients, records with ``node``): one row per client — the first name and tax id
    seen, the sum and dates of its records — numbered from ``offset``, so that everything
    after this joins and groups on integers, not on client keys."""
    clients = records.group_by("client_key", maintain_order=True).agg(
        pl.col("name").drop_nulls().first(),
        pl.col("inn").drop_nulls().first(),
        pl.col("amount").sum().alias("total"),
        pl.len().alias("records"),
        pl.col("date").min().alias("first_date"),
        pl.col("date").max().alias("last_date"),
    ).with_row_index("node", offset)
    return clients, records.join(clients.select("client_key", "node"), on="client_key")


def _keys(records: pl.LazyFrame, region: str, limit: int) -> pl.LazyFrame:
    """(node, value) for every usable key of every client, de-duplicated, with keys shared
    by more than ``limit`` clients of this side dropped. Kinds need no column of their
    own: a phone key starts with ``+``, an e-mail holds ``@``, a tax id is digits only."""
    phones = phone_keys(
        records.select("node", pl.col("phones").alias("value")).explode("value")
        .with_columns(pl.col("value").str.split(",")).explode("value"), "value", region,
    )
    emails = records.select("node", pl.col("emails").alias("raw")).explode("raw").select(
        "node", email_key(pl.col("raw")).alias("value"))
    inns = records.select("node", inn_key(pl.col("inn")).alias("value"))
    keys = pl.concat([phones, emails, inns]).drop_nulls("value").unique()
    return keys.filter(pl.len().over("value") <= limit)


def _kind(value: pl.Expr) -> pl.Expr:
    return (pl.when(value.str.starts_with("+")).then(pl.lit("phone"))
            .when(value.str.contains("@", literal=True)).then(pl.lit("email")).otherwise(pl.lit("inn")))


def _components(edges: pl.DataFrame) -> pl.DataFrame:
    """Connected components of a graph given as (u, v) edges: (node, label) with the
    smallest node id of its component as the label, for every node that has an edge.

    Most parties are one client on each side: an edge whose both ends have no other edge
    is its own component, settled without iterating. The rest go through min-label
    propagation with pointer jumping, which settles chains in a few rounds."""
    edges = edges.select("u", "v").unique()
    single = (pl.len().over("u") == 1) & (pl.len().over("v") == 1)
    edges = edges.with_columns(single.alias("single"))
    pairs = edges.filter("single")
    settled = pl.concat([pairs.select(pl.col("u").alias("node"), pl.col("u").alias("label")),
                         pairs.select(pl.col("v").alias("node"), pl.col("u").alias("label"))])
    rest = edges.filter(~pl.col("single"))
    if rest.height == 0:
        return settled
    both = pl.concat([rest.select("u", "v"), rest.select(pl.col("v").alias("u"), pl.col("u").alias("v"))])
    labels = both.group_by("u").agg(pl.min("v").alias("label")).with_columns(
        pl.min_horizontal("u", "label").alias("label"))
    while True:
        spread = (both.join(labels, left_on="v", right_on="u").group_by("u")
                  .agg(pl.min("label").alias("seen")))
        nxt = (labels.join(spread, on="u")
               .with_columns(pl.min_horizontal("label", "seen").alias("label")).drop("seen"))
        # Pointer jumping: a node takes its label's label, which halves long chains.
        nxt = nxt.join(nxt.rename({"u": "label", "label": "hop"}), on="label", how="left").with_columns(
            pl.min_horizontal("label", pl.col("hop").fill_null(pl.col("label"))).alias("label")).drop("hop")
        if nxt.join(labels, on="u").filter(pl.col("label") != pl.col("label_right")).height == 0:
            return pl.concat([settled, nxt.rename({"u": "node"})])
        labels = nxt


def match(accounting: pl.DataFrame, crm: pl.DataFrame, params: MatchParams = MatchParams()) -> Matching:
    """Group both sides' clients into parties (see the module docstring)."""
    acc_clients_lf, acc_records = _numbered(accounting.lazy())
    acc_clients = acc_clients_lf.collect()
    crm_clients_lf, crm_records = _numbered(crm.lazy(), offset=acc_clients.height)
    # One side at a time: collecting both at once is no faster on two cores and holds
    # both sides' intermediate strings at the same time (+150 MB at a million rows).
    crm_clients = crm_clients_lf.collect()
    acc_keys = _keys(acc_records, params.default_region, params.max_clients_per_key).collect()
    crm_keys = _keys(crm_records, params.default_region, params.max_clients_per_key).collect()
    exact = (acc_keys.rename({"node": "u"}).join(crm_keys.rename({"node": "v"}), on="value")
             .group_by("u", "v").agg(_kind(pl.col("value")).unique().sort().str.join("+").alias("how")))

    # Names, among the clients no key matched.
    lonely_acc = acc_clients.join(exact.select(pl.col("u").alias("node")), on="node", how="anti")
    lonely_crm = crm_clients.join(exact.select(pl.col("v").alias("node")), on="node", how="anti")
    named = match_names(
        lonely_acc.select("node", name_key(pl.col("name")).alias("name"), "total"),
        lonely_crm.select("node", name_key(pl.col("name")).alias("name"), "total"),
        params.fuzzy,
    ).select("u", "v", pl.concat_str(pl.lit("name:"), pl.col("score").round(0).cast(pl.Int32)).alias("how"))

    edges = pl.concat([exact.cast({"u": pl.UInt32, "v": pl.UInt32}), named])
    party = _components(edges).rename({"label": "party"}) if edges.height else pl.DataFrame(
        schema={"node": pl.UInt32, "party": pl.UInt32})
    acc_out = acc_clients.join(party, on="node", how="left")
    crm_out = crm_clients.join(party, on="node", how="left")
    how = (edges.join(party.rename({"node": "u"}), on="u").group_by("party")
           .agg(pl.col("how").unique().sort().alias("how")))
    parties = (
        acc_out.drop_nulls("party").group_by("party").agg(
            pl.col("client_key").sort().alias("accounting_keys"),
            pl.col("total").sum().alias("accounting_total"),
            pl.col("last_date").max().alias("accounting_last_date"))
        .join(crm_out.drop_nulls("party").group_by("party").agg(
            pl.col("client_key").sort().alias("crm_keys"), pl.col("total").sum().alias("crm_total"),
            pl.col("first_date").min().alias("crm_first_date")), on="party")
        .join(how, on="party", how="left")
    )
    return Matching(acc_out, crm_out, parties)
