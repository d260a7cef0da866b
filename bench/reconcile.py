"""Reconciliation at scale: LeadHub's engine beside a pandas script, same data, same run.

    python bench/reconcile.py [--records 1000000] [--seed 7]

Generates N accounting payments and N won CRM deals (CSV) for the same clients, with the
noise real books and CRMs have: phones written ``8 (916) ...``, ``+7 916 ...`` or as bare
digits, e-mails upper-cased, names misspelt or shortened, companies known by tax id under
another name, clients on one side only. Then runs, each in its own process (so peak
memory is its own, read from ``wait4``):

- ``leadhub``: ``hub.reconcile`` — exact keys, chained matches, fuzzy names, flags;
- ``pandas``: the same exact-key matching (phone, e-mail, tax id), written the way a
  pandas user would, without the name stage.

Prints a table: wall time, peak RSS, parties matched, clients left alone on each side.
The goal (issue 10): faster than pandas, under 1 GB.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOTS = ["Иван", "Петр", "Сидор", "Смирн", "Кузнец", "Поп", "Васил", "Сокол", "Михайл", "Новик",
         "Федор", "Мороз", "Волк", "Алексе", "Лебед", "Семен", "Егор", "Павл", "Козл", "Степан",
         "Никола", "Орл", "Андре", "Макар", "Зайц", "Соловь", "Борис", "Яковл", "Григор", "Роман",
         "Воробь", "Серге", "Кузьмин", "Фрол", "Александр", "Дмитри", "Корол", "Гусе", "Киселе",
         "Ильин", "Максим", "Поляк", "Сорокин", "Виноград", "Ковал", "Белов", "Медвед", "Антон",
         "Тарас", "Жук", "Баран", "Филипп", "Комар", "Давыд", "Беляк", "Гераси", "Богдан", "Осип",
         "Сидоренк", "Матве"]
ENDINGS = ["ов", "ев", "ин", "ский", "енко", "ых", "ович", "як"]
NAMES = ["Иван", "Петр", "Анна", "Мария", "Олег", "Ольга", "Сергей", "Елена", "Дмитрий", "Наталья",
         "Андрей", "Татьяна", "Алексей", "Юлия", "Михаил", "Ирина", "Павел", "Светлана", "Николай",
         "Екатерина", "Владимир", "Галина", "Артем", "Ксения", "Роман", "Людмила", "Игорь", "Вера"]
PATRONYMICS = ["Иванович", "Петрович", "Сергеевич", "Андреевич", "Алексеевич", "Николаевич",
               "Дмитриевич", "Павлович", "Олегович", "Михайлович", "Владимирович", "Игоревич"]
WORDS = ["Ромашка", "Вектор", "Альфа", "Гранит", "Меридиан", "Сфера", "Лидер", "Прогресс", "Арсенал",
         "Контур", "Импульс", "Орион", "Стандарт", "Восток", "Профи", "Феникс", "Квант", "Атлас",
         "Бриз", "Вертикаль", "Горизонт", "Дельта", "Зенит", "Легион", "Магистраль", "Омега"]


def _typo(rng: random.Random, text: str) -> str:
    i = rng.randrange(1, len(text) - 1)
    return text[:i] + text[i + 1:] if rng.random() < 0.5 else text[:i] + text[i] + text[i:]


def _phone_forms(rng: random.Random, digits: str) -> str:
    form = rng.randrange(4)
    d = digits
    if form == 0:
        return f"+7{d}"
    if form == 1:
        return f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
    if form == 2:
        return f"+7 {d[:3]} {d[3:6]} {d[6:8]} {d[8:]}"
    return d


def generate(directory: Path, records: int, seed: int) -> None:
    """Write ``accounting.csv`` and ``crm.csv`` (phones and e-mails joined by ``;``)."""
    rng = random.Random(seed)
    clients = records * 2 // 5  # 2.5 records per client on each side
    cols = ["client_key", "name", "inn", "phones", "emails", "amount", "date", "external_id"]
    with open(directory / "accounting.csv", "w", newline="") as fa, \
            open(directory / "crm.csv", "w", newline="") as fc:
        acc, crm = csv.writer(fa), csv.writer(fc)
        acc.writerow(cols)
        crm.writerow(cols)
        n_acc = n_crm = 0
        for i in range(clients):
            company = rng.random() < 0.2
            if company:
                words = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}"
                name = f"ООО «{words} {rng.choice(ROOTS)}{rng.choice(ENDINGS)}»"
                inn = f"{rng.randrange(10**9, 10**10)}"
            else:
                name = (f"{rng.choice(ROOTS)}{rng.choice(ENDINGS)} {rng.choice(NAMES)} "
                        f"{rng.choice(PATRONYMICS)}")
                inn = ""
            phone = f"9{rng.randrange(10**9):09d}"
            email = f"client{i}@mail{i % 50}.ru" if rng.random() < 0.5 else ""
            total = float(rng.randrange(1_000, 500_000))
            # 4% paid but missing in the CRM, 3% won but missing in accounting.
            side = rng.random()
            in_acc, in_crm = side >= 0.03, side < 0.03 or side >= 0.07
            k = rng.randint(1, 4)
            if in_acc and n_acc < records:
                for j in range(k):
                    acc.writerow([f"A{i}", name, inn, _phone_forms(rng, phone), email,
                                  round(total / k, 2), f"2026-{1 + j % 11:02d}-15T10:00:00Z", f"PAY{i}-{j}"])
                n_acc += k
            if in_crm and n_crm < records:
                c_name = name if rng.random() < 0.9 else _typo(rng, name)
                if company and rng.random() < 0.5:
                    c_name = f"{rng.choice(WORDS)} трейд"  # known by INN under a trade name
                c_phone = "" if company and inn else _phone_forms(rng, phone)
                c_email = email.upper() if email and rng.random() < 0.3 else email
                amount = total * (1.25 if rng.random() < 0.02 else 1.0)
                m = rng.randint(1, 4)
                for j in range(m):
                    crm.writerow([f"C{i}", c_name, inn if company else "", c_phone, c_email,
                                  round(amount / m, 2), f"2026-{1 + j % 11:02d}-20T10:00:00Z",
                                  f"DEAL{i}-{j}"])
                n_crm += m
            if n_acc >= records and n_crm >= records:
                break


def run_leadhub(directory: Path) -> dict[str, object]:
    # first, as in the hub: it sets polars' allocator up before polars loads
    # (hub/reconcile/__init__.py)
    importlib.import_module("hub.reconcile")
    from datetime import UTC, datetime

    import polars as pl

    from hub.reconcile.flags import FlagParams, flag_frame
    from hub.reconcile.match import RECORD_SCHEMA, match

    def load(name: str) -> pl.DataFrame:
        frame = pl.scan_csv(directory / name, schema_overrides={"inn": pl.Utf8, "phones": pl.Utf8,
                                                                  "emails": pl.Utf8})
        return frame.with_columns(
            pl.col("phones").fill_null("").str.split(";").list.filter(pl.element() != ""),
            pl.col("emails").fill_null("").str.split(";").list.filter(pl.element() != ""),
            pl.col("date").str.to_datetime(time_zone="UTC"),
        ).select(list(RECORD_SCHEMA)).cast(RECORD_SCHEMA).collect()  # type: ignore[arg-type]

    matching = match(load("accounting.csv"), load("crm.csv"))
    flags = flag_frame(matching, FlagParams(), datetime(2027, 1, 1, tzinfo=UTC))
    counts = flags.group_by("kind").len().to_dicts()
    return {"parties": matching.parties.height, **{c["kind"]: c["len"] for c in counts}}


def run_pandas(directory: Path) -> dict[str, object]:
    import pandas as pd

    def keys(frame: pd.DataFrame) -> pd.DataFrame:
        phones = frame[["client_key", "phones"]].assign(value=frame["phones"].fillna("").str.split(";"))
        phones = phones.explode("value")
        d = phones["value"].str.replace(r"\D", "", regex=True)
        d = d.where(~((d.str.len() == 11) & d.str.match(r"^[78]")), "7" + d.str[1:])
        d = d.where(d.str.len() != 10, "7" + d)
        phones = phones.assign(kind="phone", value="+" + d)[d.str.len() >= 7]
        email = frame["emails"].fillna("").str.strip().str.lower()
        emails = frame[["client_key"]].assign(kind="email", value=email)
        emails = emails[emails["value"].str.contains("@")]
        inn = frame[["client_key"]].assign(kind="inn", value=frame["inn"].fillna("").astype(str)
                                           .str.replace(r"\D", "", regex=True))
        inn = inn[inn["value"].str.len().isin([10, 12])]
        out = pd.concat([phones[["client_key", "kind", "value"]], emails, inn]).drop_duplicates()
        shared = out.groupby(["kind", "value"])["client_key"].transform("size")
        return out[shared <= 5]

    acc = pd.read_csv(directory / "accounting.csv", dtype={"inn": str, "phones": str, "emails": str})
    crm = pd.read_csv(directory / "crm.csv", dtype={"inn": str, "phones": str, "emails": str})
    acc_totals = acc.groupby("client_key")["amount"].sum()
    crm_totals = crm.groupby("client_key")["amount"].sum()
    pairs = keys(acc).merge(keys(crm), on=["kind", "value"], suffixes=("_acc", "_crm"))
    pairs = pairs[["client_key_acc", "client_key_crm"]].drop_duplicates()
    pairs = pairs.assign(acc=pairs["client_key_acc"].map(acc_totals),
                         crm=pairs["client_key_crm"].map(crm_totals))
    mismatch = (pairs["acc"] - pairs["crm"]).abs() > 0.01 * pairs["acc"].abs()
    return {
        "parties": len(pairs),
        "missing_in_crm": int((~acc_totals.index.isin(pairs["client_key_acc"])).sum()),
        "missing_in_accounting": int((~crm_totals.index.isin(pairs["client_key_crm"])).sum()),
        "amount_mismatch": int(mismatch.sum()),
    }


def measure(engine: str, directory: Path) -> dict[str, object]:
    """Run one engine in a child process; its wall time and its own peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--run", engine, str(directory)],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{engine} failed ({proc.returncode})")
    result: dict[str, object] = json.loads(out)
    result.update(engine=engine, wall_s=time.perf_counter() - started, peak_mb=usage.ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="records per side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--run", nargs=2, metavar=("ENGINE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        run = run_leadhub if args.run[0] == "leadhub" else run_pandas
        print(json.dumps(run(Path(args.run[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        started = time.perf_counter()
        generate(directory, args.records, args.seed)
        print(f"generated {args.records:,} records per side in {time.perf_counter() - started:.0f} s")
        rows = [measure(engine, directory) for engine in ("leadhub", "pandas")]
    print(f"\n{'engine':<8} {'wall s':>7} {'peak MB':>8} {'parties':>8} {'miss crm':>9} {'miss acc':>9} "
          f"{'amount':>7}")
    for r in rows:
        print(f"{r['engine']:<8} {r['wall_s']:>7.1f} {r['peak_mb']:>8.0f} {r['parties']:>8} "
              f"{r.get('missing_in_crm', 0):>9} {r.get('missing_in_accounting', 0):>9} "
              f"{r.get('amount_mismatch', 0):>7}")
    lead, pandas = rows
    print(f"\nleadhub / pandas wall time: {float(lead['wall_s']) / float(pandas['wall_s']):.2f} "
          f"(goal < 1); leadhub peak {float(lead['peak_mb']):.0f} MB (goal < 1024)")


if __name__ == "__main__":
    main()
