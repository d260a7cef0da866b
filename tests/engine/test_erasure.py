"""Erasing a person: ``POST /api/erasures`` and ``leadhub erase`` leave no trace of their
phone (in E.164 and as it was posted) or e-mail in any file under ``data_dir`` (the SQLite
database with its -wal and -shm, the embedded Redis' files, the file destination's export)
or, on PostgreSQL, in any row; another person's lead remains, and the copies delivered
to a CRM are listed with their external ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import String, cast, create_engine, select

from hub.engine.drain import drain
from hub.engine.ledger import ledger
from hub.engine.process import process_received
from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import running_app
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import AMO_TOKEN

ADMIN = {"Authorization": "Bearer adm"}
FORM = {"content-type": "application/x-www-form-urlencoded"}
# Ivan is erased through the API, Olga with the command line, Anna stays
IVAN_POSTED = ("8 (916) 111-22-38", "+7 916 111 22 38", "Ivan.Petrov@Example.ru")
IVAN_TRACES = ("+79161112238", "79161112238", "9161112238", "8 (916) 111-22-38",
               "8+%28916%29+111-22-38", "916 111 22 38", "ivan.petrov@example.ru",
               "ivan.petrov%40example.ru")
OLGA_TRACES = ("+79037770011", "9037770011", "olga@example.com", "olga%40example.com")
ANNA_PHONE = "+79035554433"


def config(amo: FakeAmoCRM) -> str:
    return f"""
[hub]
admin_token = "adm"
default_destinations = ["jsonl", "amo_main"]

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"

