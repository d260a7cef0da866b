"""Shared fixtures: real Redis (embedded, or LEADHUB_TEST_REDIS_URL), real stores
(SQLite always, PostgreSQL when LEADHUB_TEST_DATABASE_URL is set), real processes."""

from __future__ import annotations

import os
import secrets
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hub.queue import EmbeddedRedis
from hub.runtime import Runtime, build_runtime
from hub.testing.cluster import HubCluster
from plugins.amocrm.testing import FakeAmoCRM

PG_URL = os.environ.get("LEADHUB_TEST_DATABASE_URL", "")
PG_SKIP = "PostgreSQL tests need LEADHUB_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres)"


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own: embedded, or the shared one flushed."""
    shared = os.environ.get("LEADHUB_TEST_REDIS_URL")
    if shared:
        redis.Redis.from_url(shared).flushdb()
        yield shared
        return
    emb = EmbeddedRedis(tmp_path / "redis")
    url = emb.start()
    yield url
    emb.stop()


def _pg_database() -> Iterator[str]:
    if not PG_URL:
        pytest.skip(PG_SKIP)
    name = f"leadhub_test_{secrets.token_hex(6)}"
    admin = create_engine(_sa(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _sa(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1] if url.startswith("postgres") else url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store test runs on SQLite and on PostgreSQL (a fresh database per test)."""
    if request.param == "sqlite":
        yield ""  # the hub's default: SQLite under data_dir
    else:
        yield from _pg_database()


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _pg_database()


ConfigWriter = Callable[[str], Path]


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """Write a plugins.toml (dedented) under the test's directory."""

    def write(body: str) -> Path:
        path = tmp_path / "plugins.toml"
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        return path

    return write


ClusterFactory = Callable[..., HubCluster]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Build (not start) HubClusters; every one is stopped at the end of the test."""
    made: list[HubCluster] = []

    def make(config: Path, database_url: str = "", **kw: object) -> HubCluster:
        c = HubCluster(config, data_dir=tmp_path / f"hub{len(made)}", database_url=database_url,
                       **kw)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


RuntimeFactory = Callable[..., Runtime]


@pytest.fixture
def make_runtime(write_config: ConfigWriter, tmp_path: Path, database_url: str, redis_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[RuntimeFactory]:
    """Runtimes (no processes) for a ``plugins.toml`` text, on this test's store and Redis
    (``extra_plugins`` as ``build_runtime`` takes them); each is closed at the end."""
    made: list[Runtime] = []

    def make(config: str, **kw: object) -> Runtime:
        monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("LEADHUB_DATABASE_URL", database_url)
        monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
        runtime = build_runtime(write_config(config), **kw)  # type: ignore[arg-type]
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


AMO_TOKEN = "long-lived-token"


@pytest.fixture
def amo() -> Iterator[FakeAmoCRM]:
    """The fake amoCRM on loopback, with a long-lived token (``AMO_TOKEN``)."""
    with FakeAmoCRM(token=AMO_TOKEN) as fake:
        yield fake


@pytest.fixture
def amo_runtime(amo: FakeAmoCRM, make_runtime: RuntimeFactory) -> Runtime:
    """A runtime (no processes) routing every webform lead to the fake amoCRM, for tests
    that drive the engine's steps themselves with a controlled clock."""
    return make_runtime(f"""
        [hub]
        default_destinations = ["amo_main"]
        [sources.site_form]
        plugin = "webform"
        [destinations.amo_main]
        plugin = "amocrm"
        base_url = "{amo.base_url}"
        access_token = "{AMO_TOKEN}"
        timeout_s = 2
    """)
