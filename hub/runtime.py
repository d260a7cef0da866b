"""One hub process's world: validated config, plugins, store engine, Redis, connectors.

The api, every worker and the scheduler each build one ``Runtime`` from the same
``plugins.toml``; RQ jobs are module-level functions taking ids, and they reach the
runtime of the worker process they run in through ``current()``.
"""

from __future__ import annotations

import os
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import redis
from sqlalchemy import Engine

from hub.config import HubConfig, load_config
from hub.connectors import Connector, ConnectorContext, Destination, Source
from hub.engine.limiter import RateLimiter
from hub.plugins import PluginInfo, discover, make_plugin_manager, notify
from hub.queue import EmbeddedRedis, connect, resolve_redis_url
from hub.store import connector_state
from hub.store.db import make_engine, migrate, read_only

if TYPE_CHECKING:
    from hub.sdk.readers import AccountingReader, CrmReader

#: The admin switches' version: a random token, replaced after every switch (and set by
#: the first reader that finds none, e.g. after Redis restarted): a process re-reads the
#: switches from the store whenever it differs from the one it read them at.
SWITCHES_KEY = "leadhub:switches"


def new_switches_version() -> str:
    return uuid.uuid4().hex


@dataclass
class Runtime:
    config: HubConfig
    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo]
    db: Engine
    redis_url: str
    redis: redis.Redis[bytes]
    embedded_redis: EmbeddedRedis | None = None
    pid: int = field(default_factory=os.getpid)
    _sources: dict[str, Source[Any]] = field(default_factory=dict)
    _destinations: dict[str, Destination[Any]] = field(default_factory=dict)
    _readers: dict[tuple[str, str], Connector[Any]] = field(default_factory=dict)
    #: the admin switches as last read from the store, with the ``SWITCHES_KEY`` version
    #: they were read at (``switches_at``)
    _switches: tuple[bytes, dict[str, bool]] | None = None
    #: admin switches this process flipped (``note_switch``): what it cached about them is old
    switch_notes: int = 0

    @property
    def reader(self) -> Engine:
        """The store for read-only work: on SQLite its transactions begin DEFERRED, so
        readers never hold the write lock (``db`` begins IMMEDIATE, for writers)."""
        return read_only(self.db)

    @property
    def data_dir(self) -> Path:
        return self.config.hub.data_dir

    def context(self, name: str) -> ConnectorContext:
        return ConnectorContext(
            name=name, data_dir=self.data_dir, default_region=self.config.hub.default_region
        )

    def source(self, name: str) -> Source[Any] | None:
        """The source connector named ``name``, or None when unknown."""
        if name not in self._sources:
            spec = self.config.sources.get(name)
            if spec is None:
                return None
            cls = spec.plugin.provides("source")
            assert cls is not None and issubclass(cls, Source)
            self._sources[name] = cls(spec.config, self.context(name))
        return self._sources[name]

    def destination(self, name: str) -> Destination[Any] | None:
        if name not in self._destinations:
            spec = self.config.destinations.get(name)
            if spec is None:
                return None
            cls = spec.plugin.provides("destination")
            assert cls is not None and issubclass(cls, Destination)
            limiter = RateLimiter(self.redis)
            made: list[Destination[Any]] = []

            def throttle() -> None:
                limits = made[0].effective_limits()
                limiter.acquire(name, limits.requests_per_second, limits.burst)

            def request_slot() -> AbstractContextManager[None]:
                # no fixed rate (None): only a hold the engine placed after a 429 applies
                limits = made[0].effective_limits()
                return limiter.slot(name, limits.requests_per_second, limits.burst)

            made.append(cls(spec.config, replace(self.context(name), throttle=throttle,
                                                 request_slot=request_slot)))
            self._destinations[name] = made[0]
        return self._destinations[name]

    def crm_reader(self, name: str) -> CrmReader[Any] | None:
        """The CRM reader of the ``[destinations.NAME]`` connector, or None when its plugin
        has none (or ``name`` is unknown)."""
        from hub.sdk.readers import CrmReader

        reader = self._reader(name, "crm_reader")
        return reader if isinstance(reader, CrmReader) else None

    def accounting_reader(self, name: str) -> AccountingReader[Any] | None:
        """The accounting reader of the ``[destinations.NAME]`` connector, or None."""
        from hub.sdk.readers import AccountingReader

        reader = self._reader(name, "accounting_reader")
        return reader if isinstance(reader, AccountingReader) else None

    def _reader(self, name: str, kind: str) -> Connector[Any] | None:
        """A reader is built from its plugin's destination table: the same validated
        settings object and the destination's context, so its requests share that
        connector's rate limit (one account, one limit)."""
        if (kind, name) not in self._readers:
            spec = self.config.destinations.get(name)
            cls = spec.plugin.provides(kind) if spec is not None else None
            dest = self.destination(name)
            if spec is None or cls is None or dest is None:
                return None
            self._readers[kind, name] = cls(spec.config, dest.context)
        return self._readers[kind, name]

    def enabled_overrides(self) -> dict[str, bool]:
        """Connector switches set through the admin API (persisted in the store)."""
        with self.reader.connect() as conn:
            return connector_state.overrides(conn)

    def switches_at(self, version: bytes) -> dict[str, bool]:
        """``enabled_overrides``, read from the store only when the switches' version in
        Redis (``SWITCHES_KEY``, which the caller read: ``drain_start`` does, with its other
        keys) is not the one of the last read. Every drain read the store for them (a
        third of a millisecond, under load on the api's write path's heels)."""
        cached = self._switches
        if cached is not None and cached[0] == version:
            return cached[1]
        overrides = self.enabled_overrides()
        self._switches = (version, overrides)
        return overrides

    def note_switch(self) -> None:
        """After an admin switch is committed: every process reads the switches again
        (a new ``SWITCHES_KEY`` version). Raises ``redis.RedisError``."""
        self._switches = None
        self.switch_notes += 1
        self.redis.set(SWITCHES_KEY, new_switches_version())

    def is_enabled(self, name: str, overrides: dict[str, bool] | None = None) -> bool:
        spec = self.config.sources.get(name) or self.config.destinations.get(name)
        if spec is None:
            return False
        state = (self.enabled_overrides() if overrides is None else overrides).get(name)
        return spec.config.enabled if state is None else state

    def close(self) -> None:
        for conn in [*self._readers.values(), *self._sources.values(), *self._destinations.values()]:
            conn.close()
        self._readers.clear()
        self._sources.clear()
        self._destinations.clear()
        self.redis.close()
        self.db.dispose()
        if self.embedded_redis:
            self.embedded_redis.stop()