[destinations.amo_main]
plugin = "amocrm"
base_url = "{amo.base_url}"
access_token = "{AMO_TOKEN}"
timeout_s = 2
"""


def traces(data_dir: Path, needles: tuple[str, ...]) -> list[str]:
    """Every file under ``data_dir`` holding one of ``needles`` (bytes, any case)."""
    found = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.is_socket()):
        content = path.read_bytes().lower()
        found += [f"{path.name}: {n}" for n in needles if n.lower().encode() in content]
    return found


def rows_mentioning(url: str, needles: tuple[str, ...]) -> list[str]:
    """PostgreSQL: every row of every table whose text holds one of ``needles``."""
    engine = create_engine("postgresql+psycopg://" + url.split("://", 1)[1])
    found = []
    with engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(select(*(cast(c, String) for c in table.c))):
                text = " ".join(str(v) for v in row if v is not None).lower()
                if "\\x" in text:  # bytea comes back hex-encoded
                    text += " ".join(bytes.fromhex(v[2:]).decode("utf-8", "replace").lower()
                                     for v in row if isinstance(v, str) and v.startswith("\\x"))
                found += [f"{table.name}: {n}" for n in needles if n.lower() in text]
    engine.dispose()
    return found


def post_people(client: httpx.Client) -> None:
    sent = [
        client.post("/hooks/site_form", data={"name": "Иван", "phone": IVAN_POSTED[0],
                                              "email": IVAN_POSTED[2]}),
        client.post("/hooks/site_form", json={"phone": IVAN_POSTED[1], "comment": "ещё раз"}),
        # no contact field: quarantined, the phone only in the message
        client.post("/hooks/site_form", data={"message": f"мой номер {IVAN_POSTED[0]}"}),
        client.post("/hooks/site_form", data={"name": "Ольга", "phone": "8 903 777-00-11",
                                              "email": "Olga@Example.com"}),
        client.post("/hooks/site_form", data={"name": "Анна", "phone": "+7 903 555-44-33",
                                              "email": "anna@example.org"}),
    ]
    assert [r.status_code for r in sent] == [200, 200, 422, 200, 200], [r.text for r in sent]


def deliver(rt: Runtime) -> None:
    while process_received(rt).leads:
        pass
    assert drain(rt, "jsonl").delivered >= 3
    assert drain(rt, "amo_main").delivered >= 3


def test_an_erased_person_leaves_no_trace_and_others_remain(
        tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "data"
    path = tmp_path / "plugins.toml"
    with FakeAmoCRM(token=AMO_TOKEN) as amo:
        path.write_text(config(amo), encoding="utf-8")
        # redis_url "": the hub's own embedded Redis, persistent under data_dir
        with running_app(path, data_dir=data_dir, redis_url="", database_url=database_url) as (
                rt, client):
            post_people(client)
            deliver(rt)
            assert ledger(rt.reader)["balanced"]
            before = traces(data_dir, IVAN_TRACES)
            assert before and any("leadhub.db" in f or "leads.jsonl" in f for f in before)

            r = client.post("/api/erasures", headers=ADMIN,
                            json={"phones": [IVAN_POSTED[0]], "emails": ["IVAN.PETROV@example.ru"]})
            assert r.status_code == 200, r.text
            doc: dict[str, Any] = r.json()
            assert doc["deleted"]["leads"] == 2 and doc["deleted"]["inbound_events"] == 3
            assert doc["deleted"]["quarantine"] == 1
            assert doc["destinations_holding_copies"] == ["amo_main"]
            at_amo = [c for c in doc["copies"] if c["destination"] == "amo_main"]
            assert at_amo and all(c["external_id"] and not c["erased"] for c in at_amo)
            assert all(c["erased"] for c in doc["copies"] if c["destination"] == "jsonl")

            leads = client.get("/api/leads", headers=ADMIN).json()["items"]
            assert sorted(lead["contact"]["phones"][0] for lead in leads) == [
                "+79035554433", "+79037770011"]
            assert client.get("/api/quarantine", headers=ADMIN).json()["items"] == []
            assert ledger(rt.reader)["balanced"]
            redis_dir = data_dir / "redis"
            assert any(redis_dir.iterdir())  # the embedded Redis keeps its files here
            assert traces(data_dir, IVAN_TRACES) == []  # while running: the -wal included
        # everything stopped: the files as they stay on disk
        assert traces(data_dir, IVAN_TRACES) == []
        if database_url:
            assert rows_mentioning(database_url, IVAN_TRACES) == []
        else:  # the check can see: the other people are still in the database file
            assert traces(data_dir, (ANNA_PHONE,))

        # the command line erases Olga the same way, the store alone (no server)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
        env.update(LEADHUB_DATA_DIR=str(data_dir), LEADHUB_DATABASE_URL=database_url)
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", "erase", "--config", str(path), "--phone",
             "+7 (903) 777-00-11", "--email", "olga@example.com", "--format", "json"],
            env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        printed = json.loads(done.stdout)
        assert printed["deleted"]["leads"] == 1
        assert printed["destinations_holding_copies"] == ["amo_main"]
        assert traces(data_dir, OLGA_TRACES) == []
        if database_url:
            assert rows_mentioning(database_url, OLGA_TRACES) == []
            assert rows_mentioning(database_url, (ANNA_PHONE,))
        else:
            assert traces(data_dir, (ANNA_PHONE,))


def test_bad_values_are_refused_and_nothing_is_erased(tmp_path: Path, redis_url: str) -> None:
    path = tmp_path / "plugins.toml"
    with FakeAmoCRM(token=AMO_TOKEN) as amo:
        path.write_text(config(amo), encoding="utf-8")
        with running_app(path, data_dir=tmp_path / "data", redis_url=redis_url) as (_, client):
            post_people(client)
            for body in ({"phones": ["not a phone"]}, {"emails": ["nobody"]}, {}):
                r = client.post("/api/erasures", headers=ADMIN, json=body)
                assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_erasure"
            assert len(client.get("/api/leads", headers=ADMIN).json()["items"]) == 4
            assert client.post("/api/erasures", json={"emails": ["a@b.ru"]}).status_code == 401


@pytest.mark.parametrize("phone", ["8 (916) 111-22-38", "+7 916 111 22 38", "89161112238"])
def test_a_phone_is_found_in_the_forms_it_is_written_in(phone: str) -> None:
    from hub.engine.erasure import Person

    ivan = Person.of([phone], ["ivan@example.ru"], "RU")
    assert ivan.phones == ("+79161112238",)
    for text in ("phone=8+%28916%29+111-22-38", '{"p": "+7\\u00a0916\\u00a0111\\u00a022\\u00a038"}',
                 "call 8/916/111/22/38", "IVAN%40EXAMPLE.RU", "mail: Ivan@Example.ru."):
        assert ivan.mentioned_in(text), text
    for text in ("89161112239", "189161112238000", "divan@example.ru", "ivan@example.ru.com"):
        assert not ivan.mentioned_in(text), text
