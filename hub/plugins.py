"""The plugin manager: every plugin, first-party or not, comes in through the ``leadhub``
entry-point group, and its id is the entry-point name.

A plugin registers one or more connector classes, at most one of each kind: a source or a
destination (what an admin configures, one ``[sources.*]``/``[destinations.*]`` table per
instance), and next to a destination a CRM reader and/or an accounting reader, which are
built from that destination's table (``hub/sdk/readers.py``). Discovery checks all of it,
and every class's declared capabilities (``hub/capabilities.py``), before anything starts.

Hooks are called through ``pm.hook``: discovery calls each plugin's
``leadhub_register_connectors`` through a caller holding that plugin alone (so each class
is known to come from its plugin), and ``notify`` calls a notification hook the same way,
plugin by plugin, so one raising implementation is logged and the others still run.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from hub import PROJECT, hookspecs
from hub.capabilities import problems
from hub.connectors import Connector

log = logging.getLogger("leadhub.plugins")

#: The kinds a plugin may provide, in the order listings show them. A source or a
#: destination is what a plugin is configured as; readers go with a destination.
KINDS = ("source", "destination", "crm_reader", "accounting_reader")
CONFIGURED_KINDS = ("source", "destination")
#: The ``[reconcile.*]`` key naming a connector → the reader kind it must provide.
RECONCILE_READERS = {"crm": "crm_reader", "accounting": "accounting_reader"}


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin, as ``leadhub plugins`` and ``GET /api/plugins`` show it.

    ``kind`` and ``connector`` are its configured class (source or destination); ``classes``
    holds every class it registered by kind, readers included.
    """

    id: str
    kind: str
    version: str
    description: str
    connector: type[Connector[Any]]
    classes: Mapping[str, type[Connector[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.classes:
            object.__setattr__(self, "classes", {self.kind: self.connector})

    @property
    def kinds(self) -> list[str]:
        """Every kind this plugin provides: ``["destination", "crm_reader"]``."""
        return [k for k in KINDS if k in self.classes]

    @property
    def capabilities(self) -> list[str]:
        """The capabilities of all its classes, by their value (``"batch_lookup"``)."""
        return sorted({str(c) for cls in self.classes.values() for c in cls.capabilities})

    def provides(self, kind: str) -> type[Connector[Any]] | None:
        return self.classes.get(kind)

    def settings_schema(self) -> dict[str, Any]:
        return self.connector.Config.model_json_schema()

    def listing(self) -> dict[str, Any]:
        """The row ``leadhub plugins`` prints and ``GET /api/plugins`` returns (plus the schema)."""
        return {"id": self.id, "kind": self.kind, "version": self.version,
                "description": self.description, "kinds": self.kinds,
                "capabilities": self.capabilities}


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
    for name, plugin in plugin_modules_from_env():
        if pm.get_plugin(name) is None:  # a test may register the same module itself
            pm.register(plugin, name=name)
    pm.check_pending()
    return pm


#: ``id=module.path`` pairs, comma-separated: plugins registered by module path without
#: being installed (``hub.testing.pytest_plugin`` runs a hub with the plugin under test).
PLUGIN_MODULES_ENV = "LEADHUB_PLUGIN_MODULES"


def plugin_modules_from_env(environ: Mapping[str, str] | None = None) -> list[tuple[str, object]]:
    """The (id, module) pairs ``LEADHUB_PLUGIN_MODULES`` names, imported."""
    value = (os.environ if environ is None else environ).get(PLUGIN_MODULES_ENV, "")
    pairs = [item.partition("=") for item in value.split(",") if item.strip()]
    for name, sep, module in pairs:
        if not sep or not name.strip() or not module.strip():
            raise PluginError(f"{PLUGIN_MODULES_ENV}: expected id=module.path, got {name}{sep}{module!r}")
    return [(name.strip(), importlib.import_module(module.strip())) for name, _, module in pairs]


def _distribution_version(pm: pluggy.PluginManager, plugin: object) -> str:
    for registered, dist in pm.list_plugin_distinfo():
        if registered is plugin:
            return str(dist.version)
    if isinstance(plugin, ModuleType):
        return str(getattr(plugin, "__version__", "0"))
    return "0"


def _one_plugin(pm: pluggy.PluginManager, hook: str, plugin: object) -> Any:
    """A caller of ``hook`` that runs ``plugin``'s implementation alone."""
    others = [p for p in pm.get_plugins() if p is not plugin]
    return pm.subset_hook_caller(hook, remove_plugins=others)


def notify(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> None:
    """Call the notification ``hook`` of every plugin; an exception one raises is logged
    with the plugin's id and does not stop the others (pluggy alone stops at the first).

    Implementations run in pluggy's order: the last registered first, ``tryfirst`` and
    ``trylast`` honoured (``get_hookimpls`` lists them in reverse)."""
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        try:
            _one_plugin(pm, hook, impl.plugin)(**kwargs)
        except Exception:
            log.exception("plugin %r: %s failed", impl.plugin_name, hook)


def discover(pm: pluggy.PluginManager) -> dict[str, PluginInfo]:
    """Ask each plugin for its connector classes, keyed by the plugin's entry-point name.

    A plugin that registers none (it only listens to notification hooks) is no connector
    plugin and is not listed. Every problem of one plugin is reported at once.
    """
    found: dict[str, PluginInfo] = {}
    for impl in pm.hook.leadhub_register_connectors.get_hookimpls():
        plugin_id = impl.plugin_name
        registered: list[Any] = []
        register: Callable[[type[Connector[Any]]], None] = registered.append
        _one_plugin(pm, "leadhub_register_connectors", impl.plugin)(register=register)
        classes = _classes(plugin_id, registered)
        primary = next(classes[k] for k in CONFIGURED_KINDS if k in classes)
        for cls in classes.values():
            cls.plugin_id = plugin_id
            if cls.capabilities_inferred:
                caps = ", ".join(f"Capability.{c.name}" for c in sorted(cls.capabilities))
                log.warning("plugin %r: %s declares no capabilities; it is taken to have "
                            "{%s} from its methods and flags; declare them: capabilities = "
                            "frozenset({%s})", plugin_id, cls.__qualname__, caps, caps)
        found[plugin_id] = PluginInfo(
            id=plugin_id,
            kind=primary.kind,
            version=_distribution_version(pm, impl.plugin),
            description=primary.description or (primary.__doc__ or "").strip().split("\n")[0],
            connector=primary,
            classes=classes,
        )
    return found


def _classes(plugin_id: str, registered: list[Any]) -> dict[str, type[Connector[Any]]]:
    """The registered classes by kind, or a ``PluginError`` listing what is wrong."""
    where = f"plugin {plugin_id!r}"
    if not registered:
        raise PluginError(f"{where} must register at least one connector class, registered none")
    bad = [c for c in registered if not (isinstance(c, type) and issubclass(c, Connector))]
    if bad:
        raise PluginError(f"{where} registered {bad[0]!r}, not a Connector")
    out: list[str] = []
    classes: dict[str, type[Connector[Any]]] = {}
    for cls in registered:
        kind = getattr(cls, "kind", None)
        if kind not in KINDS:
            out.append(f"{cls.__qualname__} has no connector kind (subclass Source, "
                       "Destination, CrmReader or AccountingReader)")
        elif kind in classes:
            out.append(f"registers two {kind} classes, {classes[kind].__qualname__} and "
                       f"{cls.__qualname__} (at most one of each kind)")
        else:
            classes[kind] = cls
        out += problems(cls)
    configured = [k for k in CONFIGURED_KINDS if k in classes]
    readers = [k for k in classes if k not in CONFIGURED_KINDS]
    if len(configured) == 2:
        out.append("registers a source and a destination; one plugin is one or the other "
                   "(a second entry point can provide the other)")
    elif not configured and classes:
        out.append(f"registers only {', '.join(readers)}: a reader is configured as its "
                   "plugin's [destinations.*] table, so register the destination too")
    elif readers and configured == ["source"]:
        out.append(f"registers {', '.join(readers)} with a source: a reader goes with a destination")
    dest = classes.get("destination")
    for kind in readers:
        reader = classes[kind]
        if dest is not None and not issubclass(dest.Config, reader.Config):
            out.append(f"{reader.__qualname__}.Config ({reader.Config.__qualname__}) must be the "
                       f"destination's Config ({dest.Config.__qualname__}) or a base of it: the "
                       "reader is built from the destination's table")
    if out:
        raise PluginError(f"{where}: " + "; ".join(out))
    return classes
