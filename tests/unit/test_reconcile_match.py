"""The reconcile engine's core: keys, matching, flags (pure; no store, no connectors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.normalize.phones import normalize_phone
from hub.reconcile.flags import FlagParams, flag_frame
from hub.reconcile.keys import phone_keys
from hub.reconcile.match import RECORD_SCHEMA, match

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def rec(key: str, name: str | None, amount: float, *, phones: list[str] | None = None,
        emails: list[str] | None = None, inn: str | None = None, days_ago: float = 10) -> dict[str, Any]:
    return {"client_key": key, "name": name, "inn": inn, "phones": phones or [], "emails": emails or [],
            "amount": amount, "date": NOW - timedelta(days=days_ago), "external_id": f"{key}-{amount}"}


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RECORD_SCHEMA)


def keys_of(raw: list[str], region: str = "RU") -> list[str | None]:
    return phone_keys(pl.LazyFrame({"p": raw}, schema={"p": pl.Utf8}), "p", region).collect()["p"].to_list()


def flags(acc: list[dict[str, Any]], crm: list[dict[str, Any]], **kw: Any) -> set[tuple[str, str, str]]:
    out = flag_frame(match(frame(acc), frame(crm)), FlagParams(**kw), NOW)
    return {(r["kind"], r["accounting_key"], r["crm_key"]) for r in out.iter_rows(named=True)}


def test_phone_keys_meet_whatever_the_manager_typed() -> None:
    forms = ["8 (916) 111-22-38", "+7 916 111 22 38", "9161112238", "79161112238", "+8 916 1112238",
             "8-916-111-22-38 доб. 12", "+7 (916) 111-22-38 ext 5"]
    assert set(keys_of(forms)) == {"+79161112238"}
    assert keys_of(["123", "", "+49 30 1234567", "0049 30 1234567"]) == [None, None, "+49301234567",
                                                                        "+49301234567"]
    assert keys_of(["030 1234567", "+49 30 1234567"], region="DE") == ["+49301234567"] * 2


@st.composite
def written_numbers(draw: st.DrawFn) -> tuple[str, str]:
    region = draw(st.sampled_from(["RU", "DE", "GB", "US", "KZ"]))
    example = phonenumbers.example_number_for_type(region, draw(st.sampled_from(
        [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])))
    assert example is not None
    fmt = draw(st.sampled_from([phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.NATIONAL,
                                phonenumbers.PhoneNumberFormat.INTERNATIONAL]))
    return region, phonenumbers.format_number(example, fmt)


@settings(max_examples=60, derandomize=True)
@given(written_numbers())
def test_phone_key_is_the_e164_the_hub_gives_a_valid_number(case: tuple[str, str]) -> None:
    """Reconciliation and ingest must agree: a key is the lead's E.164 for any valid number."""
    region, written = case
    assert keys_of([written], region) == [normalize_phone(written, region)]


def test_the_75_versus_70_story() -> None:
    """Managers' formats, a company known by INN under a trade name, an upper-cased email,
    a typo'd name, small and large amount differences, a client paid but absent, a deal won
    but unpaid (and one won too recently to expect its payment)."""
    acc = [
        rec("1c-1", "Иванов Иван", 10_000, phones=["8 (916) 111-22-38"]),
        rec("1c-1", "Иванов Иван", 5_000, phones=["8 (916) 111-22-38"]),
        rec("1c-2", "ООО «Ромашка»", 120_000, inn="7707083893"),
        rec("1c-3", "Петрова Анна", 30_000, emails=["ANNA.PETROVA@MAIL.RU"]),
        rec("1c-4", "Сидоров Пётр Ильич", 20_000),
        rec("1c-5", "Кузнецова Ольга", 10_050, phones=["+7 903 555-44-33"]),
        rec("1c-6", "Смирнов Олег", 40_000, phones=["89037778899"]),
        rec("1c-7", "Васильев Дмитрий", 25_000, phones=["+79260001122"]),  # paid, not in the CRM
    ]
    crm = [
        rec("amo-1", "Иван", 15_000, phones=["+79161112238"]),
        rec("amo-2", "Ромашка Трейд", 120_000, inn="7707 083 893"),
        rec("amo-3", "Анна", 30_000, emails=["anna.petrova@mail.ru"]),
        rec("amo-4", "Сидоров Петр Ильич", 20_000),  # no contact data, and ё written as е
        rec("amo-5", "Ольга", 10_000, phones=["9035554433"]),  # 0.5% off: no flag
        rec("amo-6", "Олег", 50_000, phones=["+7 903 777 88 99"]),  # 25% off: a flag
        rec("amo-7", "Фролов Игорь", 8_000, phones=["+79990001122"], days_ago=40),  # won, unpaid
        rec("amo-8", "Егорова Вера", 9_000, phones=["+79990003344"], days_ago=0.5),  # won today
    ]
    assert flags(acc, crm, payment_grace_days=3) == {
        ("missing_in_crm", "1c-7", ""),
        ("missing_in_accounting", "", "amo-7"),
        ("amount_mismatch", "1c-6", "amo-6"),
    }
    # With no grace (the default), a deal won today and unpaid is already a discrepancy.
    assert ("missing_in_accounting", "", "amo-8") in flags(acc, crm)


