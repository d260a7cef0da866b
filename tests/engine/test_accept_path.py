"""One accept path (``hub/engine/accept.py``): a request accepted by webhook, by poll or by
reprocessing from quarantine ends the same way in the store, and a reprocessed call event
merges into its call's lead as live ingest would, over real HTTP on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
from sqlalchemy import select

from hub import hookimpl
from hub.connectors import (
    Connector,
    InboundRequest,
    LeadDraft,
    ParsedEvent,
    PolledMessage,
    PollingSource,
    PollingSourceConfig,
    Source,
    SourceConfig,
)
from hub.engine.poll import poll_source
from hub.errors import ParseError
from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import running_app
from plugins.mango import MangoSource
from tests.call_hub import ADMIN, HEAD, CallHub
from tests.conftest import ConfigWriter
from tests.plugins.test_mango import CALLER, KEY, SALT

# ---------------------------------------------------------------- test plugins


class FlakyMango(MangoSource):
    """Mango with a bug in its summary parser, until ``fixed``."""

    fixed = False

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        if request.path.endswith("summary") and not FlakyMango.fixed:
            raise RuntimeError("summary parser crashed")
        return super().parse(request)


def probe_parse(request: InboundRequest) -> list[ParsedEvent]:
    """One outcome per ``kind=`` of a form body; everything fails while the probe is down."""
    if Probe.down:
        raise ParseError("the probe is down")
    form = dict(request.form_items())
    kind = form.get("kind")
    if kind == "lead":
        return [ParsedEvent(None, LeadDraft(channel="form", phones=[form["phone"]]))]
    if kind == "ping":
        return [ParsedEvent(None, None, reason="a ping")]
    if kind == "empty":
        return []
    if kind == "no_contact":
        return [ParsedEvent(None, LeadDraft(channel="form", name="Anonymous"))]
    if kind == "crash":
        raise KeyError("kind")  # a plugin bug
    if kind == "bad_draft":  # a plugin bug the core finds when it normalizes the draft
        return [ParsedEvent(None, cast(LeadDraft, {"phones": ["+79161234567"]}))]
    raise ParseError(f"unknown kind {kind!r}")


class Probe(Source[SourceConfig]):
    """A webhook source of ``probe_parse``."""

    down = False
    kept_headers = ("x-probe-delivery",)
    secret_headers = ("x-probe-token",)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        return probe_parse(request)


class ProbeMailbox(PollingSource[PollingSourceConfig]):
    """A polling source of ``probe_parse``; its provider is the list ``inbox``."""

    inbox: ClassVar[list[PolledMessage]] = []

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        return probe_parse(request)

    def poll(self, limit: int, max_bytes: int) -> list[PolledMessage]:
        return ProbeMailbox.inbox[:limit]

    def ack(self, messages: list[PolledMessage]) -> None:
        taken = {m.event_id for m in messages}
        ProbeMailbox.inbox[:] = [m for m in ProbeMailbox.inbox if m.event_id not in taken]


def plugin_of(cls: type[Connector[Any]]) -> types.ModuleType:
    """A plugin module that registers ``cls`` (one source class per plugin)."""
    module = types.ModuleType(f"leadhub_test_{cls.__name__.lower()}")

    @hookimpl
    def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
        register(cls)

    module.leadhub_register_connectors = leadhub_register_connectors  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    return module


PLUGINS: list[tuple[str, object]] = [
    ("flakymango", plugin_of(FlakyMango)), ("probe", plugin_of(Probe)),
    ("probemailbox", plugin_of(ProbeMailbox)),
]

CONFIG = f"""
[sources.calls]
plugin = "flakymango"
api_key = "{KEY}"
api_salt = "{SALT}"

[sources.hook]
plugin = "probe"

[sources.hook_again]
plugin = "probe"

