"""The kits fail for broken connectors: each is run (with ``pytester``) against a
connector that breaks the contract on purpose, and the checks it breaks must fail."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

BROKEN_SOURCE = '''
from uuid import uuid4

from hub import hookimpl
from hub.testing.kits import SourceKit
from plugins.webform import WebformSource
from tests.kits import signing
from tests.payload_loader import PAYLOADS


class OpenDoor(WebformSource):
    """Lets anyone in, misreads names, and makes every retry a new event."""

    def verify(self, request):
        return None

    def parse(self, request):
        events = super().parse(request)
        for event in events:
            event.event_id = uuid4().hex
            if event.lead is not None:
                event.lead.name = "Someone"
        return events


@hookimpl
def leadhub_register_connectors(register):
    register(OpenDoor)


class TestOpenDoor(SourceKit):
    connector = OpenDoor
    plugin_id = "webform_broken"
    settings = {"token": "kit-token"}
    payloads = PAYLOADS / "webform"

    def sign(self, request, settings):
        return signing.token_query(request, settings)
'''

BROKEN_DESTINATION = '''
from dataclasses import replace
from uuid import uuid4

from hub import hookimpl
from hub.connectors import DeliveryOutcome
from hub.errors import RetryableError
from hub.testing.kits import DestinationKit
from plugins.webhook import WebhookDestination
from tests.kits.test_webhook import Receiver


class Forgetful(WebhookDestination):
    """A new idempotency key per attempt, and every error taken for a passing one."""

    def deliver(self, items):
        fresh = [replace(i, idempotency_key=uuid4().hex) for i in items]
        return [DeliveryOutcome(o.delivery_id, o.external_id,
                                None if o.error is None else RetryableError(str(o.error)))
                for o in super().deliver(fresh)]


@hookimpl
def leadhub_register_connectors(register):
    register(Forgetful)


class TestForgetful(DestinationKit):
    connector = Forgetful
    plugin_id = "webhook_broken"
    write_paths = ("/leads",)

    def make_fake(self):
        return Receiver()

    def settings_for(self, base_url):
        return {"url": f"{base_url}/leads", "timeout_s": 1}

    def created(self, hub):
        with hub.fake.lock:
            return len(hub.fake.records)
'''

BROKEN_READER = '''
from datetime import datetime

from tests.erp_plugin import ErpDeals
from tests.kits.test_erp_readers import TestErpDealsKit as Base


class FirstPageOnly(ErpDeals):
    """Stops after the first page and reads from the beginning of time."""

    def won_deals(self, since, until, pipelines=()):
        yield next(iter(super().won_deals(datetime.min.replace(tzinfo=since.tzinfo), until)))


class TestFirstPageOnly(Base):
    connector = FirstPageOnly
'''


def failed_tests(pytester: pytest.Pytester, source: str) -> set[str]:
    pytester.makepyfile(test_broken=textwrap.dedent(source))
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    reports = result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    return {r.nodeid.split("::")[-1] for r in reports if r.failed}


def test_the_source_kit_fails_a_broken_source(pytester: pytest.Pytester) -> None:
    assert failed_tests(pytester, BROKEN_SOURCE) == {
        "test_unsigned_and_wrongly_signed_requests_are_refused_and_not_stored",
        "test_payloads_parse_as_expected",
        "test_a_repeated_request_is_one_event",
    }


def test_the_destination_kit_fails_a_broken_destination(pytester: pytest.Pytester) -> None:
    # (a knock-on failure of a later check, as the destination's breaker opens, may add to these)
    assert failed_tests(pytester, BROKEN_DESTINATION) >= {
        "test_a_retry_after_an_uncertain_failure_creates_nothing_twice[500]",
        "test_a_retry_after_an_uncertain_failure_creates_nothing_twice[timeout]",
        "test_a_4xx_is_permanent",
    }


def test_the_reader_kit_fails_a_broken_reader(pytester: pytest.Pytester) -> None:
    assert failed_tests(pytester, BROKEN_READER) == {
        "test_pages_to_the_end", "test_since_and_until_are_honoured"}
