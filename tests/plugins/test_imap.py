"""The ``imap`` polling source against a real IMAP server (Dovecot, started by the tests):
a message becomes a lead through the same store path as a webhook, is marked, is never
taken twice (second poll, crash between commit and ack, restart), and a refused login is
an error state, not a crash loop."""

from __future__ import annotations

import imaplib
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from hub.api.app import create_app
from hub.connectors import ConnectorContext, PollingSource
from hub.engine.leads import get_lead
from hub.engine.poll import (
    POLL_QUEUE,
    PollSchedule,
    ingest_polled,
    next_delay,
    poll_source,
    poll_status,
)
from hub.errors import ParseError
from hub.runtime import Runtime, build_runtime, set_current
from hub.store import tables as t
from hub.testing.cluster import AppServer
from hub.worker import queue_names, run_worker
from plugins.imap import KEYWORD, ImapConfig, ImapSource, _mailbox_name, leadhub_register_connectors
from tests.dovecot import DOVECOT, INSTALL_HINT, Dovecot
from tests.payload_loader import load_request, payload_names, payload_path

MAX = 1 << 20


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if DOVECOT is None:
        if os.environ.get("CI"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    server = Dovecot().start()
    yield server
    server.stop()


Mailbox = tuple[str, str]


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Mailbox:
    return dovecot.new_mailbox()


def deliver(dovecot: Dovecot, box: Mailbox, name: str, folder: str = "INBOX",
            when: datetime | None = None, flags: str | None = None) -> None:
    """Put a payload into the mailbox as delivery does (IMAP APPEND)."""
    conn = dovecot.client(*box)
    try:
        if folder != "INBOX":
            conn.create(_mailbox_name(folder))
        stamp = imaplib.Time2Internaldate(when) if when else None
        typ, data = conn.append(_mailbox_name(folder), flags, stamp,
                                payload_path("imap", name).read_bytes())
        assert typ == "OK", data
    finally:
        conn.logout()


def flags(dovecot: Dovecot, box: Mailbox, folder: str = "INBOX") -> list[str]:
    """The FLAGS of every message in the folder, in UID order."""
    conn = dovecot.client(*box)
    try:
        conn.select(_mailbox_name(folder), readonly=True)
        typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
        assert typ == "OK"
        return [d.decode() for d in data if isinstance(d, bytes)]
    finally:
        conn.logout()


HubFactory = Callable[..., Runtime]


@pytest.fixture
def make_hub(tmp_path: Path, redis_url: str, dovecot: Dovecot, mailbox: Mailbox,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[HubFactory]:
    """Build a runtime over one data dir (call again after ``close`` for a restart)."""
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    made: list[Runtime] = []

    def make(password: str | None = None, **settings: Any) -> Runtime:
        user, real = mailbox
        source = {"plugin": "imap", "host": "127.0.0.1", "port": dovecot.port, "ssl": False,
                  "username": user, "password": password or real, "folder": "INBOX",
                  "poll_interval_s": 5, **settings}
        lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in source.items()]
        config = tmp_path / "plugins.toml"
        config.write_text('[hub]\ndefault_destinations = ["jsonl"]\n\n[sources.mail]\n'
                          + "\n".join(lines) + '\n\n[destinations.jsonl]\nplugin = "file"\n',
                          encoding="utf-8")
        rt = build_runtime(config)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


def count(rt: Runtime, table: Any) -> int:
    with rt.db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def inbound(rt: Runtime) -> list[Any]:
    with rt.db.connect() as conn:
        return list(conn.execute(select(t.inbound_events).order_by(t.inbound_events.c.received_at)))


# ---------------------------------------------------------------- the plugin alone (pure)


def source(**settings: Any) -> ImapSource:
    config = ImapConfig.model_validate({"plugin": "imap", "host": "imap.example.ru",
                                        "username": "leads", "password": "x", **settings})
    return ImapSource(config, ConnectorContext(name="mail", data_dir=Path(".")))


def test_payloads_name_their_source_and_the_plugin_registers() -> None:
    assert {"yandex_lead", "vacation_auto_reply", "bounce_dsn", "site_form_no_message_id"} <= set(
        payload_names("imap"))
    for name in payload_names("imap"):
        load_request("imap", name)
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [ImapSource] and issubclass(ImapSource, PollingSource)


def test_parse_reads_the_message_and_tells_robots_from_people() -> None:
    src = source()
    [event] = src.parse(load_request("imap", "yandex_lead", source="mail"))
    assert event.lead is not None
    assert event.lead.name == "Анна Смирнова"
    assert event.lead.emails == ["anna.smirnova@example.org"]
    assert event.lead.phones and "utm_source=yandex" in (event.lead.page_url or "")
    for name in ("vacation_auto_reply", "bounce_dsn"):
        [event] = src.parse(load_request("imap", name, source="mail"))
        assert event.lead is None and event.reason
    with pytest.raises(ParseError):
        src.parse(load_request("imap", "yandex_lead", headers={"content-type": "text/plain"}))


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="move_to"):
        source(mark="move")
    with pytest.raises(ValidationError, match=r"password\s+is empty"):
        source(password="")
    assert source().where == "imap.example.ru:993"
    assert source(ssl=False).where == "imap.example.ru:143"
    assert _mailbox_name("Заявки & Co") == '"&BBcEMARPBDIEOgQ4- &- Co"'


