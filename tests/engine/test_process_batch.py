"""process_received routes a whole batch in one short transaction: dedup inside the batch
and against the store, round-robin counters advanced once per route, and a lead continued
(by a later event) between its preparation and the write is not overwritten. A small claim
is routed in the transaction that claimed it; a batch read first is claimed by the transaction that
routes it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import event, select, update

from hub.connectors import InboundRequest
from hub.engine import process
from hub.engine.ingest import build_item, ingest_batch
from hub.engine.process import process_received
from hub.runtime import Runtime
from hub.store import tables as t
from tests.conftest import RuntimeFactory

CONFIG = """
[hub]
default_region = "RU"

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
path = "leads.jsonl"

[[routes]]
name = "ads"
match = { "utm.source" = "yandex*" }
destinations = ["jsonl"]
assign = { strategy = "round_robin", managers = ["1001", "1002", "1003"] }
"""


@pytest.fixture
def rt(make_runtime: RuntimeFactory) -> Runtime:
    return make_runtime(CONFIG)


def ingest(rt: Runtime, *bodies: str) -> list[str]:
    src = rt.source("site_form")
    assert src is not None
    items = []
    for n, body in enumerate(bodies):
        req = InboundRequest(method="POST", source="site_form", path="", query=(),
                             headers={"content-type": "application/x-www-form-urlencoded"},
                             body=body.encode())
        items.append(build_item(req, src.parse(req), None, default_region="RU",
                                dedup_window_s=1800, received_at=time.time() + n * 0.001))
    return [r.lead_ids[0] for r in ingest_batch(rt.db, items)]


def leads(rt: Runtime) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        return {r.id: r for r in conn.execute(select(t.leads))}


def test_one_batch_dedups_within_itself_and_against_the_store(rt: Runtime) -> None:
    (first,) = ingest(rt, "phone=89161234567&utm_source=yandex")
    assert len(process_received(rt).leads) == 1
    ids = ingest(rt, "phone=89160000001&utm_source=yandex", "phone=89160000001&name=B&utm_source=yandex",
                 "phone=89161234567&name=C&utm_source=yandex", "phone=89160000002&utm_source=yandex")
    done = process_received(rt)
    assert [lead.id for lead in done.leads] == ids  # one batch, in order
    rows = leads(rt)
    assert rows[ids[0]].status == "routed" and rows[ids[0]].duplicate_of is None
    assert rows[ids[1]].status == "duplicate" and rows[ids[1]].duplicate_of == ids[0]
    assert rows[ids[2]].duplicate_of == first  # an original already in the store
    assert rows[ids[3]].status == "routed"
    # round robin: the first lead took 1001; the batch's two originals the next two
    assert [rows[i].assigned_to for i in (first, ids[0], ids[3])] == ["1001", "1002", "1003"]
    assert rows[ids[1]].data["duplicate_of"] == ids[0]
    with rt.reader.connect() as conn:
        deliveries = conn.execute(select(t.deliveries.c.lead_id)).scalars().all()
    assert sorted(deliveries) == sorted([first, ids[0], ids[3]])


def test_a_lead_continued_after_it_was_prepared_keeps_the_new_data(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    (lead_id,) = ingest(rt, "phone=89161234567&name=Ivan&utm_source=yandex")
    prepare = process._prepare
    calls = []

    def prepare_then_continue(rt_: Runtime, row: Any, data: Any = None) -> Any:
        prepared = prepare(rt_, row, data)
        data = data if data is not None else json.loads(row.data_text)
        calls.append(data.get("message"))
        if len(calls) == 1:  # an event lands meanwhile (outside the routing transaction)
            changed = {**data, "message": "called back"}
            with rt.db.begin() as conn:
                conn.execute(update(t.leads).where(t.leads.c.id == lead_id).values(data=changed))
        return prepared

    monkeypatch.setattr(process, "_prepare", prepare_then_continue)
    done = process_received(rt, read_first=True)  # prepared outside any transaction
    assert [lead.id for lead in done.leads] == [lead_id]
    row = leads(rt)[lead_id]
    assert calls == [None, "called back"]  # prepared again, inside, from the new data
    assert row.status == "routed" and row.data["message"] == "called back"
    assert row.assigned_to == "1001"


def write_transactions(rt: Runtime) -> list[int]:
    """A list that counts the transactions committed on ``rt.db`` from now on (reads end
    in a rollback)."""
    begun: list[int] = []
    event.listen(rt.db, "commit", lambda conn: begun.append(1))
    return begun


def test_a_small_claim_is_routed_in_the_transaction_that_claimed_it(rt: Runtime) -> None:
    ids = ingest(rt, "phone=89161234567&utm_source=yandex", "phone=89160000001&utm_source=yandex")
    begun = write_transactions(rt)
    done = process_received(rt)
    assert [lead.id for lead in done.leads] == ids
    assert len(begun) == 1  # claim and routing: one commit
    rows = leads(rt)
    assert [rows[i].status for i in ids] == ["routed", "routed"]
    # a claim larger than ONE_TRANSACTION_MAX is prepared between two transactions
    many = ingest(rt, *(f"phone=8916000{n:04d}&utm_source=yandex" for n in range(2, 12)))
    begun.clear()
    assert [lead.id for lead in process_received(rt).leads] == many
    assert len(begun) == 2


def test_a_batch_read_first_is_claimed_by_its_routing_transaction(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ingest(rt, *(f"phone=8916000{n:04d}&utm_source=yandex" for n in range(12)))
    taken = ids[5]
    prepare = process._prepare

    def prepare_while_another_claims(rt_: Runtime, row: Any, data: Any = None) -> Any:
        if row.id == taken:  # another worker claims one of them meanwhile
            with rt.db.begin() as conn:
                conn.execute(update(t.leads).where(t.leads.c.id == taken)
                             .values(lease_until=time.time() + 30))
        return prepare(rt_, row, data)

    monkeypatch.setattr(process, "_prepare", prepare_while_another_claims)
    begun = write_transactions(rt)
    done = process_received(rt, read_first=True)
    assert [lead.id for lead in done.leads] == [i for i in ids if i != taken]
    assert len(begun) == 2  # the other worker's claim, and routing: no claim of its own
    rows = leads(rt)
    assert rows[taken].status == "received"  # the other worker's to route
    assert {rows[i].status for i in ids if i != taken} == {"routed"}


@pytest.mark.parametrize("read_first", [False, True])
def test_a_batch_whose_routing_fails_waits_out_its_lease(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, read_first: bool
) -> None:
    """As when claim and routing were two transactions: a lead whose routing fails is not
    claimed again at once (a poison lead would fail every job that came after it)."""
    (lead_id,) = ingest(rt, "phone=89161234567&utm_source=yandex")

    def broken(*_: Any) -> None:
        raise RuntimeError("routing broke")

    monkeypatch.setattr(process, "_route_batch", broken)
    with pytest.raises(RuntimeError, match="routing broke"):
        process_received(rt, read_first=read_first)
    monkeypatch.undo()
    assert process_received(rt, read_first=read_first).leads == []  # still leased
    row = leads(rt)[lead_id]
    assert row.status == "received" and row.lease_until > time.time() + process.LEASE_S - 5