[sources.mail]
plugin = "probemailbox"
"""

FORM = "application/x-www-form-urlencoded"
SUMMARY_KEY = "id:events/summary:MzYxNTQ3NTI2Mjo0MDE="


@pytest.fixture
def hub(write_config: ConfigWriter, tmp_path: Path, redis_url: str,
        database_url: str) -> Iterator[CallHub]:
    FlakyMango.fixed, Probe.down = False, False
    ProbeMailbox.inbox.clear()
    with running_app(write_config(HEAD + CONFIG), data_dir=tmp_path / "data", redis_url=redis_url,
                     database_url=database_url, extra_plugins=PLUGINS) as (rt, c):
        yield CallHub(rt, c)


# ---------------------------------------------------------------- a call event


def reprocess(h: CallHub, entry_id: str) -> dict[str, Any]:
    r = h.client.post(f"/api/quarantine/{entry_id}/reprocess", headers=ADMIN)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def event_key_lead(rt: Runtime, source: str, key: str) -> str | None:
    ek = t.event_keys
    with rt.db.connect() as conn:
        row = conn.execute(select(ek.c.lead_id).where(ek.c.source == source,
                                                      ek.c.event_key == key)).first()
    assert row is not None, f"no event key {key}"
    return cast(str | None, row.lead_id)


def ledger_totals(h: CallHub) -> dict[str, Any]:
    ledger = h.client.get("/api/ledger", headers=ADMIN).json()
    assert ledger["balanced"], ledger
    totals: dict[str, Any] = ledger["totals"]
    return totals


def test_a_reprocessed_call_event_merges_into_its_calls_lead(hub: CallHub) -> None:
    h = hub
    first = h.send("calls", "mango", "call_appeared")
    assert first.status_code == 200, first.text
    lead_id = first.json()["id"]
    # the summary meets the plugin's bug: Mango gets its 200, the event waits in quarantine
    r = h.send("calls", "mango", "summary_answered")
    assert r.status_code == 200, r.text
    [entry] = h.quarantined()
    assert entry["reason"] == "plugin error: RuntimeError"
    assert not h.lead(lead_id)["call"].get("duration_s")

    FlakyMango.fixed = True
    done = reprocess(h, entry["id"])
    assert done == {"id": entry["id"], "state": "reprocessed", "lead_ids": [lead_id]}
    lead = h.only_lead("calls")  # one lead for the call, as live ingest makes it
    assert lead["id"] == lead_id and lead["contact"]["phones"] == [CALLER]
    assert lead["call"]["answered"] is True and lead["call"]["duration_s"] == 138
    assert event_key_lead(h.rt, "calls", SUMMARY_KEY) == lead_id
    assert h.quarantined() == []
    totals = ledger_totals(h)
    assert (totals["events"], totals["leads"], totals["non_lead"], totals["quarantined"]) == (2, 1, 1, 0)

    # a second reprocess makes nothing new; Mango's own retry of the summary is a retry
    assert reprocess(h, entry["id"]) == done
    again = h.send("calls", "mango", "summary_answered")
    assert again.status_code == 200 and again.json()["id"] == lead_id
    assert [i["id"] for i in h.leads("calls")] == [lead_id]
    assert ledger_totals(h)["events"] == 2


def test_reprocessing_an_event_the_provider_delivered_again_meanwhile_is_a_retry(hub: CallHub) -> None:
    h = hub
    lead_id = h.send("calls", "mango", "call_appeared").json()["id"]
    h.send("calls", "mango", "summary_answered")
    [entry] = h.quarantined()
    FlakyMango.fixed = True
    # Mango delivers the summary again once the plugin is fixed: it continues the call's lead
    r = h.send("calls", "mango", "summary_answered")
    assert r.status_code == 200 and r.json()["id"] == lead_id
    # the quarantined copy, reprocessed afterwards, is that same event: a retry
    done = reprocess(h, entry["id"])
    assert done == {"id": entry["id"], "state": "reprocessed", "lead_ids": [lead_id]}
    assert [i["id"] for i in h.leads("calls")] == [lead_id]
    assert h.lead(lead_id)["call"]["duration_s"] == 138
    totals = ledger_totals(h)
    assert (totals["events"], totals["leads"], totals["non_lead"], totals["quarantined"]) == (2, 1, 1, 0)


# ---------------------------------------------------------------- three doors, one outcome

CASES = {
    "lead": "kind=lead&phone=8+916+123-45-67",
    "ping": "kind=ping",
    "empty": "kind=empty",
    "no_contact": "kind=no_contact",
    "garbage": "kind=nonsense",
    "plugin_bug": "kind=crash",
    "bad_draft": "kind=bad_draft",
}


def outcome(rt: Runtime, inbound_id: str) -> dict[str, Any]:
    """What the store made of one raw request: its outcome and note, its open quarantine
    entry's reason, the phones of its lead."""
    ie, q, ld = t.inbound_events, t.quarantine, t.leads
    with rt.db.connect() as conn:
        row = conn.execute(select(ie).where(ie.c.id == inbound_id)).one()
        reasons = conn.execute(select(q.c.reason).where(q.c.inbound_id == inbound_id,
                                                        q.c.state == "open")).scalars().all()
        data = conn.execute(select(ld.c.data).where(ld.c.id == row.lead_id)).scalar()
    return {"outcome": row.outcome, "note": row.note, "events": row.events,
            "quarantined": list(reasons), "phones": data["contact"]["phones"] if data else None}


