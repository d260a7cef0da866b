"""Opening the store and bringing its schema up to date (Alembic, on every start)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).with_name("migrations")
_migrate_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; NORMAL keeps commits durable across a
    # process crash (only an OS crash can lose the last commits) at a fraction of FULL's cost.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


READ_ONLY = "leadhub_read_only"


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock at BEGIN: a deferred transaction that reads and later
    # upgrades to a writer fails with SQLITE_BUSY at once instead of waiting its turn.
    # Readers (``read_only(engine)``) begin DEFERRED and never block anyone under WAL.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision; safe to call from every process."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _migrate_lock, engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # one migrating process at a time across the whole cluster
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(74201)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
