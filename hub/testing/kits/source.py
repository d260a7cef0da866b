"""The source kit: the contract every webhook source keeps, checked the same way for all.

Subclass ``SourceKit`` in a test module and set a few attributes::

    class TestMySource(SourceKit):
        connector = MySource
        settings = {"token": "kit-token"}          # one instance's plugins.toml table
        payloads = Path(__file__).parent / "payloads" / "my_source"
        auth_headers = ("x-my-signature",)         # dropped for the unsigned request

        def sign(self, request, settings):         # how the provider authenticates
            return replace(request, query=(*request.query, ("token", settings["token"])))

The kit then checks, through the hub's real app and store (one per class):

- a request without credentials, or signed with wrong secrets, is refused (401) and
  nothing is stored;
- a config whose secrets are empty (an unset ``${VAR}``) is refused, naming section and key;
- each payload file parses into what its ``expect`` says (``hub.testing.kits.expect``);
- the hub answers each signed payload as the provider expects (its ``expect.answer``);
- a repeated request (the provider's retry) is one event: the same leads, none added.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from hub.connectors import ConnectorContext, InboundRequest, Source
from hub.errors import ParseError
from hub.testing.kits.common import ConnectorKit, KitHub, running_kit_hub, toml_table
from hub.testing.kits.expect import answer_summary, event_summary, mismatches, recording
from hub.testing.payloads import Payload, load_payloads

#: Headers the kit never forwards as they were recorded (httpx sets its own).
_HOP_HEADERS = ("host", "content-length", "connection", "transfer-encoding")


class SourceKit(ConnectorKit):
    """Base class of a source's contract tests; see the module docstring."""

    connector: ClassVar[type[Source[Any]]]
    section: ClassVar[str] = "sources"
    #: The directory of the source's payload files (``hub.testing.payloads``).
    payloads: ClassVar[Path]
    #: Request headers that carry the credential (dropped, with the query, when unsigned).
    auth_headers: ClassVar[tuple[str, ...]] = ()
    #: Payloads the provider sends without credentials by design (a handshake whose answer
    #: reveals nothing, documented in the plugin): the unsigned check skips them, the
    #: wrongly-signed one still applies.
    open_payloads: ClassVar[tuple[str, ...]] = ()
    #: Files in ``payloads`` that are no request to the source (a remote API's answer that
    #: a fake serves), by name.
    ignored_payloads: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------ what a subclass adapts

    def sign(self, request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        """``request`` made authentic as the provider would with ``settings``'s secrets
        (the kit also calls it with wrong secrets). The default: an open source."""
        return request

    def unsigned(self, request: InboundRequest) -> InboundRequest:
        """``request`` without its credentials: no query, no ``auth_headers``."""
        headers = {k: v for k, v in request.headers.items() if k not in self.auth_headers}
        return replace(request, query=(), headers=headers)

    # ------------------------------------------------------------ helpers

    def kit_payloads(self) -> list[Payload]:
        found = [p for p in load_payloads(self.payloads) if p.name not in self.ignored_payloads]
        assert found, f"no payload files in {self.payloads}"
        return found

    def webhook_payloads(self) -> list[Payload]:
        """Payloads that are events (not handshakes, not polled messages)."""
        if not self.connector.methods:
            pytest.skip(f"{self.kit_plugin_id()} is polled: it takes no webhooks")
        with tempfile.TemporaryDirectory() as tmp:
            source = self.instance(Path(tmp))
            found = [p for p in self.kit_payloads() if p.method in self.connector.methods
                     and source.handshake(self.request_for(p, "kit")) is None]
        assert found, f"no webhook payload in {self.payloads}"
        return found

    def wrong_settings(self) -> dict[str, Any]:
        settings = self.kit_settings()
        return {k: (f"{v}-wrong" if k in self.secret_keys() else v) for k, v in settings.items()}

    def request_for(self, payload: Payload, source: str, *, wrong: bool = False) -> InboundRequest:
        settings = self.wrong_settings() if wrong else self.kit_settings()
        return self.sign(payload.request(source), settings)

    def instance(self, tmp_path: Path) -> Source[Any]:
        config = self.connector.Config.model_validate(self.table())
        return self.connector(config, ConnectorContext(name="kit", data_dir=tmp_path))

    @staticmethod
    def send(hub: KitHub, request: InboundRequest) -> httpx.Response:
        url = f"/hooks/{request.source}" + (f"/{request.path}" if request.path else "")
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_HEADERS}
        return hub.client.request(request.method, url, params=list(request.query),
                                  headers=headers, content=request.body or None)

    @pytest.fixture(scope="class")
    @classmethod
    def kit_hub(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KitHub]:
        """The hub's app with three instances of the source: ``kit`` (refusals),
        ``kit_answer`` (answers) and ``kit_repeat`` (repeats), so no test sees another's."""
        kit = cls()
        if not kit.connector.methods:
            pytest.skip(f"{kit.kit_plugin_id()} is polled: it takes no webhooks")
        table = kit.table()
        config = "".join(toml_table(f"sources.{name}", table) + "\n"
                         for name in ("kit", "kit_answer", "kit_repeat"))
        with running_kit_hub(config, tmp_path_factory.mktemp("source-kit"), kit.extra_plugins()) as hub:
            yield hub

    # ------------------------------------------------------------ the tests

    def test_unsigned_and_wrongly_signed_requests_are_refused_and_not_stored(
        self, kit_hub: KitHub
    ) -> None:
        for payload in self.webhook_payloads():
            checks = [("signed with wrong secrets", self.request_for(payload, "kit", wrong=True))]
            if payload.name not in self.open_payloads:
                checks.append(("unsigned", self.unsigned(payload.request("kit"))))
            for what, request in checks:
                before = kit_hub.stored()
                r = self.send(kit_hub, request)
                assert r.status_code == 401, f"{payload.name} {what}: {r.status_code} {r.text[:200]}"
                assert kit_hub.stored() == before, f"{payload.name} {what} was stored"

    def test_payloads_parse_as_expected(self, tmp_path: Path) -> None:
        source = self.instance(tmp_path)
        checked = 0
        for payload in self.kit_payloads():
            if payload.method not in (*self.connector.methods, "POLL"):
                continue
            request = self.request_for(payload, "kit")
            if source.handshake(request) is not None:
                continue  # answered before parsing: the answer test covers it
            try:
                actual: dict[str, Any] = {"events": [event_summary(e) for e in source.parse(request)]}
            except ParseError:
                actual = {"parse_error": True}
            expect = payload.expect or {}
            if recording():
                kept = {k: v for k, v in expect.items() if k not in ("events", "parse_error")}
                payload.write_meta({**payload.meta, "expect": {**actual, **kept}})
                continue
            if "events" not in expect and "parse_error" not in expect:
                continue
            wanted = {k: expect[k] for k in ("events", "parse_error") if k in expect}
            if wanted.get("parse_error") is False:
                del wanted["parse_error"]
            problems = mismatches(wanted, actual)
            assert not problems, f"{payload.name}: " + "; ".join(problems)
            checked += 1
        assert checked or recording(), f"no payload in {self.payloads} has an expect.events"

    def test_answers_as_the_provider_expects(self, kit_hub: KitHub) -> None:
        checked = 0
        for payload in self.kit_payloads():
            if payload.method not in self.connector.methods:
                continue
            r = self.send(kit_hub, self.request_for(payload, "kit_answer"))
            actual = answer_summary(r.status_code, r.headers.get("content-type", ""), r.content)
            expect = payload.expect or {}
            if recording():
                payload.write_meta({**payload.meta, "expect": {**expect, "answer": actual}})
                continue
            assert r.status_code < 500, f"{payload.name}: {r.status_code} {r.text[:200]}"
            if "answer" in expect:
                problems = mismatches(expect["answer"], actual)
                assert not problems, f"{payload.name}: " + "; ".join(problems)
                checked += 1
        assert checked or recording(), f"no payload in {self.payloads} has an expect.answer"

    def test_a_repeated_request_is_one_event(self, kit_hub: KitHub) -> None:
        made_leads = 0
        for payload in self.webhook_payloads():
            request = self.request_for(payload, "kit_repeat")
            before = kit_hub.lead_ids("kit_repeat")
            first = self.send(kit_hub, request)
            after_first = kit_hub.lead_ids("kit_repeat")
            second = self.send(kit_hub, request)
            after_second = kit_hub.lead_ids("kit_repeat")
            assert first.status_code < 300 or first.status_code == second.status_code, payload.name
            assert after_second == after_first, (
                f"{payload.name}: the repeat made lead(s) {sorted(after_second - after_first)}")
            made_leads += len(after_first - before)
        assert made_leads, "no payload made a lead, so the kit could not check a repeat"
