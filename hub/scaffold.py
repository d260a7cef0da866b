"""``leadhub plugin new``: the files of a new plugin package, with a test that passes.

The package registers itself through the ``leadhub`` entry-point group, as every plugin
does; its plugin id is the entry-point name. The plugin modules import only the public
plugin API, ``hub.sdk``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

from hub import PROJECT

Kind = Literal["source", "destination"]
_PLUGIN_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class ScaffoldError(Exception):
    """The name or the target directory cannot be used."""


@dataclass(frozen=True)
class PluginNames:
    """Every name the package uses, derived from the plugin id."""

    plugin_id: str  # entry-point name, what admins write as plugin = "..."
    kind: Kind

    @property
    def distribution(self) -> str:
        return "leadhub-" + self.plugin_id.replace("_", "-")

    @property
    def package(self) -> str:
        return "leadhub_" + self.plugin_id

    @property
    def class_prefix(self) -> str:
        return "".join(part.capitalize() for part in self.plugin_id.split("_") if part)

    @property
    def connector_class(self) -> str:
        return self.class_prefix + ("Source" if self.kind == "source" else "Destination")

    def fill(self, template: str) -> str:
        values = {
            "plugin_id": self.plugin_id,
            "kind": self.kind,
            "distribution": self.distribution,
            "package": self.package,
            "Prefix": self.class_prefix,
            "Connector": self.connector_class,
            "ENV": self.plugin_id.upper(),
            "Header": "X-" + "-".join(p.capitalize() for p in self.plugin_id.split("_") if p) + "-Token",
        }
        for key, value in values.items():
            template = template.replace("{{" + key + "}}", value)
        return template


def create_plugin(plugin_id: str, directory: Path, kind: Kind = "destination") -> Path:
    """Write the package into ``directory/leadhub-<id>/`` and return that path.

    Refuses (``ScaffoldError``) an id that is not ``[a-z][a-z0-9_]*``, the id of an installed
    plugin (two entry points of one name cannot both load), or a target that exists.
    """
    if not _PLUGIN_ID.match(plugin_id):
        raise ScaffoldError(
            f"plugin id {plugin_id!r}: use lower-case letters, digits and _, starting with a letter"
        )
    if plugin_id in {ep.name for ep in entry_points(group=PROJECT)}:
        raise ScaffoldError(f"plugin id {plugin_id!r} is taken by an installed plugin (leadhub plugins)")
    names = PluginNames(plugin_id, kind)
    root = directory / names.distribution
    if root.exists():
        raise ScaffoldError(f"{root} already exists")
    module, test = (SOURCE_MODULE, SOURCE_TEST) if kind == "source" else (DEST_MODULE, DEST_TEST)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README_SOURCE if kind == "source" else README_DESTINATION,
        f"{names.package}/__init__.py": module,
        f"{names.package}/py.typed": "",
        f"tests/test_{plugin_id}.py": test,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(names.fill(template), encoding="utf-8")
    return root


PYPROJECT = '''\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{{distribution}}"
version = "0.1.0"
description = "LeadHub {{kind}} plugin: {{plugin_id}}"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["leadhub"]

[project.optional-dependencies]
test = ["pytest>=8"]

# The hub finds plugins only through this group; the entry-point name is the plugin id
# that admins write in plugins.toml as plugin = "{{plugin_id}}".
[project.entry-points.leadhub]
{{plugin_id}} = "{{package}}"

[tool.setuptools.packages.find]
include = ["{{package}}*"]

[tool.setuptools.package-data]
{{package}} = ["py.typed"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

README_DESTINATION = '''\
# {{distribution}}

A LeadHub destination: each lead becomes one record in the {{plugin_id}} API.

## Install

    pip install {{distribution}}
    leadhub plugins            # lists "{{plugin_id}}"

## Configure (`plugins.toml`)

```toml
[destinations.{{plugin_id}}_main]
plugin = "{{plugin_id}}"
base_url = "https://api.example.com"
api_key = "${{{ENV}}_API_KEY}"
timeout_s = 10
```

| key | meaning |
|---|---|
| `base_url` | the API's address (a self-hosted, regional or test server) |
| `api_key` | API key, sent as a bearer token (a secret: never logged) |
| `timeout_s` | HTTP timeout in seconds (default 10) |

## Develop

    pip install -e '.[test]'
    pytest

The tests run the connector against a strict fake of the API (`hub.testing.FakeServer`):
a request the fake does not expect fails the test. Replace the payload in `_create` and
the fake's routes with the real API's. See LeadHub's `docs/writing-plugins.md`.
'''

README_SOURCE = '''\
# {{distribution}}

A LeadHub source: {{plugin_id}} webhooks become leads at `POST /hooks/<source name>`.

## Install

    pip install {{distribution}}
    leadhub plugins            # lists "{{plugin_id}}"

## Configure (`plugins.toml`)

```toml
[sources.{{plugin_id}}]
plugin = "{{plugin_id}}"
token = "${{{ENV}}_TOKEN}"
```

| key | meaning |
|---|---|
| `token` | shared secret the sender puts in the `{{Header}}` header (a secret: never logged) |

## Develop

    pip install -e '.[test]'
    pytest

`verify` and `parse` are pure functions of the request: test them with real payloads the
provider sent (save them under `tests/payloads/`). See LeadHub's `docs/writing-plugins.md`.
'''

DEST_MODULE = '''\
"""``{{plugin_id}}``: a LeadHub destination that creates one record per lead through an HTTP API.