def build_runtime(
    config_path: str | Path | None = None,
    *,
    config: HubConfig | None = None,
    extra_plugins: list[tuple[str, object]] | None = None,
    start_redis: bool = True,
    environ: dict[str, str] | None = None,
) -> Runtime:
    """Validate the config, open the store (migrating it) and connect to Redis.

    ``environ`` stands for ``os.environ`` when the config is read (``${VAR}``, ``LEADHUB_*``).
    """
    pm = make_plugin_manager(extra_plugins or [])
    plugins = discover(pm)
    cfg = config or load_config(config_path, plugins, environ)
    cfg.hub.data_dir.mkdir(parents=True, exist_ok=True)
    db = make_engine(cfg.hub.sqlalchemy_url())
    migrate(db)
    embedded = None
    if start_redis:
        url, embedded = resolve_redis_url(cfg.hub.redis_url, cfg.hub.data_dir)
    else:  # a child of `leadhub serve` or a worker: the URL is in the environment
        url = cfg.hub.redis_url or EmbeddedRedis(cfg.hub.data_dir / "redis").url
    rt = Runtime(cfg, pm, plugins, db, url, connect(url), embedded)
    notify(pm, "leadhub_startup", settings=cfg.hub.model_dump(mode="json"))
    return rt


_current: Runtime | None = None


def set_current(rt: Runtime | None) -> None:
    global _current
    _current = rt


def current() -> Runtime:
    """The runtime of this process; RQ jobs use it.

    Built on first use from ``$LEADHUB_CONFIG`` (each forked worker builds its own, since
    database and Redis connections must not cross a fork).
    """
    global _current
    if _current is None or _current.pid != os.getpid():
        _current = build_runtime(None, start_redis=False)
    return _current