def request_ids(rt: Runtime, source: str) -> set[str]:
    ie = t.inbound_events
    with rt.db.connect() as conn:
        return set(conn.execute(select(ie.c.id).where(ie.c.source == source)).scalars())


def the_new_request(rt: Runtime, source: str, before: set[str]) -> str:
    """The one raw request of ``source`` stored since ``before`` (ids are ULIDs: two made
    in the same millisecond do not sort in the order they were made)."""
    [new] = request_ids(rt, source) - before
    return new


def by_webhook(h: CallHub, source: str) -> dict[str, str]:
    """Post every case to ``source``; each case's raw request id."""
    ids = {}
    for name, body in CASES.items():
        before = request_ids(h.rt, source)
        r = h.client.post(f"/hooks/{source}", content=body, headers={"content-type": FORM})
        assert r.status_code in (200, 422), r.text
        ids[name] = the_new_request(h.rt, source, before)
    return ids


def by_poll(h: CallHub, first_id: int) -> dict[str, str]:
    """Have the mailbox hold every case, one poll each; each case's raw request id."""
    ids = {}
    for i, (name, body) in enumerate(CASES.items(), start=first_id):
        ProbeMailbox.inbox.append(PolledMessage(f"msg-{i}", body.encode(), FORM, ref=str(i)))
        before = request_ids(h.rt, "mail")
        polled = poll_source(h.rt, "mail")
        assert polled.error is None and polled.messages == 1
        ids[name] = the_new_request(h.rt, "mail", before)
    return ids


def reprocessed(h: CallHub, ids: dict[str, str]) -> None:
    """Reprocess the quarantine entry of each request."""
    q = t.quarantine
    for inbound_id in ids.values():
        with h.rt.db.connect() as conn:
            entry = conn.execute(select(q.c.id).where(q.c.inbound_id == inbound_id)).scalar_one()
        reprocess(h, entry)


def test_poll_and_reprocess_end_as_a_webhook_does(hub: CallHub) -> None:
    h = hub
    webhook = {name: outcome(h.rt, i) for name, i in by_webhook(h, "hook").items()}
    assert webhook["lead"]["outcome"] == "lead" and webhook["lead"]["phones"] == ["+79161234567"]
    assert webhook["ping"] == {"outcome": "non_lead", "note": "a ping", "events": 1,
                               "quarantined": [], "phones": None}
    assert webhook["empty"]["outcome"] == "non_lead"
    assert webhook["garbage"]["quarantined"] == ["unknown kind 'nonsense'"]
    assert webhook["plugin_bug"]["quarantined"] == ["plugin error: KeyError"]
    assert webhook["bad_draft"]["quarantined"][0].startswith("plugin error: ")
    assert webhook["no_contact"]["quarantined"][0].startswith("no contact")

    polled = {name: outcome(h.rt, i) for name, i in by_poll(h, 0).items()}
    assert polled == webhook

    # each request quarantined while the probe was down, reprocessed once it is back
    Probe.down = True
    later_hooks, later_mail = by_webhook(h, "hook_again"), by_poll(h, 100)
    assert {outcome(h.rt, i)["quarantined"][0] for i in later_hooks.values()} == {"the probe is down"}
    Probe.down = False
    reprocessed(h, later_hooks)
    reprocessed(h, later_mail)
    assert {name: outcome(h.rt, i) for name, i in later_hooks.items()} == webhook
    assert {name: outcome(h.rt, i) for name, i in later_mail.items()} == webhook
    assert ledger_totals(h)["events"] == 4 * len(CASES)


def test_a_source_declares_the_headers_kept_with_its_raw_requests(hub: CallHub) -> None:
    h = hub
    r = h.client.post("/hooks/hook", content=CASES["lead"], headers={
        "content-type": FORM, "x-probe-delivery": "d-1", "x-probe-token": "s3cret",
        "x-other": "dropped", "x-twilio-signature": "not this source's"})
    assert r.status_code == 200, r.text
    ie = t.inbound_events
    with h.rt.db.connect() as conn:
        headers = conn.execute(select(ie.c.headers).where(ie.c.source == "hook")).scalar_one()
    assert headers == {"content-type": FORM, "user-agent": headers["user-agent"],
                       "accept": headers["accept"], "x-probe-delivery": "d-1",
                       "x-probe-token": "***"}
