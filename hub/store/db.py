"""Opening the store and bringing its schema up to date (Alembic, on every start)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from hub.store import encode_json
from hub.store.dialect import is_postgresql, is_sqlite

MIGRATIONS = Path(__file__).with_name("migrations")
_migrate_lock = threading.Lock()


BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; NORMAL keeps commits durable across a
    # process crash (only an OS crash can lose the last commits) at a fraction of FULL's cost.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed, not left in free space: a purged or erased
    # person (hub/engine/retention.py, erasure.py) leaves no bytes behind in the file, and
    # neither do the earlier versions of a row an update rewrote.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


READ_ONLY = "leadhub_read_only"
#: execution option: this engine's writers leave WAL checkpoints to ``checkpoint`` (a
#: background thread) instead of running one inside a commit every 1000 pages
NO_AUTOCHECKPOINT = "leadhub_no_autocheckpoint"
#: execution option: a writer that finds the write lock taken does not wait for it (the
#: api's in-loop group commit, ``hub/engine/ingest.py``): BEGIN raises ``WriterBusy``
NO_WAIT = "leadhub_no_wait"
RESTART_FRAMES = 4096  # a WAL of 16 MB (4 KB pages): finish the copy so it starts over


class WriterBusy(Exception):
    """A ``NO_WAIT`` writer found SQLite's write lock taken (nothing was written)."""


