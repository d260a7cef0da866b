"""The worker's statements as built once (``hub/store/statements.py``) write what
SQLAlchemy's own path writes, on both stores; a stored lead SQLite's JSON parser refuses
is still read; the file destination finds the id of a line in either format it wrote."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import insert, select

from hub.runtime import Runtime
from hub.store import deliveries as delivery_store
from hub.store import tables as t
from hub.store.leads import lead_from_json
from hub.store.statements import Many
from plugins.file import _line_id
from tests.conftest import RuntimeFactory

CONFIG = """
[destinations.jsonl]
plugin = "file"
"""


def _rows(rt: Runtime) -> list[Any]:
    with rt.reader.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t.deliveries).order_by(t.deliveries.c.id))]


def test_many_writes_what_sqlalchemy_writes(make_runtime: RuntimeFactory, database_url: str) -> None:
    rt = make_runtime(CONFIG)
    now = time.time()
    with rt.db.begin() as conn:  # through Many (the driver on SQLite)
        delivery_store.add(conn, [delivery_store.NewDelivery(f"D{i}", f"L{i}", "jsonl")
                                  for i in range(3)], now)
    via_many = _rows(rt)
    with rt.db.begin() as conn:
        conn.execute(t.deliveries.delete())
        conn.execute(insert(t.deliveries), [  # SQLAlchemy's own executemany
            dict(id=f"D{i}", lead_id=f"L{i}", destination="jsonl", status="pending",
                 idempotency_key=f"L{i}:jsonl", attempts=0, next_attempt_at=now,
                 lease_until=0.0, uncertain=False, created_at=now, updated_at=now)
            for i in range(3)])
    assert _rows(rt) == via_many

    # an update whose statement carries constants (status, NULL error, a false flag)
    done = Many(delivery_store._delivered.stmt)
    with rt.db.begin() as conn:
        done(conn, [{"b_id": "D1", "b_ext": "x1", "b_attempts": 2, "b_first": now - 5,
                     "b_now": now + 1}])
    with rt.reader.connect() as conn:
        row = conn.execute(select(t.deliveries).where(t.deliveries.c.id == "D1")).one()
    assert (row.status, row.external_id, row.attempts, row.first_attempt_at, row.delivered_at,
            row.updated_at, row.last_error, row.uncertain, row.lease_until) == \
        ("delivered", "x1", 2, now - 5, now + 1, now + 1, None, False, 0.0)


def test_a_lead_with_a_lone_surrogate_is_still_read() -> None:
    stored = json.dumps({"id": "01J0000000000000000000000A", "source": "s", "channel": "form",
                         "received_at": "2026-01-01T00:00:00Z", "message": "a\ud800b"})
    lead = lead_from_json(stored)  # pydantic's parser refuses it; json.loads takes it
    assert lead.message == "a\ufffdb"
    assert lead_from_json(lead.model_dump_json()).message == "a\ufffdb"


def test_the_file_destination_reads_line_ids_in_both_formats() -> None:
    lead_id = "01J0000000000000000000000A"
    assert _line_id(f'{{"id":"{lead_id}","source":"s"}}\n'.encode()) == lead_id
    assert _line_id(f'{{"id": "{lead_id}", "source": "s"}}\n'.encode()) == lead_id
    assert _line_id(f'{{"source": "s", "id": "{lead_id}"}}\n'.encode()) == lead_id
    assert _line_id(b'{"id": "a\\u0041b"}\n') == "aAb"  # an escape: parsed whole
    assert _line_id(b"not json\n") is None