The hub calls ``deliver`` in a worker, at most ``limits.batch_size`` leads at a time and
never faster than ``limits.requests_per_second`` across all workers. Raise the SDK's errors
and let the engine decide about retries; never retry or sleep here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import httpx
from hub.sdk import (
    Connector,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
    PermanentError,
    RateLimited,
    RetryableError,
    hookimpl,
)
from pydantic import Field, SecretStr

__version__ = "0.1.0"


class {{Prefix}}Config(DestinationConfig):
    """Settings of a ``[destinations.NAME]`` table with ``plugin = "{{plugin_id}}"``."""

    base_url: str = Field(description="The API's address (a self-hosted, regional or test server).")
    api_key: SecretStr = Field(description="API key, sent as a bearer token.")
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="HTTP timeout in seconds.")


class {{Connector}}(Destination[{{Prefix}}Config]):
    """Create one {{plugin_id}} record per lead."""

    Config = {{Prefix}}Config
    description: ClassVar[str] = "{{plugin_id}}: one record per lead"
    # The API's documented limits: the engine keeps all workers together under them.
    limits: ClassVar[Limits] = Limits(requests_per_second=5, batch_size=1)

    def __init__(self, config: {{Prefix}}Config, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.client = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            timeout=config.timeout_s,
            headers={"Authorization": f"Bearer {config.api_key.get_secret_value()}"},
        )

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        return [DeliveryOutcome(item.delivery_id, external_id=self._create(item)) for item in items]

    def _create(self, item: DeliveryItem) -> str | None:
        if item.duplicate_of_external_id:
            # The person already has a record there: create nothing. (An API that can add a
            # note would do so here, with annotates_duplicates = True on the class.)
            return item.duplicate_of_external_id
        lead = item.lead
        payload = {
            "external_ref": item.idempotency_key,  # lets lookup() find it after a lost answer
            "name": lead.contact.name,
            "phone": next(iter(lead.contact.phones), None),
            "email": next(iter(lead.contact.emails), None),
            "message": lead.message,
            "source": lead.source,
            "utm_source": lead.utm.source,
            "assigned_to": lead.assigned_to,
        }
        return str(self._request("POST", "/leads", json=payload).json()["id"])

    def lookup(self, item: DeliveryItem) -> str | None:
        """An earlier attempt may have created the record and lost the answer: find it."""
        found = self._request("GET", "/leads", params={"external_ref": item.idempotency_key}).json()
        items = found.get("items") or []
        return str(items[0]["id"]) if items else None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:  # nothing was sent
            raise RetryableError(f"cannot connect: {exc}") from exc
        except httpx.HTTPError as exc:  # it may have arrived: the engine looks it up first
            raise RetryableError(f"{type(exc).__name__}: {exc}", uncertain=True) from exc
        if response.status_code == 429:
            raise RateLimited("the API says 429", _retry_after(response))
        if response.status_code >= 500:
            raise RetryableError(f"HTTP {response.status_code}", uncertain=True)
        if response.status_code >= 400:
            raise PermanentError(f"HTTP {response.status_code}: {response.text[:200]}")
        return response

    def close(self) -> None:
        self.client.close()


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register({{Connector}})
'''

DEST_TEST = '''\
"""{{Connector}} against a strict fake of the API, and its place in a plugins.toml."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hub.config import build_config
from hub.plugins import discover, make_plugin_manager
from hub.sdk import (
    ConfigError,
    ConnectorContext,
    Contact,
    DeliveryItem,
    Lead,
    PermanentError,
    RateLimited,
    RetryableError,
)
from hub.testing import FakeServer, RecordedRequest, Response, serving
from pydantic import ValidationError

from {{package}} import {{Prefix}}Config, {{Connector}}

API_KEY = "test-key"


class Fake{{Prefix}}(FakeServer):
    """The API as the plugin uses it; any other request fails the test."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, dict[str, object]] = {}
        self.add_route("POST", "/leads", self._create)
        self.add_route("GET", "/leads", self._find)

    def before_route(self, request: RecordedRequest) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return Response.json({"error": "unauthorized"}, 401)
        return None

    def _create(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        record_id = str(len(self.records) + 1)
        self.records[record_id] = request.json()
        return Response.json({"id": record_id}, 201)

    def _find(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        ref = request.q("external_ref")
        found = [{"id": k} for k, v in self.records.items() if v["external_ref"] == ref]
        return Response.json({"items": found})


@pytest.fixture
def api() -> Iterator[Fake{{Prefix}}]:
    yield from serving(Fake{{Prefix}}())


@pytest.fixture
def destination(api: Fake{{Prefix}}, tmp_path: Path) -> Iterator[{{Connector}}]:
    config = {{Prefix}}Config.model_validate(
        {"plugin": "{{plugin_id}}", "base_url": api.base_url, "api_key": API_KEY}
    )
    connector = {{Connector}}(config, ConnectorContext(name="{{plugin_id}}_main", data_dir=tmp_path))
    yield connector
    connector.close()


def item(n: int = 1) -> DeliveryItem:
    lead = Lead(
        id=f"01LEAD{n}", source="site_form", channel="form", received_at=datetime.now(UTC),
        contact=Contact(name="Ivan Petrov", phones=["+79161234567"], emails=["ivan@example.ru"]),
    )
    return DeliveryItem(delivery_id=f"d{n}", idempotency_key=f"key-{n}", lead=lead)


def test_the_hub_finds_the_plugin_through_its_entry_point() -> None:
    plugins = discover(make_plugin_manager())
    assert plugins["{{plugin_id}}"].connector is {{Connector}}
    assert plugins["{{plugin_id}}"].kind == "destination"


def test_plugins_toml_is_checked_against_the_config() -> None:
    plugins = discover(make_plugin_manager())
    table = {"plugin": "{{plugin_id}}", "base_url": "https://api.example.com", "api_key": "k"}
    config = build_config({"destinations": {"main": table}}, plugins, env={})
    assert isinstance(config.destinations["main"].config, {{Prefix}}Config)
    with pytest.raises(ValidationError, match="extra"):
        {{Prefix}}Config.model_validate({**table, "colour": "red"})
    assert "k" not in repr({{Prefix}}Config.model_validate({**table, "api_key": "k"}).api_key)
    # every SecretStr is refused when empty (an unset ${VAR}), by the hub's config base
    with pytest.raises(ConfigError, match="main] api_key: is empty"):
        build_config({"destinations": {"main": {**table, "api_key": "${UNSET_API_KEY}"}}},
                     plugins, env={})


def test_deliver_creates_one_record_per_lead(api: Fake{{Prefix}}, destination: {{Connector}}) -> None:
    [outcome] = destination.deliver([item()])
    assert outcome.delivery_id == "d1" and outcome.external_id == "1"
    assert api.records["1"]["phone"] == "+79161234567"
    assert api.records["1"]["external_ref"] == "key-1"


def test_a_lost_answer_is_found_by_lookup_not_created_twice(
    api: Fake{{Prefix}}, destination: {{Connector}}
) -> None:
    assert destination.lookup(item()) is None
    with api.faults(ratio=1.0, kinds=("500",), after_ratio=1.0), pytest.raises(RetryableError) as e:
        destination.deliver([item()])  # created, then the answer was a 500
    assert e.value.uncertain  # so the engine calls lookup before trying again
    assert destination.lookup(item()) == "1"
    assert len(api.records) == 1


def test_errors_say_retry_or_give_up(api: Fake{{Prefix}}, destination: {{Connector}}) -> None:
    with api.faults(ratio=1.0, kinds=("429",)), pytest.raises(RateLimited) as limited:
        destination.deliver([item()])
    assert limited.value.retry_after == 1
    destination.client.headers["Authorization"] = "Bearer wrong"
    with pytest.raises(PermanentError, match="401"):
        destination.deliver([item()])
'''

SOURCE_MODULE = '''\
"""``{{plugin_id}}``: a LeadHub source for JSON webhooks at ``POST /hooks/<source name>``.

``verify`` and ``parse`` are pure functions of the request: the core stores the raw
request first, then calls them, normalizes what ``parse`` returns (E.164 phones, emails,
UTM tags and click ids from fields and URLs) and answers the sender.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from hub.sdk import (
    AuthError,
    Connector,
    InboundRequest,
    LeadDraft,
    ParseError,
    ParsedEvent,
    Source,
    SourceConfig,
    hookimpl,
)
from pydantic import Field, SecretStr

__version__ = "0.1.0"
TOKEN_HEADER = "{{Header}}".lower()  # InboundRequest header names are lower-case
_KNOWN = {"event_id", "type", "name", "phone", "email", "message", "page_url"}


class {{Prefix}}Config(SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "{{plugin_id}}"``."""

    token: SecretStr = Field(description="Shared secret the sender puts in the {{Header}} header.")


class {{Connector}}(Source[{{Prefix}}Config]):
    """{{plugin_id}} webhooks: one JSON object per event."""

    Config = {{Prefix}}Config
    description = "{{plugin_id}} webhooks"
    # Set to True if the sender retries non-2xx answers for hours: it then gets 200 even
    # for a body that goes to quarantine.
    retries_non_2xx = False

    def verify(self, request: InboundRequest) -> None:
        given = request.headers.get(TOKEN_HEADER, "")
        expected = self.config.token.get_secret_value()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise AuthError("missing or wrong token")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        body = request.json()
        if not isinstance(body, dict):
            raise ParseError("expected a JSON object")
        event_id = str(body["event_id"]) if body.get("event_id") else None
        if body.get("type", "lead") != "lead":
            return [ParsedEvent(event_id=event_id, reason=f"{body['type']} event")]
        draft = LeadDraft(
            channel="form",
            name=body.get("name"),
            phones=[str(body["phone"])] if body.get("phone") else [],
            emails=[str(body["email"])] if body.get("email") else [],
            message=body.get("message"),
            page_url=body.get("page_url"),
            fields={k: v for k, v in body.items() if k not in _KNOWN},  # utm_* are read from here
        )
        return [ParsedEvent(event_id=event_id, lead=draft)]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register({{Connector}})
'''

SOURCE_TEST = '''\
"""{{Connector}}: authentication and parsing, pure functions of the request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hub.config import build_config
from hub.plugins import discover, make_plugin_manager
from hub.sdk import AuthError, ConfigError, ConnectorContext, InboundRequest, ParseError

from {{package}} import TOKEN_HEADER, {{Prefix}}Config, {{Connector}}

TOKEN = "s3cret"


@pytest.fixture
def source(tmp_path: Path) -> {{Connector}}:
    config = {{Prefix}}Config.model_validate({"plugin": "{{plugin_id}}", "token": TOKEN})
    return {{Connector}}(config, ConnectorContext(name="{{plugin_id}}", data_dir=tmp_path))


def request(body: Any, token: str | None = TOKEN) -> InboundRequest:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers[TOKEN_HEADER] = token
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest("POST", "{{plugin_id}}", "", (), headers, raw)


def test_the_hub_finds_the_plugin_through_its_entry_point() -> None:
    plugins = discover(make_plugin_manager())
    assert plugins["{{plugin_id}}"].connector is {{Connector}}
    assert plugins["{{plugin_id}}"].kind == "source"


def test_plugins_toml_is_checked_against_the_config() -> None:
    plugins = discover(make_plugin_manager())
    config = build_config(
        {"sources": {"{{plugin_id}}": {"plugin": "{{plugin_id}}", "token": "t"}}}, plugins, env={}
    )
    assert isinstance(config.sources["{{plugin_id}}"].config, {{Prefix}}Config)
    # every SecretStr is refused when empty (an unset ${VAR}), by the hub's config base
    with pytest.raises(ConfigError, match="{{plugin_id}}] token: is empty"):
        unset = {"plugin": "{{plugin_id}}", "token": "${UNSET_TOKEN}"}
        build_config({"sources": {"{{plugin_id}}": unset}}, plugins, env={})


def test_a_wrong_or_missing_token_is_refused(source: {{Connector}}) -> None:
    source.verify(request({}))
    for token in (None, "wrong"):
        with pytest.raises(AuthError):
            source.verify(request({}, token))


def test_a_lead_event_becomes_a_draft(source: {{Connector}}) -> None:
    [event] = source.parse(request({
        "event_id": "e-1", "name": "Ivan Petrov", "phone": "8 916 123-45-67",
        "email": "Ivan@Example.ru", "utm_source": "yandex", "plan": "pro",
    }))
    assert event.event_id == "e-1"  # a retry of e-1 yields the same lead
    assert event.lead is not None
    assert event.lead.phones == ["8 916 123-45-67"]  # the core makes it E.164
    assert event.lead.fields == {"utm_source": "yandex", "plan": "pro"}


def test_other_events_are_not_leads_and_garbage_is_refused(source: {{Connector}}) -> None:
    [event] = source.parse(request({"event_id": "e-2", "type": "ping"}))
    assert event.lead is None and event.reason == "ping event"
    with pytest.raises(ParseError):
        source.parse(request(b"not json"))
'''
