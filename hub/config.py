"""``plugins.toml``: environment expansion, then validation of the whole file at once.

Every problem is reported with its section and key (``[destinations.amo_main]
pipeline_id: ...``) and a bad file never starts half a hub.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from hub.connectors import ConnectorConfig, TimeZoneName
from hub.errors import ConfigError
from hub.plugins import RECONCILE_READERS, PluginInfo

ENV_OVERRIDES = {
    "database_url": "LEADHUB_DATABASE_URL",
    "redis_url": "LEADHUB_REDIS_URL",
    "admin_token": "LEADHUB_ADMIN_TOKEN",
    "data_dir": "LEADHUB_DATA_DIR",
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class HubSettings(BaseModel):
    """The ``[hub]`` table."""

    model_config = ConfigDict(extra="forbid")
    data_dir: Path = Field(default=Path("var"), description="SQLite file, embedded Redis data, exports.")
    database_url: str = Field(default="", description='"" = SQLite under data_dir; or postgresql://...')
    redis_url: str = Field(default="", description='"" = embedded Redis, persistent, under data_dir.')
    admin_token: SecretStr = Field(default=SecretStr(""), description="Bearer token of the admin API.")
    default_region: str = Field(default="RU", min_length=2, max_length=2)
    dedup_window_minutes: int = Field(default=30, ge=0)
    default_destinations: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    body_timeout_s: float = Field(
        default=30.0, gt=0,
        description="A request body not received whole within this many seconds gets 408.",
    )
    timezone: TimeZoneName = Field(default="UTC", description="IANA time zone of reconcile jobs' cron "
                          "schedules (e.g. Europe/Moscow).")
    retry_horizon_hours: float = Field(default=25.0, ge=0, description="Retry this long before dead.")
    raw_retention_days: int = Field(
        default=30, ge=0,
        description="Raw requests and quarantine are purged after this many days (0 = keep); "
        "the ledger's counts survive the purge.",
    )
    lead_retention_days: int = Field(
        default=0, ge=0, description="0 = keep leads; otherwise leads older than this are purged.",
    )
    public_docs: bool = Field(
        default=False,
        description="Serve /docs and /openapi.json without the admin token (they list every source).",
    )
    public_metrics: bool = Field(
        default=False, description="Serve /metrics without the admin token (Prometheus scrapers).",
    )

    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url.split("://", 1)[1]
            return url
        return f"sqlite:///{(self.data_dir / 'leadhub.db').resolve()}"


class AssignRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["round_robin", "weighted", "sticky"] = "round_robin"
    managers: list[str] = Field(default_factory=list)
    weights: dict[str, int] = Field(default_factory=dict)


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    destinations: list[str] = Field(default_factory=list)
    product: str | None = None
    assign: AssignRule | None = None


class ReconcileJob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crm: str
    accounting: str
    schedule: str | None = None
    lookback_days: int = Field(default=90, gt=0)
    payment_grace_days: int = Field(default=0, ge=0)
    amount_tolerance: float = Field(default=0.01, ge=0)
    pipelines: list[int] = Field(default_factory=list)
    notify: list[str] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        from croniter import croniter

        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"not a cron expression: {value!r} (e.g. \"0 6 * * *\")")
        return value


@dataclass
class ConnectorSpec:
    """One configured connector: its name, its plugin, its validated settings."""

    name: str
    plugin: PluginInfo
    config: ConnectorConfig


@dataclass
class HubConfig:
    """The whole validated file."""

    path: Path | None
    hub: HubSettings
    sources: dict[str, ConnectorSpec] = field(default_factory=dict)
    destinations: dict[str, ConnectorSpec] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    reconcile: dict[str, ReconcileJob] = field(default_factory=dict)


def expand_env(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string value, recursively."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    return value


def config_path(explicit: str | Path | None = None) -> Path:
    """``--config``, else ``$LEADHUB_CONFIG``, else ``./plugins.toml``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("LEADHUB_CONFIG") or "plugins.toml")


