"""Empty secrets (an unset ``${VAR}``) are a configuration error for every plugin, by
construction: ``ConnectorConfig`` refuses any blank ``SecretStr``, ``leadhub check`` names
each one, and the signature and handshake code never compares against ``""`` either."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel, Field, SecretBytes, SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from typer.testing import CliRunner

from hub.cli import app
from hub.config import build_config
from hub.connectors import ConnectorConfig, ConnectorContext, InboundRequest
from hub.errors import AuthError, ConfigError
from hub.plugins import PluginInfo, discover, make_plugin_manager
from hub.sdk.meta import sign as meta_sign
from plugins.facebook_leadads import FacebookLeadAdsConfig, FacebookLeadAdsSource
from plugins.mailgun import MailgunConfig, MailgunSource, check_signature
from plugins.vk import VKConfig, VKSource
from plugins.whatsapp import WhatsAppConfig, WhatsAppSource
from tests.package_install import env_with_path, pip_install_target
from tests.payload_loader import load_request

PLUGINS = discover(make_plugin_manager())
UNSET = "LEADHUB_TEST_SECRET_NEVER_SET"
EMPTY = "is empty (an unset ${VAR}?)"
OPTIONAL = EMPTY + "; to run without it, leave the key out"  # where the plugin allows that
CTX = ConnectorContext(name="src", data_dir=Path("."))


def problems_of(raw: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    """The problems ``build_config`` reports for ``raw`` (none: it returns)."""
    try:
        build_config(raw, PLUGINS, env or {})
    except ConfigError as exc:
        return list(exc.problems)
    return []


def one_source(name: str, table: dict[str, Any]) -> dict[str, Any]:
    return {"sources": {name: table}}


# ---------------------------------------------------------------- the plugins of the finding


def test_mailgun_with_an_unset_signing_key_does_not_load() -> None:
    found = problems_of(one_source("mg", {"plugin": "mailgun", "signing_key": "${MG_KEY}"}))
    assert found == [f"[sources.mg] signing_key: {EMPTY}"]
    # blank is empty too, and ${VAR:-} is the same unset variable
    assert problems_of(one_source("mg", {"plugin": "mailgun", "signing_key": " \t"})) == found
    assert problems_of(one_source("mg", {"plugin": "mailgun", "signing_key": "${MG_KEY:-}"})) == found


def test_whatsapp_names_both_empty_secrets_in_one_run() -> None:
    table = {"plugin": "whatsapp", "verify_token": "${WA_VERIFY}", "app_secret": "${WA_SECRET}"}
    assert sorted(problems_of(one_source("wa", table))) == [
        f"[sources.wa] app_secret: {EMPTY}", f"[sources.wa] verify_token: {EMPTY}"]


def test_facebook_leadads_with_an_unset_verify_token_does_not_load() -> None:
    table = {"plugin": "facebook_leadads", "verify_token": "${FB_VERIFY}",
             "app_secret": "app-secret", "access_token": "page-token"}
    assert problems_of(one_source("fb", table)) == [f"[sources.fb] verify_token: {EMPTY}"]


def test_vk_with_an_unset_secret_does_not_load() -> None:
    table = {"plugin": "vk", "confirmation_code": "a1b2c3", "secret": "${VK_SECRET}"}
    assert problems_of(one_source("vk", table)) == [f"[sources.vk] secret: {OPTIONAL}"]


def test_webhook_destination_with_an_unset_signing_secret_does_not_load() -> None:
    def table(secret: str) -> dict[str, Any]:
        return {"destinations": {"hook": {"plugin": "webhook", "url": "https://example.com/in",
                                          "signing_secret": secret}}}

    assert problems_of(table("${HOOK_SECRET}")) == [f"[destinations.hook] signing_secret: {OPTIONAL}"]
    # the spec's prefix with nothing after it is no key either: every delivery would fail
    [problem] = problems_of(table("whsec_${HOOK_SECRET}"))
    assert problem.startswith("[destinations.hook] signing_secret:") and "unset ${VAR}" in problem
    assert problems_of(table("whsec_${HOOK_SECRET}"), {"HOOK_SECRET": "c2VjcmV0LWtleQ=="}) == []


def test_amocrm_empty_access_token_is_not_read_as_left_out() -> None:
    """Before, ``_given`` took an empty token for an absent one and ran on OAuth silently."""
    oauth = {"client_id": "id", "client_secret": "s", "refresh_token": "r",
             "redirect_uri": "https://example.ru/oauth"}
    table = {"plugin": "amocrm", "base_url": "https://example.amocrm.ru",
             "access_token": "${AMO_TOKEN}", **oauth}
    assert problems_of({"destinations": {"amo": table}}) == [
        f"[destinations.amo] access_token: {OPTIONAL}"]


def test_a_secret_inside_a_container_is_checked_too() -> None:
    class Nested(ConnectorConfig):
        keys: list[SecretStr] = Field(default_factory=list)
        by_name: dict[str, SecretStr] = Field(default_factory=dict)
        maybe: SecretStr | None = None

    with pytest.raises(ValidationError) as caught:
        Nested.model_validate({"plugin": "x", "keys": ["ok", ""], "by_name": {"a": " "}, "maybe": ""})
    errors = {str(e["loc"][0]): e["msg"] for e in caught.value.errors()}
    assert errors == {"keys": f"{EMPTY} at [1]{OPTIONAL[len(EMPTY):]}",
                      "by_name": f"{EMPTY} at ['a']{OPTIONAL[len(EMPTY):]}", "maybe": OPTIONAL}
    assert Nested.model_validate({"plugin": "x", "keys": ["ok"], "maybe": None}).maybe is None


# ---------------------------------------------------------------- defence in depth
# A config built without validation (model_construct) must still never compare against "".


def test_mailgun_refuses_a_request_signed_with_an_empty_key() -> None:
    fields = {"timestamp": "1795993800", "token": "abc"}
    forged = hmac.new(b"", b"1795993800abc", hashlib.sha256).hexdigest()
    with pytest.raises(AuthError, match="not configured"):
        check_signature("", {**fields, "signature": forged}, tolerance_s=600, now=1795993900)
    source = MailgunSource(MailgunConfig.model_construct(plugin="mailgun", signing_key=SecretStr("")), CTX)
    body = (f"timestamp=1795993800&token=abc&signature={forged}&from=a%40example.ru"
            "&body-plain=call+me+%2B79161234567").encode()
    with pytest.raises(AuthError):
        source.verify(InboundRequest("POST", "mg", "", (), {
            "content-type": "application/x-www-form-urlencoded"}, body))


@pytest.mark.parametrize(("source", "provider"), [
    (WhatsAppSource(WhatsAppConfig.model_construct(
        plugin="whatsapp", verify_token=SecretStr(""), app_secret=SecretStr("")), CTX), "whatsapp"),
    (FacebookLeadAdsSource(FacebookLeadAdsConfig.model_construct(
        plugin="facebook_leadads", verify_token=SecretStr(""), app_secret=SecretStr(""),
        access_token=SecretStr("")), CTX), "facebook_leadads"),
])
def test_meta_handshake_and_signature_refuse_an_empty_secret(source: Any, provider: str) -> None:
    for token in ("", None):
        query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}
        if token is not None:
            query["hub.verify_token"] = token
        with pytest.raises(AuthError) as caught:
            source.handshake(load_request(provider, "verify_get", query=query))
        assert caught.value.status_code == 403
    body = json.dumps({"object": "whatsapp_business_account", "entry": []}).encode()
    with pytest.raises(AuthError):
        source.verify(InboundRequest("POST", "src", "", (), {
            "content-type": "application/json", "x-hub-signature-256": meta_sign(body, "")}, body))


def test_vk_refuses_an_empty_secret_in_the_body() -> None:
    source = VKSource(VKConfig.model_construct(plugin="vk", confirmation_code="c",
                                               secret=SecretStr("")), CTX)
    envelope = json.loads(load_request("vk", "message_new").body)
    for secret in ("", " "):
        body = json.dumps({**envelope, "secret": secret}).encode()
        with pytest.raises(AuthError):
            source.verify(load_request("vk", "message_new", body=body))


# ---------------------------------------------------------------- left out = open, where documented


def test_a_secret_left_out_where_optional_still_gives_an_open_source() -> None:
    raw = {"sources": {
        "site_form": {"plugin": "webform"},
        "vk": {"plugin": "vk", "confirmation_code": "a1b2c3"},
        "tg": {"plugin": "telegram"},
    }}
    cfg = build_config(raw, PLUGINS, {})
    for name, provider, payload in (("site_form", "webform", "urlencoded_ru"),
                                    ("vk", "vk", "message_new"), ("tg", "telegram", "message_text")):
        spec = cfg.sources[name]
        source: Any = spec.plugin.connector(spec.config, ConnectorContext(name=name, data_dir=Path(".")))
        request = load_request(provider, payload, source=name, query={})
        source.verify(request)  # nothing to check: the admin left the key out
        assert source.parse(request)


# ---------------------------------------------------------------- every plugin, through `leadhub check`

_CANDIDATES: tuple[Any, ...] = ("https://example.com/leadhub", 1, True, "2024-01-01", [], {})


def _sample(field: FieldInfo) -> Any:
    """The field's documented example, else a plain value it accepts (a URL for strings, so
    base_url-like checks pass)."""
    annotation = field.annotation
    if field.examples:  # the plugin's own example passes its validators too
        return field.examples[0]
    if get_origin(annotation) is Literal:
        return get_args(annotation)[0]
    typed: Any = Annotated[(annotation, *field.metadata)] if field.metadata else annotation
    adapter: TypeAdapter[Any] = TypeAdapter(typed)
    for candidate in _CANDIDATES:
        try:
            adapter.validate_python(candidate)
        except ValidationError:
            continue
        return candidate
    raise AssertionError(f"no sample value for {annotation}: add a candidate to _CANDIDATES")


def _secret_value(annotation: Any) -> Any:
    """A TOML value with every secret inside ``annotation`` set to the unset variable, or
    None when no secret is in it (lists, dicts, optionals and nested models are walked)."""
    if annotation in (SecretStr, SecretBytes):
        return "${" + UNSET + "}"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return next((v for a in args if (v := _secret_value(a)) is not None), None)
    if origin is Annotated:
        return _secret_value(args[0])
    if origin in (list, tuple, set, frozenset, Sequence) and args:
        inner = _secret_value(args[0])
        return None if inner is None else [inner]
    if origin in (dict, Mapping) and len(args) == 2:
        inner = _secret_value(args[1])
        return None if inner is None else {"k": inner}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        table = _filled(annotation)
        return table if _secret_keys(annotation) else None
    return None


def _secret_keys(model: type[BaseModel]) -> list[str]:
    return [name for name, f in model.model_fields.items() if _secret_value(f.annotation) is not None]


def _filled(model: type[BaseModel]) -> dict[str, Any]:
    """Every secret as the unset variable; every other required setting a valid value."""
    table: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        secret = _secret_value(field.annotation)
        if secret is not None:
            table[name] = secret
        elif field.is_required():
            table[name] = _sample(field)
    return table


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"


def _plugins_toml(plugins: dict[str, PluginInfo]) -> tuple[str, list[str]]:
    lines, expected = ['[hub]', 'admin_token = "a-long-admin-token-for-the-test"'], []
    for plugin_id, info in sorted(plugins.items()):
        section = f"{info.kind}s.{plugin_id}"
        table = {**_filled(info.connector.Config), "plugin": plugin_id}
        lines += ["", f"[{section}]"] + [f"{key} = {_toml(v)}" for key, v in table.items()]
        expected += [f"[{section}] {key}: {EMPTY}" for key in _secret_keys(info.connector.Config)]
    return "\n".join(lines) + "\n", expected


def check_names_every_secret(tmp_path: Path, plugins: dict[str, PluginInfo],
                             env: dict[str, str]) -> list[str]:
    """Run the real ``leadhub check`` on every plugin's every secret left as an unset
    ``${VAR}``: exit 2, each one named, nothing else wrong. The expected keys."""
    text, expected = _plugins_toml(plugins)
    config = tmp_path / "plugins.toml"
    config.write_text(text, encoding="utf-8")
    env = {k: v for k, v in env.items() if k != UNSET}
    run = subprocess.run([sys.executable, "-m", "hub.cli", "check", "--config", str(config)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    out = " ".join(run.stderr.split())
    missing = [e for e in expected if e not in out]
    assert not missing, f"not named: {missing}\n{run.stderr}"
    # nothing else is wrong with a connector: the filled-in settings are valid, so the
    # problems are exactly the empty secrets
    reported = re.findall(r"\[(?:sources|destinations)\.[^\]]+\] [\w.]+:", out)
    assert sorted(reported) == sorted(e.split(": ")[0] + ":" for e in expected), run.stderr
    return expected


def test_check_names_every_empty_secret_of_every_installed_plugin(tmp_path: Path) -> None:
    """Must show 2: each plugin's every secret left as an unset ${VAR}: exit 2, each named.
    The secrets are read from the models, not listed here."""
    expected = check_names_every_secret(tmp_path, PLUGINS, dict(os.environ))
    # the plugins that carry secrets today, so an empty walk cannot pass this test
    assert {"mailgun", "whatsapp", "facebook_leadads", "vk", "webhook", "amocrm", "imap",
            "telegram", "mango", "webform"} <= {e.split("]")[0].split(".")[1] for e in expected}


def test_a_plugin_installed_later_is_covered_without_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A package made by ``leadhub plugin new`` and installed with pip: its secret is found
    in its model and refused by the config base it inherits, with no change here or in it."""
    made = CliRunner().invoke(app, ["plugin", "new", "acme_later", "--dir", str(tmp_path),
                                    "--kind", "source"])
    assert made.exit_code == 0, made.output
    target = pip_install_target(tmp_path / "leadhub-acme-later", tmp_path / "target")
    monkeypatch.syspath_prepend(str(target))
    plugins = discover(make_plugin_manager())
    assert "acme_later" in plugins
    expected = check_names_every_secret(tmp_path, plugins, env_with_path(target))
    assert f"[sources.acme_later] token: {EMPTY}" in expected


def test_every_secret_looking_setting_is_a_secret_str() -> None:
    """A token, secret, password, salt or key typed ``str`` would escape the empty check
    (and be printed in reprs); every installed plugin declares them ``SecretStr``."""
    looks_secret = re.compile(r"token|secret|password|salt|(^|_)key$")
    # 1C names its references ``…_Key`` (GUIDs of catalog entries): identifiers, not secrets
    references = {"onec.organization_key", "onec.phone_kind_key", "onec.email_kind_key"}
    plain = [f"{plugin_id}.{name}" for plugin_id, info in sorted(PLUGINS.items())
             for name, field in info.connector.Config.model_fields.items()
             if looks_secret.search(name) and _secret_value(field.annotation) is None]
    assert [name for name in plain if name not in references] == []
