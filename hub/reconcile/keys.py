"""Matching keys for reconciliation, computed a column at a time.

The books and the CRM were typed by different people: ``8 (916) 111-22-38`` in 1C,
``+7 916 1112238`` in amoCRM, ``IVAN@MAIL.RU`` against ``ivan@mail.ru``, a tax id with
spaces. Both sides must end on the same key, and a million rows must not pass one by one
through ``phonenumbers`` (~20 µs each: 40 s for two million phones).

So a phone's key is a canonical digit string, not a validated number: the digits with
the default region's trunk prefix replaced by its country code (``89161112238`` and
``+7 916 111-22-38`` both become ``+79161112238``), which is the number's E.164 form
whenever the number is well formed. A number both sides wrote the same wrong way still
matches, which is what reconciliation wants; fewer than 7 digits is not a phone.
Everything here is a polars expression: pure, and run in polars' native code.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
import polars as pl

#: What ends the number in "8 916 111-22-38 доб. 123" or "+7 495 123-45-67 ext 5".
_EXTENSION = r"(?i)\s*(доб|ext|вн|x|#)\.?\s*\d{1,6}\s*$"
#: Legal forms and quotes that make "ООО «Ромашка»" and "Ромашка" different strings.
_LEGAL_FORMS = (
    r"\b(ооо|оао|зао|пао|ао|нко|ип|чп|тоо|llc|ltd|inc|gmbh|индивидуальный предприниматель|"
    r"общество с ограниченной ответственностью|акционерное общество)\b"
)


@lru_cache(maxsize=64)
def _region_prefixes(region: str) -> tuple[str, str]:
    """(country calling code, national trunk prefix) of a region, from libphonenumber's
    metadata: RU → ("7", "8"), DE → ("49", "0"); an unknown region gives ("", "")."""
    region = region.strip().upper()
    code = phonenumbers.country_code_for_region(region)
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = (meta.national_prefix or "") if meta is not None else ""
    return (str(code) if code else "", trunk)


def phone_keys(frame: pl.LazyFrame, column: str, region: str) -> pl.LazyFrame:
    """``frame`` with ``column`` replaced by the phone's key (``+<digits>``), or null when it
    cannot be a phone. Staged ``with_columns``, so the digits are extracted once, not once
    per rule that reads them (3 s → 0.3 s on a million phones)."""
    code, trunk = _region_prefixes(region)
    text = pl.col(column).str.replace(_EXTENSION, "").str.strip_chars()
    frame = frame.with_columns(
        (text.str.starts_with("+") | text.str.starts_with("00")).alias("_intl"),
        text.str.starts_with("00").alias("_00"),
        text.str.replace_all(r"[^0-9]", "").alias("_d"),
    ).with_columns(
        pl.when(pl.col("_00")).then(pl.col("_d").str.slice(2)).otherwise(pl.col("_d")).alias("_d"),
    ).with_columns(pl.col("_d").str.len_chars().alias("_n"))
    d, n, intl = pl.col("_d"), pl.col("_n"), pl.col("_intl")
    national_len = 10 if code == "7" else None  # Russia and Kazakhstan: 10 national digits
    if code and trunk:
        # "8 916 ..." (RU) or "0 30 ..." (DE): the trunk prefix stands for the country code.
        with_trunk = d.str.starts_with(trunk)
        if national_len is not None:
            with_trunk = with_trunk & (n == national_len + len(trunk))
        by_trunk = pl.lit(code) + d.str.slice(len(trunk))
        if national_len is not None:
            # "7 916 ..." without the plus, and the bare ten digits "916 ...".
            local_digits = (pl.when(with_trunk).then(by_trunk)
                            .when(d.str.starts_with(code) & (n == national_len + len(code))).then(d)
                            .when(n == national_len).then(pl.lit(code) + d).otherwise(pl.lit(code) + d))
        else:
            local_digits = pl.when(with_trunk).then(by_trunk).otherwise(pl.lit(code) + d)
    elif code:
        local_digits = pl.lit(code) + d
    else:
        local_digits = d
    slip = pl.lit(False)
    if code == "7":
        # "+8 916 ..." is a common Russian slip for the trunk prefix "8 916 ...".
        slip = intl & d.str.starts_with("8") & (n == 11)
    full = (pl.when(slip).then(pl.lit("7") + d.str.slice(1))
            .when(intl).then(d).otherwise(local_digits))
    return frame.with_columns(full.alias("_d")).with_columns(
        pl.when(pl.col("_d").str.len_chars().is_between(7, 15)).then(pl.lit("+") + pl.col("_d"))
        .otherwise(None).alias(column)
    ).drop("_intl", "_00", "_d", "_n")


def email_key(raw: pl.Expr) -> pl.Expr:
    """The address trimmed and lower-cased (``mailto:`` dropped), null when it has no ``@``."""
    text = raw.str.strip_chars().str.to_lowercase().str.replace(r"^mailto:", "")
    return pl.when(text.str.contains(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")).then(text).otherwise(None)


def inn_key(raw: pl.Expr) -> pl.Expr:
    """A Russian tax id: 10 digits (a company) or 12 (a sole proprietor), else null."""
    digits = raw.str.replace_all(r"[^0-9]", "")
    return pl.when(digits.str.len_chars().is_in([10, 12])).then(digits).otherwise(None)


def name_key(raw: pl.Expr) -> pl.Expr:
    """A person's or company's name for fuzzy comparison: lower-case, ё → е, legal forms,
    quotes and punctuation dropped, spaces collapsed (``ООО «Ромашка»`` → ``ромашка``)."""
    text = raw.str.to_lowercase().str.replace_all("ё", "е")
    text = text.str.replace_all(r"[«»\"'“”„`]", " ").str.replace_all(_LEGAL_FORMS, " ")
    text = text.str.replace_all(r"[^\w\s]", " ").str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(text.str.len_chars() > 0).then(text).otherwise(None)
