"""Matching clients by name, where no phone, email or tax id joins them.

A manager types "Иванов Иван" where the books say "ИП Иванов Иван Иванович", or
misspells the surname. Names alone are weak evidence, so a pair is accepted only when
the names are similar and the sums agree. Same name alone is not enough: namesakes are
common ("Иванов Иван"), and a false match is worse than none, since it hides a client who
paid and is missing in the CRM. A typo'd name whose sums differ too is reported on both
sides (missing in each) rather than guessed into an ``amount_mismatch``.

Comparing every lonely client with every other is quadratic; pairs are formed only
within blocks (clients sharing the first four letters of a name word), and a block
made of a very common word ("ромашка", a frequent first name) is skipped when it would
yield more pairs than ``max_block_pairs``. Scores come from rapidfuzz (the better of the
plain and the word-sorted ratio), computed pair-wise in its native code, not in a Python
loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process


@dataclass(frozen=True)
class FuzzyParams:
    similar: float = 90.0  # accepted when the sums agree within ``amount_tolerance``
    amount_tolerance: float = 0.01
    block_prefix: int = 4
    max_block_pairs: int = 10_000


def _blocks(side: pl.DataFrame, prefix: int) -> pl.DataFrame:
    return (side.select("node", pl.col("name").str.split(" ").alias("word")).explode("word")
            .filter(pl.col("word").str.len_chars() >= 3)
            .select("node", pl.col("word").str.slice(0, prefix).alias("block")).unique())


def match_names(acc: pl.DataFrame, crm: pl.DataFrame, params: FuzzyParams) -> pl.DataFrame:
    """Pairs ``(u, v, score)`` of accounting node ``u`` and CRM node ``v``, each node in at
    most one pair (mutual best match). Both frames: ``node``, ``name`` (``name_key``),
    ``total``."""
    empty = pl.DataFrame(schema={"u": pl.UInt32, "v": pl.UInt32, "score": pl.Float64})
    acc, crm = acc.drop_nulls("name"), crm.drop_nulls("name")
    if acc.height == 0 or crm.height == 0:
        return empty
    a_blocks, c_blocks = _blocks(acc, params.block_prefix), _blocks(crm, params.block_prefix)
    sizes = (a_blocks.group_by("block").len("a").join(c_blocks.group_by("block").len("c"), on="block")
             .filter(pl.col("a") * pl.col("c") <= params.max_block_pairs))
    pairs = (a_blocks.join(sizes.select("block"), on="block")
             .join(c_blocks, on="block", suffix="_crm")
             .select(pl.col("node").alias("u"), pl.col("node_crm").alias("v")).unique())
    if pairs.height == 0:
        return empty
    pairs = (pairs.join(acc.select(pl.col("node").alias("u"), pl.col("name").alias("a_name"),
                                   pl.col("total").alias("a_total")), on="u")
             .join(crm.select(pl.col("node").alias("v"), pl.col("name").alias("c_name"),
                              pl.col("total").alias("c_total")), on="v"))
    a_names, c_names = pairs["a_name"].to_list(), pairs["c_name"].to_list()
    # Both as written and with words sorted: a typo can move a word in the sorted order
    # ("иваноф" sorts after "иванович"), and a swapped word order defeats the plain ratio.
    scores = np.maximum(process.cpdist(a_names, c_names, scorer=fuzz.ratio, workers=-1),
                        process.cpdist(a_names, c_names, scorer=fuzz.token_sort_ratio, workers=-1))
    gap = (pl.col("a_total") - pl.col("c_total")).abs()
    sums_agree = gap <= params.amount_tolerance * pl.col("a_total").abs()
    scored = (pairs.with_columns(pl.Series("score", scores, dtype=pl.Float64))
              .filter((pl.col("score") >= params.similar) & sums_agree)
              .select("u", "v", "score"))
    best_u = pl.col("score") == pl.col("score").max().over("u")
    best_v = pl.col("score") == pl.col("score").max().over("v")
    mutual = scored.filter(best_u & best_v)
    # Ties: keep one pair per node, the lowest ids, so the result does not depend on order.
    return mutual.sort("u", "v").unique("u", keep="first").unique("v", keep="first")
