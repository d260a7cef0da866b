"""What every kit shares: the plugin under test registered by module, its settings as a
``plugins.toml``, the empty-secret check, and one in-process hub per kit class."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import BaseModel, SecretBytes, SecretStr
from sqlalchemy import func, select

from hub import PROJECT
from hub.config import build_config
from hub.connectors import Connector
from hub.errors import ConfigError
from hub.plugins import PluginInfo, discover, make_plugin_manager
from hub.queue import EmbeddedRedis
from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import running_app

ADMIN_TOKEN = "kit-admin-token-0123456789abcdef"
UNSET_VAR = "LEADHUB_KIT_SECRET_NEVER_SET"


def toml_value(value: Any) -> str:
    """``value`` as TOML (strings, numbers, booleans, lists and tables of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_table(header: str, table: Mapping[str, Any]) -> str:
    return f"[{header}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in table.items())


def _installed_ids() -> set[str]:
    return {ep.name for ep in entry_points(group=PROJECT)}


class ConnectorKit:
    """Attributes every kit subclass sets (sources and destinations alike)."""

    #: The connector class under test.
    connector: ClassVar[type[Connector[Any]]]
    #: Its plugin id (the entry-point name); "" takes ``connector.plugin_id`` or the module name.
    plugin_id: ClassVar[str] = ""
    #: The module holding ``leadhub_register_connectors``; "" takes the connector's module.
    plugin_module: ClassVar[str] = ""
    #: The ``plugins.toml`` table of one instance, without ``plugin``, secrets included.
    settings: ClassVar[dict[str, Any]] = {}
    section: ClassVar[str] = "sources"

    @classmethod
    def kit_plugin_id(cls) -> str:
        """``plugin_id``, else the entry point naming the plugin's module, else its name."""
        if cls.plugin_id:
            return cls.plugin_id
        module = cls.plugin_module or cls.connector.__module__
        named = [ep.name for ep in entry_points(group=PROJECT) if ep.module == module]
        return named[0] if named else module.rsplit(".", 1)[-1]

    @classmethod
    def kit_module(cls) -> ModuleType:
        name = cls.plugin_module or cls.connector.__module__
        __import__(name)
        return sys.modules[name]

    @classmethod
    def extra_plugins(cls) -> list[tuple[str, object]]:
        """The plugin as a module, for a hub that does not have it installed."""
        pid = cls.kit_plugin_id()
        return [] if pid in _installed_ids() else [(pid, cls.kit_module())]

    @classmethod
    def plugin_infos(cls) -> dict[str, PluginInfo]:
        return discover(make_plugin_manager(cls.extra_plugins()))

    def kit_settings(self) -> dict[str, Any]:
        """The instance's settings; override to compute them (a fake server's address)."""
        return dict(self.settings)

    def table(self, **changes: Any) -> dict[str, Any]:
        return {"plugin": self.kit_plugin_id(), **self.kit_settings(), **changes}

    def secret_keys(self) -> list[str]:
        """The settings keys the connector's ``Config`` holds as secrets."""
        config = self.connector.Config.model_validate(self.table())
        return [k for k in self.kit_settings() if _holds_secret(getattr(config, k, None))]

    # ------------------------------------------------------------ the tests

    def test_empty_secrets_are_refused_with_section_and_key(self) -> None:
        """Every secret left empty (an unset ``${VAR}``) is a config error naming it."""
        keys = self.secret_keys()
        if not keys:
            pytest.skip(f"{self.kit_plugin_id()} declares no secret in the kit's settings")
        infos = self.plugin_infos()
        where = f"[{self.section}.kit]"
        every = self.table(**{k: "${" + UNSET_VAR + "}" for k in keys})
        problems = _problems({self.section: {"kit": every}}, infos)
        for key in keys:
            assert any(p.startswith(f"{where} {key}:") and "empty" in p for p in problems), (
                f"an empty {key!r} was not refused: {problems}")
            alone = _problems({self.section: {"kit": self.table(**{key: ""})}}, infos)
            assert any(p.startswith(f"{where} {key}:") for p in alone), (key, alone)
        assert not _problems({self.section: {"kit": self.table()}}, infos), "the kit's own settings fail"


def _problems(raw: dict[str, Any], infos: dict[str, PluginInfo]) -> list[str]:
    try:
        build_config(raw, infos, {})
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _holds_secret(value: Any) -> bool:
    if isinstance(value, SecretStr | SecretBytes):
        return True
    if isinstance(value, BaseModel):
        return any(_holds_secret(getattr(value, f)) for f in type(value).model_fields)
    if isinstance(value, Mapping):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_secret(v) for v in value)
    return False


@dataclass
class KitHub:
    """The hub's app in this process (no worker) with a store and a Redis of its own."""

    rt: Runtime
    client: httpx.Client

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                   **kw)

    def stored(self) -> int:
        """Raw requests in the store (every authentic request is one)."""
        with self.rt.db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.inbound_events)).scalar_one())

    def lead_ids(self, source: str) -> set[str]:
        ids: set[str] = set()
        cursor = None
        while True:
            params: dict[str, Any] = {"source": source, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            r = self.admin("GET", "/api/leads", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            ids |= {item["id"] for item in page["items"]}
            cursor = page.get("next_cursor")
            if not cursor:
                return ids


@contextmanager
def running_kit_hub(config: str, workdir: Path, extra: list[tuple[str, object]],
                    hub: Mapping[str, Any] | None = None) -> Iterator[KitHub]:
    """Run the hub's app for ``config`` (a plugins.toml text without ``[hub]``, whose
    settings are ``hub``) on loopback, in this process."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "plugins.toml"
    path.write_text(toml_table("hub", {"admin_token": ADMIN_TOKEN, **(hub or {})}) + "\n" + config,
                    "utf-8")
    redis = EmbeddedRedis(workdir / "redis")
    url = redis.start()
    try:
        with running_app(path, data_dir=workdir / "data", redis_url=url,
                         extra_plugins=extra) as (rt, client):
            yield KitHub(rt, client)
    finally:
        redis.stop()