def test_matches_chain_into_one_party_and_sums_are_compared_per_party() -> None:
    """A 1C counterparty with two phones, each on another amoCRM contact, is one party."""
    acc = [rec("1c-1", "ООО Вектор", 30_000, phones=["+79161112238", "+79035554433"])]
    crm = [rec("amo-1", "Вектор (Иван)", 10_000, phones=["+79161112238"]),
           rec("amo-2", "Вектор (Олег)", 20_000, phones=["+79035554433"])]
    m = match(frame(acc), frame(crm))
    assert m.parties.height == 1
    row = m.parties.row(0, named=True)
    assert (row["accounting_keys"], row["crm_keys"]) == (["1c-1"], ["amo-1", "amo-2"])
    assert row["accounting_total"] == row["crm_total"] == 30_000
    assert flags(acc, crm) == set()


def test_a_phone_typed_into_many_cards_identifies_nobody() -> None:
    """The office switchboard on six CRM cards must not glue six clients to one payer."""
    office = "+74951234567"
    acc = [rec("1c-1", "Орлов Игорь", 1_000, phones=[office])]
    crm = [rec(f"amo-{i}", f"Клиент {i}", 1_000 * (i + 2), phones=[office]) for i in range(6)]
    out = flags(acc, crm)
    assert ("missing_in_crm", "1c-1", "") in out
    assert sum(1 for kind, _, _ in out if kind == "missing_in_accounting") == 6


def test_a_similar_name_alone_is_not_a_match() -> None:
    """Namesakes are common: without agreeing sums a similar name matches nothing, so the
    payer stays flagged as missing in the CRM (a false match would hide it)."""
    acc = [rec("1c-1", "Иванов Иван Иванович", 10_000)]
    crm = [rec("amo-1", "Иванов Иван Иванович", 70_000)]
    assert flags(acc, crm) == {("missing_in_crm", "1c-1", ""), ("missing_in_accounting", "", "amo-1")}
    crm_same_sum = [rec("amo-1", "Иваноф Иван Иванович", 10_000)]
    assert flags(acc, crm_same_sum) == set()


def test_empty_sides() -> None:
    assert flags([], []) == set()
    assert flags([rec("1c-1", "X", 1.0)], []) == {("missing_in_crm", "1c-1", "")}
    assert flags([], [rec("amo-1", "Y", 1.0)]) == {("missing_in_accounting", "", "amo-1")}


def test_the_reconcile_package_sets_polars_allocator_up_before_polars_loads() -> None:
    """Freed pages go back at once (hub/reconcile/__init__.py: the 1M x 1M peak 954 -> 828
    MB); set before polars is imported, in a fresh process as a worker is; an admin's own
    setting wins."""
    import os
    import subprocess
    import sys

    probe = ("import hub.reconcile.match, os, sys; "
             "print(os.environ['_RJEM_MALLOC_CONF'], 'polars' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    # polars puts its own defaults (decay 500/1000 ms) before what it finds; jemalloc takes
    # the last value of a key
    assert out[0].endswith("dirty_decay_ms:0,muzzy_decay_ms:0") and out[1] == "True"
    own = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**env, "_RJEM_MALLOC_CONF": "narenas:2"}).stdout.split()
    assert own[0].endswith("narenas:2") and "dirty_decay_ms:0" not in own[0]
