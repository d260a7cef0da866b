"""The plugin manager: every plugin, first-party or not, comes in through the ``leadhub``
entry-point group, and its id is the entry-point name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from hub import PROJECT, hookspecs
from hub.connectors import Connector


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin, as ``leadhub plugins`` and ``GET /api/plugins`` show it."""

    id: str
    kind: str
    version: str
    description: str
    connector: type[Connector[Any]]

    def settings_schema(self) -> dict[str, Any]:
        return self.connector.Config.model_json_schema()


class PluginError(Exception):
    """A plugin failed to load or declares itself wrongly."""


def make_plugin_manager(extra: Iterable[tuple[str, object]] = ()) -> pluggy.PluginManager:
    """Load every ``leadhub`` entry point (and ``extra`` (name, module) pairs, for tests).

    ``check_pending`` makes a misspelled hook implementation an error at start, not silence.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.load_setuptools_entrypoints(PROJECT)
    for name, plugin in extra:
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm


def _distribution_version(pm: pluggy.PluginManager, plugin: object) -> str:
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return str(dist.version)
    if isinstance(plugin, ModuleType):
        return str(getattr(plugin, "__version__", "0"))
    return "0"


def discover(pm: pluggy.PluginManager) -> dict[str, PluginInfo]:
    """Ask each plugin for its connector class, keyed by the plugin's entry-point name."""
    found: dict[str, PluginInfo] = {}
    for impl in pm.hook.leadhub_register_connectors.get_hookimpls():
        plugin_id = impl.plugin_name
        registered: list[type[Connector[Any]]] = []
        register: Callable[[type[Connector[Any]]], None] = registered.append
        impl.function(register=register)
        if len(registered) != 1:
            raise PluginError(
                f"plugin {plugin_id!r} must register exactly one connector class, "
                f"registered {len(registered)}"
            )
        cls = registered[0]
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise PluginError(f"plugin {plugin_id!r} registered {cls!r}, not a Connector")
        cls.plugin_id = plugin_id
        found[plugin_id] = PluginInfo(
            id=plugin_id,
            kind=cls.kind,
            version=_distribution_version(pm, impl.plugin),
            description=cls.description or (cls.__doc__ or "").strip().split("\n")[0],
            connector=cls,
        )
    return found
