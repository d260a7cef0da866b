"""SQLite's write gate (hub/store/db.py): writers of every process take turns at the
write lock in the kernel instead of polling SQLite's busy handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from hub.store.db import WriteGate, make_engine, read_only


def _gate(engine: object) -> WriteGate:
    gate = engine.dialect.__dict__["leadhub_gate"]  # type: ignore[attr-defined]
    assert isinstance(gate, WriteGate)
    return gate


def test_released_after_commit_rollback_and_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    gate = _gate(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)"))
        assert len(gate.held) == 1
    assert not gate.held and not gate.holders
    with pytest.raises(ValueError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        raise ValueError
    assert not gate.held and not gate.holders
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
        conn.execute(text("INSERT INTO t VALUES (2)"))
    assert not gate.held and not gate.holders
    with read_only(engine).connect() as conn:  # readers never take it
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0
        assert not gate.held
    engine.dispose()


def test_writers_of_two_threads_alternate(tmp_path: Path) -> None:
    """A writer that commits back to back does not starve one that waits."""
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (who TEXT)"))
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES ('busy')"))
                time.sleep(0.002)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        time.sleep(0.05)
        waits = []
        for _ in range(20):
            t0 = time.monotonic()
            with engine.begin() as conn:
                waits.append(time.monotonic() - t0)
                conn.execute(text("INSERT INTO t VALUES ('other')"))
    finally:
        stop.set()
        thread.join(10)
    # each turn waits for about one of the busy writer's 2 ms transactions (measured: 3 ms
    # at most); without the gate, SQLite's busy handler made it wait 107 ms on average and
    # up to 2.1 s. Generous bounds for a loaded machine:
    assert sum(waits) / len(waits) < 0.05 and max(waits) < 0.5
    engine.dispose()


def test_a_killed_holder_lets_go(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from sqlalchemy import text\n"
        "from hub.store.db import make_engine\n"
        f"e = make_engine('sqlite:///{db}')\n"
        "c = e.connect(); c.begin(); c.execute(text('INSERT INTO t VALUES (1)'))\n"
        "print('holding', flush=True); time.sleep(60)\n"
    )], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        t0 = time.monotonic()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
        assert time.monotonic() - t0 < 5
        with engine.connect() as conn:  # the killed writer's row was never committed
            assert conn.execute(text("SELECT x FROM t")).scalars().all() == [2]
    finally:
        if holder.poll() is None:
            holder.kill()
        engine.dispose()


def test_background_checkpoint_lets_the_wal_start_over(tmp_path: Path) -> None:
    from hub.store import db

    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    writes = db.background_checkpoints(engine)
    assert writes is not None and db.background_checkpoints(make_engine("sqlite://")) is None
    with writes.begin() as conn:
        conn.execute(text("CREATE TABLE t (x BLOB)"))
    for _ in range(30):  # ~5,000 pages: past RESTART_FRAMES, never checkpointed by a commit
        with writes.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (randomblob(700000))"))
    log, done = db.checkpoint(engine)
    assert log >= db.RESTART_FRAMES and done == log  # copied entirely, under the gate
    with writes.begin() as conn:  # ... so this writer starts the WAL over
        conn.execute(text("INSERT INTO t VALUES (x'00')"))
    assert db.checkpoint(engine)[0] < 10
    engine.dispose()


def test_a_no_wait_writer_is_told_at_once_that_the_lock_is_taken(tmp_path: Path) -> None:
    """``no_wait`` (the api's in-loop group commit): BEGIN raises WriterBusy instead of
    waiting, whether a hub writer holds the gate or a writer outside it (SQLite's busy
    handler would wait 30 s) holds SQLite's lock; the gate is not left held."""
    import sqlite3

    from hub.store.db import WriterBusy, no_wait

    db = tmp_path / "hub.db"
    engine = make_engine(f"sqlite:///{db}")
    now = no_wait(engine)
    assert now is not None and no_wait(make_engine("sqlite://")) is None
    gate = _gate(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    held, release = threading.Event(), threading.Event()

    def hub_writer() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hub_writer)
    thread.start()
    assert held.wait(10)
    t0 = time.monotonic()
    with pytest.raises(WriterBusy), now.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    release.set()
    thread.join(10)
    outsider = sqlite3.connect(db, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")  # SQLite's own lock, not the gate
    try:
        with pytest.raises(WriterBusy), now.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (3)"))
        assert not gate.held and not gate.holders
    finally:
        outsider.execute("ROLLBACK")
        outsider.close()
    assert time.monotonic() - t0 < 5
    with now.begin() as conn:  # free: it writes, and its busy timeout is back to 30 s
        conn.execute(text("INSERT INTO t VALUES (4)"))
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t ORDER BY x")).scalars().all() == [1, 4]
    engine.dispose()