# ---------------------------------------------------------------- against Dovecot


def test_a_message_becomes_a_lead_and_is_marked_with_the_keyword(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead")
    rt = make_hub()
    out = poll_source(rt, "mail")
    assert out.error is None and out.messages == 1 and len(out.lead_ids) == 1
    lead = get_lead(rt, out.lead_ids[0])
    assert lead is not None
    data = lead.to_json_dict()
    assert data["source"] == "mail" and data["channel"] == "email"
    assert data["contact"]["name"] == "Анна Смирнова"
    assert data["contact"]["phones"] == ["+79165551234"]
    assert data["contact"]["emails"] == ["anna.smirnova@example.org"]
    assert data["utm"]["source"] == "yandex" and data["utm"]["campaign"] == "spring"
    assert data["click_ids"]["yclid"] == "7031337"
    assert data["fields"]["subject"] == "Заявка на курс аналитика"
    [row] = inbound(rt)  # the raw message is the stored request, as for a webhook
    assert row.method == "POLL" and row.outcome == "lead"
    assert row.headers == {"content-type": "message/rfc822"}
    assert row.body == payload_path("imap", "yandex_lead").read_bytes()
    assert row.event_key == "id:mid:1700753391.123456@mail.example.org"
    [state] = flags(dovecot, mailbox)
    assert KEYWORD in state and "\\Seen" not in state  # read/unread stays the people's
    assert poll_status(rt, "mail")["state"] == "ok"

    again = poll_source(rt, "mail")
    assert again.error is None and again.messages == 0 and again.lead_ids == []
    assert count(rt, t.leads) == 1 and count(rt, t.inbound_events) == 1


def test_a_crash_between_commit_and_ack_gives_no_second_lead(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead")
    rt = make_hub()
    src = rt.source("mail")
    assert isinstance(src, ImapSource)
    taken = src.poll(50, MAX)
    [first] = ingest_polled(rt, src, taken)  # committed ...
    src.finish_poll()  # ... and the process dies before ack
    assert KEYWORD not in flags(dovecot, mailbox)[0]

    out = poll_source(rt, "mail")
    assert out.error is None and out.messages == 1 and out.retries == 1 and out.lead_ids == []
    assert count(rt, t.leads) == 1
    assert [r.outcome for r in inbound(rt)] == ["lead", "retry"]
    assert KEYWORD in flags(dovecot, mailbox)[0]
    assert first.lead_ids and not first.retry


def test_a_restarted_hub_takes_nothing_twice(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead")
    rt = make_hub()
    assert len(poll_source(rt, "mail").lead_ids) == 1
    deliver(dovecot, mailbox, "site_form_no_message_id")  # known by UIDVALIDITY + UID
    src = rt.source("mail")
    assert isinstance(src, ImapSource)
    pending = src.poll(50, MAX)
    assert [m.event_id.split(":")[0] for m in pending] == ["uid"]
    ingest_polled(rt, src, pending)  # committed, then killed before ack
    rt.close()

    rt2 = make_hub()  # a new process over the same store and mailbox
    out = poll_source(rt2, "mail")
    assert out.error is None and out.retries == 1 and out.lead_ids == []
    assert count(rt2, t.leads) == 2
    assert all(KEYWORD in f for f in flags(dovecot, mailbox))
    assert poll_source(rt2, "mail").messages == 0


def test_auto_replies_and_bounces_are_stored_but_not_leads(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "vacation_auto_reply")
    deliver(dovecot, mailbox, "bounce_dsn")
    rt = make_hub()
    out = poll_source(rt, "mail")
    assert out.error is None and out.messages == 2 and out.lead_ids == []
    rows = inbound(rt)
    assert [r.outcome for r in rows] == ["non_lead", "non_lead"]
    assert all("auto-submitted: auto-replied" in (r.note or "") for r in rows)  # RFC 3834
    assert count(rt, t.leads) == 0 and count(rt, t.quarantine) == 0
    assert all(KEYWORD in f for f in flags(dovecot, mailbox))  # taken: not fetched again


def test_a_refused_login_is_an_error_state_with_backoff_not_a_crash_loop(
        make_hub: HubFactory, mailbox: Mailbox, caplog: pytest.LogCaptureFixture) -> None:
    # a server of its own: Dovecot delays every login from an address after a failed one
    # (anvil's auth penalty), which would slow the tests after this one
    own = Dovecot().start()
    try:
        deliver(own, (mailbox[0], own.password), "yandex_lead")
        rt = make_hub(password="wrong-password", port=own.port)
        with caplog.at_level(logging.ERROR, logger="leadhub.poll"):
            first = poll_source(rt, "mail")
            second = poll_source(rt, "mail")
    finally:
        own.stop()
    for out in (first, second):
        assert out.lead_ids == [] and out.error is not None
        assert f"login to 127.0.0.1:{own.port} refused" in out.error
        assert "AUTHENTICATIONFAILED" in out.error
    status = poll_status(rt, "mail")
    assert status["state"] == "error" and status["failures"] == 2
    assert "refused" in status["error"] and "last_ok_at" not in status
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2 and "2 in a row; next try in 20 s" in logged[1]
    assert not any("wrong-password" in m or mailbox[0] in m for m in logged)

    # the scheduler waits longer after each failure (5 s interval: 20 s after two)
    now = [1000.0]
    schedule = PollSchedule(rt, clock=lambda: now[0])
    assert schedule.tick() == ["mail"]
    rt.redis.delete(f"leadhub:wake:{POLL_QUEUE}:mail")
    now[0] += 19
    assert schedule.tick() == []
    now[0] += 1
    assert schedule.tick() == ["mail"]
    assert next_delay(60, 0) == 60 and next_delay(60, 3) == 480 and next_delay(60, 9) == 900


def test_mark_seen_marks_read_and_skips_what_a_person_read(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead", flags="(\\Seen)")  # opened by a person first
    deliver(dovecot, mailbox, "site_form_no_message_id")
    rt = make_hub(mark="seen")
    out = poll_source(rt, "mail")
    assert out.error is None and len(out.lead_ids) == 1
    lead = get_lead(rt, out.lead_ids[0])
    assert lead is not None and lead.contact.emails == ["oleg.k@example.net"]
    assert lead.utm.source == "vk"
    assert all("\\Seen" in f and KEYWORD not in f for f in flags(dovecot, mailbox))
    assert poll_source(rt, "mail").messages == 0


def test_mark_move_reads_a_russian_folder_and_moves_what_it_took(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead", folder="Заявки")
    deliver(dovecot, mailbox, "vacation_auto_reply", folder="Заявки")
    rt = make_hub(folder="Заявки", mark="move", move_to="Заявки.Обработано")
    out = poll_source(rt, "mail")
    assert out.error is None and out.messages == 2 and len(out.lead_ids) == 1
    assert flags(dovecot, mailbox, "Заявки") == []
    assert len(flags(dovecot, mailbox, "Заявки.Обработано")) == 2
    assert poll_source(rt, "mail").messages == 0


def test_since_leaves_older_mail_alone(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead", when=datetime(2024, 3, 1, tzinfo=UTC))
    deliver(dovecot, mailbox, "site_form_no_message_id")
    rt = make_hub(since="2025-01-01")
    out = poll_source(rt, "mail")
    assert out.messages == 1 and len(out.lead_ids) == 1
    assert KEYWORD not in flags(dovecot, mailbox)[0]


def test_imaps_with_certificate_checks(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    deliver(dovecot, mailbox, "yandex_lead")
    rt = make_hub(ssl=True, port=dovecot.ssl_port)
    refused = poll_source(rt, "mail")  # a self-signed certificate nobody trusts
    assert refused.error is not None and "cannot connect" in refused.error
    assert "CERTIFICATE_VERIFY_FAILED" in refused.error
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))  # now the system trusts it
    out = poll_source(rt, "mail")
    assert out.error is None and len(out.lead_ids) == 1


def test_scheduler_wakes_the_worker_that_polls_routes_and_delivers(
        make_hub: HubFactory, dovecot: Dovecot, mailbox: Mailbox) -> None:
    deliver(dovecot, mailbox, "yandex_lead")
    rt = make_hub()
    assert POLL_QUEUE in queue_names(rt.config)
    assert PollSchedule(rt).tick() == ["mail"]
    set_current(rt)
    try:
        run_worker(rt.redis_url, rt.config, burst=True)
    finally:
        set_current(None)
    lines = (rt.data_dir / "leads.jsonl").read_text(encoding="utf-8").splitlines()
    [delivered] = [json.loads(line) for line in lines]
    assert delivered["source"] == "mail" and delivered["contact"]["phones"] == ["+79165551234"]
    assert KEYWORD in flags(dovecot, mailbox)[0]


def test_a_polling_source_takes_no_webhooks(make_hub: HubFactory) -> None:
    rt = make_hub()
    with AppServer(create_app(rt)) as srv:
        r = httpx.post(f"{srv.base_url}/hooks/mail", content=b"From: x@y.z\r\n\r\nhi", timeout=10)
    assert r.status_code == 405
    assert count(rt, t.inbound_events) == 0
