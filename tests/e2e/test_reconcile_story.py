"""Issue 10, Must show 1: "a wholesale department closed 75 clients in a month; its CRM
showed 70" (``tests/reconcile_story.py``), end to end: the fake amoCRM (the ``amocrm``
reader) against the books, through ``leadhub reconcile JOB --format json`` (a real
process) and through the API (``POST /api/reconciliations``, a running hub and worker).

Exactly the five paying clients the CRM lacks are ``missing_in_crm``, the three won deals
nobody paid (past the grace) ``missing_in_accounting``, the sum 25 % off
``amount_mismatch``; nothing else. A second run raises nothing new; a resolved flag stays
resolved.

The books are a seam (``books``): each accounting fake puts ``STORY.books`` in its own
shape and names the ``[destinations.books]`` table; fake 1C (``plugins.onec.testing``)
is the one here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub import PROJECT
from hub.testing.cluster import HubCluster
from hub.testing.kits.common import toml_table
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import ClusterFactory, ConfigWriter
from tests.e2e.test_reconcile_api import finished
from tests.reconcile_story import GRACE_DAYS, LOOKBACK_DAYS, STORY, ago, paying_clients, seed_crm

ROOT = Path(__file__).resolve().parents[2]
AMO_TOKEN = "story-amo-token"


@dataclass
class Books:
    """An accounting side: its ``[destinations.books]`` table, the environment its plugin
    needs, and how it puts the story's books in place once the hub's data dir is known."""

    table: dict[str, Any]
    env: dict[str, str]
    seed: Callable[[Path], None]


def onec_books() -> Iterator[Books]:
    """Fake 1C (BP 3.0): counterparties with phones and e-mails only in
    ``Представление``, bank and cash receipts with ``Posted``, ``DeletionMark`` and
    ``ВидОперации`` as the story has them."""
    testing = pytest.importorskip("plugins.onec.testing")
    with testing.FakeOneC(username="Бухгалтер", password="story-1c") as fake:
        for c in STORY.books:
            ref = fake.add_counterparty(c.name, inn=c.inn, phones=c.phones, emails=c.emails)
            for r in c.receipts:
                fake.add_payment(ref, r.amount, ago(r.days_ago), cash=r.cash,
                                 operation=r.operation, posted=r.posted, deleted=r.deleted)
        installed = {ep.name for ep in entry_points(group=PROJECT)}
        yield Books({"plugin": "onec", "base_url": fake.odata_url, "username": "Бухгалтер",
                     "password": "story-1c"},
                    {} if "onec" in installed else {"LEADHUB_PLUGIN_MODULES": "onec=plugins.onec.plugin"},
                    lambda _data_dir: None)
        fake.assert_clean()


@pytest.fixture(params=["onec"])
def books(request: pytest.FixtureRequest) -> Iterator[Books]:
    """Each accounting side the story runs against (MoySklad and Business.Ru: Must show 2)."""
    yield from {"onec": onec_books}[request.param]()


@pytest.fixture
def amo() -> Iterator[FakeAmoCRM]:
    with FakeAmoCRM(token=AMO_TOKEN) as fake:  # amoCRM's own 7 requests/s
        seed_crm(fake)
        yield fake
        fake.assert_clean()
        assert fake.answered(429) == 0, "the reader went over amoCRM's rate limit"


def story_cluster(make_cluster: ClusterFactory, write_config: ConfigWriter, database_url: str,
                  amo: FakeAmoCRM, books: Books) -> HubCluster:
    config = "\n".join([
        '[hub]\nadmin_token = "${LEADHUB_ADMIN_TOKEN}"\n',
        toml_table("destinations.books", books.table),
        toml_table("destinations.amo", {"plugin": "amocrm", "base_url": amo.base_url,
                                        "access_token": AMO_TOKEN, "timeout_s": 5}),
        toml_table("reconcile.wholesale", {"crm": "amo", "accounting": "books",
                                           "lookback_days": LOOKBACK_DAYS,
                                           "payment_grace_days": GRACE_DAYS}),
    ])
    cluster = make_cluster(write_config(config), database_url, env=books.env)
    books.seed(cluster.data_dir)
    return cluster


def names(flag: dict[str, Any]) -> str:
    """Who a flag is about: the books' name, or the CRM's for a deal nobody paid."""
    side = flag["crm"] if flag["kind"] == "missing_in_accounting" else flag["accounting"]
    assert side is not None, flag
    [name] = side["names"]
    return str(name)


def by_kind(flags: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for flag in flags:
        out.setdefault(flag["kind"], set()).add(names(flag))
    return out


def test_the_story_adds_up() -> None:
    """The data says what the story says, so the flags below are not luck."""
    assert len(paying_clients()) == 75
    won = {c.name for c in STORY.crm if any(d.status == 142 and d.days_ago <= LOOKBACK_DAYS
                                             for d in c.deals)}
    assert len(won) == 70 + 3 + 1  # the 70 who paid, 3 unpaid past the grace, 1 within it
    assert sum(len(v) for v in STORY.expected.values()) == 9


def test_75_paid_70_in_the_crm_via_the_cli_and_the_api(
    make_cluster: ClusterFactory, write_config: ConfigWriter, database_url: str,
    amo: FakeAmoCRM, books: Books,
) -> None:
    cluster = story_cluster(make_cluster, write_config, database_url, amo, books)
    cluster.start_redis()  # the CLI needs no hub, but shares amoCRM's limiter in Redis

    out = subprocess.run(
        [sys.executable, "-m", "hub.cli", "reconcile", "wholesale", "--format", "json",
         "--config", str(cluster.config)],
        env=cluster.env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    run = doc["run"]
    assert run["status"] == "done", run
    assert by_kind(doc["flags"]) == STORY.expected
    assert run["counts"]["payments"] == sum(
        1 for c in STORY.books for r in c.receipts if r.is_payment)
    assert run["counts"]["new"] == 9 and run["counts"]["flags"] == 9
    mismatch = next(f for f in doc["flags"] if f["kind"] == "amount_mismatch")
    assert (mismatch["evidence"]["accounting_total"], mismatch["evidence"]["crm_total"]) == (
        80_000, 100_000)
    assert all(f["state"] == "open" for f in doc["flags"])

    cluster.start_api()
    cluster.start_worker()
    client = httpx.Client(base_url=cluster.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {cluster.admin_token}"})
    try:
        open_flags = client.get("/api/reconciliation-flags", params={"state": "open"}).json()["items"]
        assert {f["id"] for f in open_flags} == {f["id"] for f in doc["flags"]}
        nikitin = next(f for f in open_flags if names(f) == "ИП Никитин")
        assert client.post(f"/api/reconciliation-flags/{nikitin['id']}/resolve").json()["state"] \
            == "resolved"

        answer = client.post("/api/reconciliations", json={"job": "wholesale"})
        assert answer.status_code == 202, answer.text
        again = finished(client, answer.json()["id"])
        assert again["status"] == "done", again
        assert again["counts"]["new"] == 0  # nothing raised twice
        assert by_kind(again["flags"]) == STORY.expected
        assert {f["id"] for f in again["flags"]} == {f["id"] for f in doc["flags"]}
        states = {names(f): f["state"] for f in again["flags"]}
        assert states.pop("ИП Никитин") == "resolved"  # a resolved flag stays resolved
        assert set(states.values()) == {"open"}
        still = client.get("/api/reconciliation-flags", params={"state": "open"}).json()["items"]
        assert len(still) == 8
    finally:
        client.close()