class WriteGate:
    """A fair turn at SQLite's single write lock for every process and thread of the hub.

    SQLite hands its write lock to whoever asks first after it is free; a writer that
    finds it taken sleeps in the busy handler (1, 2, 5 ... 100 ms) and asks again. Under
    load that starves someone: the api's group commits follow each other within
    microseconds, so a worker asking every few ms almost never finds the lock free (its
    deliveries stalled for the whole load), and a worker's long transaction used to make
    the api wait up to 100 ms past its end.

    So writers queue in the kernel first: a writer takes the ``-wq`` file's flock, then the
    ``-wl`` file's, and lets go of ``-wq`` at once; BEGIN IMMEDIATE follows, and the commit
    or rollback releases ``-wl``. Only one writer at a time waits at ``-wl``, and it is
    woken the moment the holder lets go, so two busy writers alternate (the api's next
    group waits one worker transaction, the worker waits one group). A killed process's
    flocks go with its file descriptors. The busy handler still covers anyone who opens
    the database without the gate.

    A thread that already holds the gate (a write transaction opened inside another) does
    not queue again: that would wait for itself; SQLite's busy timeout answers it, as before.
    """

    def __init__(self, db_path: str) -> None:
        self.queue_path = db_path + "-wq"
        self.lock_path = db_path + "-wl"
        # id(DBAPI connection) -> (fd of the -wl flock, the thread that took it)
        self.held: dict[int, tuple[int, int]] = {}
        self.holders: set[int] = set()  # threads holding the gate
        self.reserved: dict[int, int] = {}  # thread -> fd of the -wl flock taken for it
        # (pid, thread) -> its own descriptors of -wq and -wl, opened once: a flock belongs
        # to an open file description, so each thread (and a forked child) needs its own
        self._fds: dict[tuple[int, int], tuple[int, int]] = {}

    def _descriptors(self, me: int) -> tuple[int, int]:
        key = (os.getpid(), me)
        fds = self._fds.get(key)
        if fds is None:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
            q = os.open(self.queue_path, flags, 0o600)
            try:
                w = os.open(self.lock_path, flags, 0o600)
            except BaseException:
                os.close(q)
                raise
            fds = self._fds[key] = (q, w)
        return fds

    def acquire(self, dbapi_conn: Any) -> None:
        me = threading.get_ident()
        if me in self.holders:
            return
        q, w = self._descriptors(me)
        fcntl.flock(q, fcntl.LOCK_EX)
        try:
            fcntl.flock(w, fcntl.LOCK_EX)
        finally:
            fcntl.flock(q, fcntl.LOCK_UN)  # lets the next writer queue at -wl
        self.held[id(dbapi_conn)] = (w, me)
        self.holders.add(me)

    def try_acquire(self, dbapi_conn: Any) -> bool:
        """Take the gate only if it is free this instant, or reserved for this thread
        (``reserve``). Without a reservation it does not queue at ``-wq``: a caller that
        finds the gate taken reserves its turn instead, which queues like any writer."""
        me = threading.get_ident()
        if me in self.holders:
            return True
        w = self.reserved.pop(me, None)
        if w is None:
            _q, w = self._descriptors(me)
            try:
                fcntl.flock(w, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
        self.held[id(dbapi_conn)] = (w, me)
        self.holders.add(me)
        return True

    def reserve(self, thread: int) -> None:
        """Wait for the gate on behalf of ``thread`` (blocks; run it on another thread):
        the flock is taken with ``thread``'s descriptors and is its own from then on, so
        its next write transaction takes it at once. ``unreserve`` lets go of one unused."""
        q, w = self._descriptors(thread)
        fcntl.flock(q, fcntl.LOCK_EX)
        try:
            fcntl.flock(w, fcntl.LOCK_EX)
        finally:
            fcntl.flock(q, fcntl.LOCK_UN)
        self.reserved[thread] = w

    def unreserve(self, thread: int) -> None:
        w = self.reserved.pop(thread, None)
        if w is not None:
            fcntl.flock(w, fcntl.LOCK_UN)

    def release(self, dbapi_conn: Any) -> None:
        # the dialect gets the pool's proxy, the pool events the driver's connection
        raw = getattr(dbapi_conn, "dbapi_connection", None) or dbapi_conn
        entry = self.held.pop(id(raw), None)
        if entry is not None:
            self.holders.discard(entry[1])
            fcntl.flock(entry[0], fcntl.LOCK_UN)


def _gate_engine(engine: Engine, gate: WriteGate) -> None:
    """Release the gate right after the DBAPI commit or rollback (and, should neither come,
    when the connection goes back to the pool or is thrown away)."""
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_conn: Any) -> None:
        try:
            commit(dbapi_conn)
        finally:
            gate.release(dbapi_conn)

    def do_rollback(dbapi_conn: Any) -> None:
        try:
            rollback(dbapi_conn)
        finally:
            gate.release(dbapi_conn)

    dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign,assignment]
    for name in ("checkin", "invalidate", "close", "close_detached"):
        event.listen(engine, name, lambda dbapi_conn, *_: gate.release(dbapi_conn))


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN: a deferred transaction that reads and later
    # upgrades to a writer fails with SQLITE_BUSY at once instead of waiting its turn.
    # Readers (``read_only(engine)``) begin DEFERRED and never block anyone under WAL.
    # BEGIN goes straight to the driver: SQLAlchemy's statement execution cost more than
    # SQLite's own BEGIN, once per transaction (the api's group commit included).
    options = conn.get_execution_options()
    dbapi_conn = conn.connection.dbapi_connection
    if options.get(READ_ONLY):
        dbapi_conn.execute("BEGIN")
        return
    if options.get(NO_AUTOCHECKPOINT):
        info = conn.connection.info  # lives as long as the DBAPI connection
        if not info.get(NO_AUTOCHECKPOINT):  # a connection setting: once is enough
            dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")
            info[NO_AUTOCHECKPOINT] = True
    gate: WriteGate | None = conn.engine.dialect.__dict__.get("leadhub_gate")
    if gate is None:
        dbapi_conn.execute("BEGIN IMMEDIATE")
        return
    if options.get(NO_WAIT):
        _begin_now(dbapi_conn, gate)
        return
    gate.acquire(dbapi_conn)
    try:
        dbapi_conn.execute("BEGIN IMMEDIATE")
    except BaseException:
        gate.release(dbapi_conn)
        raise