def _problems(section: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(table)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":  # a validator's own words need no prefix
            msg = msg.removeprefix("Value error, ")
        out.append(f"[{section}] {key}: {msg}")
    return out


def load_config(
    path: str | Path | None, plugins: dict[str, PluginInfo], environ: dict[str, str] | None = None
) -> HubConfig:
    """Read, expand and validate; raise ``ConfigError`` listing every problem found."""
    env = dict(os.environ if environ is None else environ)
    file = config_path(path)
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{file}: file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{file}: not valid TOML: {exc}"]) from None
    return build_config(raw, plugins, env, file)


def build_config(
    raw: dict[str, Any], plugins: dict[str, PluginInfo], env: dict[str, str], file: Path | None = None
) -> HubConfig:
    data = expand_env(raw, env)
    problems: list[str] = []
    known = {"hub", "sources", "destinations", "routes", "reconcile"}
    problems += [f"[{k}]: unknown section" for k in data if k not in known]

    hub_raw = dict(data.get("hub") or {})
    for key, var in ENV_OVERRIDES.items():
        if env.get(var):
            hub_raw[key] = env[var]
    try:
        hub = HubSettings.model_validate(hub_raw)
    except ValidationError as exc:
        problems += _problems("hub", exc)
        hub = HubSettings()
    cfg = HubConfig(path=file, hub=hub)

    for kind in ("sources", "destinations"):
        table = data.get(kind) or {}
        if not isinstance(table, dict):
            problems.append(f"[{kind}]: must be a table of connectors")
            continue
        for name, section in table.items():
            where = f"{kind}.{name}"
            if not isinstance(section, dict):
                problems.append(f"[{where}]: must be a table")
                continue
            plugin_id = section.get("plugin")
            if not plugin_id:
                problems.append(f"[{where}] plugin: missing (which plugin runs this connector?)")
                continue
            info = plugins.get(str(plugin_id))
            if info is None:
                installed = ", ".join(sorted(plugins)) or "none"
                problems.append(f"[{where}] plugin: unknown plugin {plugin_id!r} (installed: {installed})")
                continue
            cls = info.provides(kind[:-1])
            if cls is None:
                problems.append(f"[{where}] plugin: {plugin_id!r} is a {info.kind}, not a {kind[:-1]}")
                continue
            try:
                conf = cls.Config.model_validate(section)
            except ValidationError as exc:
                problems += _problems(where, exc)
                continue
            getattr(cfg, kind)[name] = ConnectorSpec(name=name, plugin=info, config=conf)

    dest_names = set(cfg.destinations)
    for i, route_raw in enumerate(data.get("routes") or []):
        where = f"routes.{i}"
        try:
            route = Route.model_validate(route_raw)
        except ValidationError as exc:
            problems += _problems(where, exc)
            continue
        where = f"routes.{route.name}"
        problems += [
            f"[{where}] destinations: unknown destination {d!r}"
            for d in route.destinations
            if d not in dest_names and f"destinations.{d}" not in _failed(problems)
        ]
        if route.assign and route.assign.strategy == "weighted" and not route.assign.weights:
            problems.append(f"[{where}] assign.weights: required for the weighted strategy")
        if route.assign and route.assign.strategy != "weighted" and not route.assign.managers:
            problems.append(f"[{where}] assign.managers: list at least one manager")
        cfg.routes.append(route)
    problems += [
        f"[hub] default_destinations: unknown destination {d!r}"
        for d in hub.default_destinations
        if d not in dest_names
    ]

    for name, job_raw in (data.get("reconcile") or {}).items():
        where = f"reconcile.{name}"
        try:
            job = ReconcileJob.model_validate(job_raw)
        except ValidationError as exc:
            problems += _problems(where, exc)
            continue
        for key, reader_kind in RECONCILE_READERS.items():
            named = getattr(job, key)
            spec = cfg.destinations.get(named)
            if named not in dest_names:
                problems.append(f"[{where}] {key}: unknown connector {named!r}")
            elif spec is not None and spec.plugin.provides(reader_kind) is None:
                problems.append(f"[{where}] {key}: {named!r} (plugin {spec.plugin.id!r}) has no "
                                f"{reader_kind.replace('_', ' ')}")
        for target in job.notify:
            spec = cfg.destinations.get(target)
            if spec is None:
                problems.append(f"[{where}] notify: unknown destination {target!r}")
            elif "reports" not in spec.plugin.capabilities:
                problems.append(f"[{where}] notify: {target!r} (plugin {spec.plugin.id!r}) cannot "
                                "receive reports (a webhook destination can)")
        cfg.reconcile[name] = job

    if problems:
        raise ConfigError(problems)
    return cfg


def _failed(problems: list[str]) -> set[str]:
    """Sections that already have a problem, so a bad connector is not reported twice."""
    return {p[1:].split("]", 1)[0] for p in problems if p.startswith("[")}