def _begin_now(dbapi_conn: Any, gate: WriteGate) -> None:
    """BEGIN IMMEDIATE if the write lock is free now, else ``WriterBusy``: the gate without
    queueing, then SQLite's lock without its busy handler (a writer outside the gate, such
    as an erasure's WAL truncation, holds it only for a moment, but 30 s is the timeout)."""
    if not gate.try_acquire(dbapi_conn):
        raise WriterBusy("the write lock is taken")
    try:
        dbapi_conn.execute("PRAGMA busy_timeout=0")
        try:
            dbapi_conn.execute("BEGIN IMMEDIATE")
        finally:
            dbapi_conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except sqlite3.OperationalError as exc:
        gate.release(dbapi_conn)
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise WriterBusy(str(exc)) from exc
        raise
    except BaseException:
        gate.release(dbapi_conn)
        raise


def reserve_turn(engine: Engine, thread: int) -> None:
    """Block until the write gate is ``thread``'s: its next ``no_wait`` writer then begins
    at once. For an event loop, whose thread must not block: it waits on another thread."""
    gate: WriteGate = engine.dialect.__dict__["leadhub_gate"]
    gate.reserve(thread)


def unreserve_turn(engine: Engine, thread: int) -> None:
    """Let go of a turn ``reserve_turn`` took and ``thread`` did not use."""
    gate: WriteGate = engine.dialect.__dict__["leadhub_gate"]
    gate.unreserve(thread)


def no_wait(engine: Engine) -> Engine | None:
    """``engine`` for a writer that must never wait for the write lock (``NO_WAIT``), or
    None where the store cannot tell without waiting (PostgreSQL, SQLite without the gate)."""
    if "leadhub_gate" not in engine.dialect.__dict__:
        return None
    return engine.execution_options(**{NO_WAIT: True})


def background_checkpoints(engine: Engine) -> Engine | None:
    """``engine`` for writers whose commits must not stall on a WAL checkpoint (the api's
    group commit), or None where that does not apply (PostgreSQL, in-memory SQLite).
    Whoever uses it calls ``checkpoint`` every fraction of a second."""
    if "leadhub_gate" not in engine.dialect.__dict__:
        return None
    return engine.execution_options(**{NO_AUTOCHECKPOINT: True})


def checkpoint(engine: Engine) -> tuple[int, int]:
    """Copy committed WAL pages into the database without blocking anyone (PASSIVE).

    The WAL starts over only when a writer begins while every frame is copied, which
    back-to-back writers rarely leave time for; so once it holds ``RESTART_FRAMES``, the
    copy is finished while holding the write gate (no writer adds frames meanwhile; it
    copies what the last pass left, a few ms), and the next writer starts the WAL over.
    Never a RESTART or TRUNCATE checkpoint: those wait for readers, and a long read would
    then hold every writer behind the gate. Returns (frames in the WAL, frames copied)."""
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        assert driver is not None
        _busy, log, done = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        gate: WriteGate | None = engine.dialect.__dict__.get("leadhub_gate")
        if gate is not None and log >= RESTART_FRAMES:
            gate.acquire(raw.dbapi_connection)
            try:
                _busy, log, done = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                gate.release(raw.dbapi_connection)
        return int(log), int(done)
    finally:
        raw.close()


def truncate_wal(engine: Engine, attempts: int = 20) -> bool:
    """SQLite: copy the whole WAL into the database and empty it (TRUNCATE), so the -wal
    file keeps no page as it was before an erasure (``hub/engine/erasure.py``). Waits for
    readers (a few tries); False when it could not. Nothing to do on PostgreSQL."""
    if not is_sqlite(engine):
        return True
    for _ in range(attempts):
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            busy, _log, _done = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.close()
        if not busy:
            return True
        time.sleep(0.05)
    return False


def read_only(engine: Engine) -> Engine:
    """The same engine and pool, for work that only reads."""
    return engine.execution_options(**{READ_ONLY: True})


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a file under ``data_dir``."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            poolclass=NullPool if path == ":memory:" else None,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            json_serializer=encode_json,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        if path and path != ":memory:" and not path.startswith("file:"):
            gate = WriteGate(str(Path(path).resolve()))
            engine.dialect.leadhub_gate = gate  # type: ignore[attr-defined]
            _gate_engine(engine, gate)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                         json_serializer=encode_json)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision; safe to call from every process."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migrate_lock, engine.begin() as conn:
        if is_postgresql(engine):
            # one migrating process at a time across the whole cluster
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74201)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
