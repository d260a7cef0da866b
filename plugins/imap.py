"""``imap``: a mailbox the hub polls (stdlib ``imaplib``); each new message is a lead.

One poll: log in, ``SELECT`` the folder, ``UID SEARCH`` what is not taken yet (see
``mark``), fetch a batch with ``BODY.PEEK[]`` (which leaves ``\\Seen`` alone), hand it to
the core, which commits it, then mark the batch taken; again until nothing is left.

How a taken message is marked (``mark``):

* ``keyword`` (default): the IMAP keyword ``$LeadHub`` is set; people reading the
  mailbox see nothing change (read/unread is theirs). The server must keep keywords in
  the folder (``PERMANENTFLAGS`` with ``\\*``: Dovecot, Gmail, Yandex, Mail.ru do;
  Exchange/Outlook.com do not): else the poll fails with a clear error.
* ``seen``: the message is marked read; messages a person has already opened are NOT
  taken (use it only for a mailbox nobody reads by hand).
* ``move``: the message is moved to ``move_to`` (created when missing); ``MOVE`` where
  the server has it, else ``COPY`` + ``\\Deleted`` + expunge.

A message's event id is its Message-ID (so the same letter fetched again — after a crash
before it was marked, after a restart, or moved back by a person — is never a second
lead); a message without one is known by the folder's UIDVALIDITY and its UID.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import imaplib
import re
import ssl
from collections.abc import Callable
from datetime import date
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from hub.sdk import (
    Capability,
    Connector,
    ConnectorContext,
    InboundRequest,
    ParsedEvent,
    ParseError,
    PolledMessage,
    PollError,
    PollingSource,
    PollingSourceConfig,
    clean_message_id,
    event_from_parts,
    hookimpl,
    parse_message,
)

KEYWORD = "$LeadHub"
CONTENT_TYPE = "message/rfc822"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UID = re.compile(rb"\bUID\s+(\d+)", re.IGNORECASE)


class ImapConfig(PollingSourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "imap"``."""

    host: str = Field(min_length=1, description="The IMAP server, e.g. imap.yandex.ru.")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="The server's port; default 993 with ssl, else 143.")
    username: str = Field(min_length=1, description="The mailbox login (often the address).")
    password: SecretStr = Field(description="The mailbox password (an app password where the "
                                "provider requires one: Gmail, Yandex, Mail.ru).")
    folder: str = Field(default="INBOX", min_length=1,
                        description="The folder to read (any language; e.g. \"Заявки\").")
    ssl: bool = Field(default=True, description="Implicit TLS (IMAPS, port 993). With false the "
                      "connection is plain unless starttls is set.")
    starttls: bool = Field(default=False,
                           description="With ssl = false: upgrade to TLS with STARTTLS before login.")
    mark: Literal["keyword", "seen", "move"] = Field(
        default="keyword",
        description="How a taken message is marked: keyword ($LeadHub keyword; read state "
        "untouched), seen (marked read; read messages are skipped), move (to move_to).",
    )
    move_to: str | None = Field(default=None,
                                description="With mark = \"move\": the folder taken messages go to.")
    since: date | None = Field(
        default=None,
        description="Take only messages that arrived on or after this date (YYYY-MM-DD), so "
        "a mailbox with years of history does not flood the CRM on the first poll.",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Network timeout in seconds.")

    @model_validator(mode="after")
    def _move_needs_folder(self) -> ImapConfig:
        if self.mark == "move" and not (self.move_to or "").strip():
            raise ValueError('mark = "move" needs move_to (the folder taken messages go to)')
        if self.mark == "move" and self.move_to == self.folder:
            raise ValueError("move_to must differ from folder")
        return self


class ImapSource(PollingSource[ImapConfig]):
    """A mailbox polled over IMAP4rev1; see the module docstring for marks and ids."""

    Config = ImapConfig
    description = "A mailbox read over IMAP: each new message is a lead; taken ones are marked."
    capabilities = frozenset({Capability.POLLING})

    def __init__(self, config: ImapConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._conn: imaplib.IMAP4 | None = None
        self._uidvalidity = "0"
        self._capabilities: frozenset[str] = frozenset()

    # ------------------------------------------------------------ pure part

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        """The message as a lead, or a non-lead event for auto-replies and bounces."""
        if request.content_type != CONTENT_TYPE:
            raise ParseError(f"expected {CONTENT_TYPE}, got {request.content_type or 'nothing'}")
        parts = parse_message(request.body)
        return [event_from_parts(parts, default_region=self.context.default_region)]

    # ------------------------------------------------------------ polling

    @property
    def where(self) -> str:
        cfg = self.config
        return f"{cfg.host}:{cfg.port or (993 if cfg.ssl else 143)}"

    def poll(self, limit: int, max_bytes: int) -> list[PolledMessage]:
        criteria = ["UNDELETED"]
        if self.config.mark == "keyword":
            criteria += ["UNKEYWORD", KEYWORD]
        elif self.config.mark == "seen":
            criteria.append("UNSEEN")
        if self.config.since is not None:
            day = self.config.since
            criteria += ["SINCE", f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"]
        found = self._uid("searching the folder", "SEARCH", *criteria)
        uids = sorted({int(u) for chunk in found if chunk for u in chunk.split()})[:limit]
        if not uids:
            return []
        fetched = self._uid("fetching messages", "FETCH", ",".join(map(str, uids)),
                            f"(UID BODY.PEEK[]<0.{max_bytes}>)")
        bodies = _fetched_bodies(fetched)
        return [
            PolledMessage(self.event_id(bodies[uid], uid), bodies[uid], CONTENT_TYPE, str(uid))
            for uid in uids if uid in bodies  # a message expunged meanwhile is simply gone
        ]

    def ack(self, messages: list[PolledMessage]) -> None:
        if not messages:
            return
        uids = ",".join(m.ref for m in messages)
        mark = self.config.mark
        if mark in ("keyword", "seen"):
            flag = KEYWORD if mark == "keyword" else "\\Seen"
            self._uid("marking messages", "STORE", uids, "+FLAGS.SILENT", f"({flag})")
            return
        target = _mailbox_name(self.config.move_to or "")
        with contextlib.suppress(imaplib.IMAP4.error):
            self._session().create(target)  # NO [ALREADYEXISTS] is fine
        if "MOVE" in self._capabilities:
            self._uid("moving messages", "MOVE", uids, target)
            return
        self._uid("copying messages", "COPY", uids, target)
        self._uid("deleting moved messages", "STORE", uids, "+FLAGS.SILENT", "(\\Deleted)")
        if "UIDPLUS" in self._capabilities:
            self._uid("expunging moved messages", "EXPUNGE", uids)
        else:  # plain EXPUNGE also removes what a person marked deleted: the folder's rule
            self._ok(self._session().expunge(), "expunging moved messages")

    def finish_poll(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.logout()

    def close(self) -> None:
        self.finish_poll()

    def event_id(self, body: bytes, uid: int) -> str:
        """The Message-ID (hashed when long), else the folder's UIDVALIDITY and the UID."""
        try:
            headers = BytesHeaderParser(policy=compat32).parsebytes(body)
            message_id = clean_message_id(str(headers.get("Message-ID") or ""))
        except Exception:  # a header the parser chokes on: fall back to the UID
            message_id = None
        if message_id and message_id.isprintable():
            if len(message_id) <= 150:
                return f"mid:{message_id}"
            return "mid-sha256:" + hashlib.sha256(message_id.encode()).hexdigest()
        folder = hashlib.sha256(self.config.folder.encode()).hexdigest()[:12]
        return f"uid:{folder}:{self._uidvalidity}:{uid}"

    # ------------------------------------------------------------ IMAP plumbing

    def _session(self) -> imaplib.IMAP4:
        if self._conn is None:
            conn = self._connect()
            try:
                self._open(conn)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.logout()
                raise
            self._conn = conn
        return self._conn

    def _connect(self) -> imaplib.IMAP4:
        cfg = self.config
        port = cfg.port or (993 if cfg.ssl else 143)
        try:
            if cfg.ssl:
                return imaplib.IMAP4_SSL(cfg.host, port, ssl_context=ssl.create_default_context(),
                                         timeout=cfg.timeout_s)
            conn = imaplib.IMAP4(cfg.host, port, timeout=cfg.timeout_s)
            if cfg.starttls:
                conn.starttls(ssl.create_default_context())
            return conn
        except (OSError, imaplib.IMAP4.error) as exc:
            raise PollError(f"cannot connect to {self.where}: {_text(exc)}") from None

    def _open(self, conn: imaplib.IMAP4) -> None:
        try:
            conn.login(self.config.username, self.config.password.get_secret_value())
        except imaplib.IMAP4.error as exc:
            # the username is the mailbox address: it stays out of logs like any address
            raise PollError(f"login to {self.where} refused: {_text(exc)}; check username and "
                            "password (an app password where the provider requires one)") from None
        except OSError as exc:
            raise PollError(f"connection to {self.where} lost at login: {_text(exc)}") from None
        typ, caps = conn.capability()
        self._capabilities = frozenset(
            c.upper() for chunk in caps if isinstance(chunk, bytes) for c in chunk.decode().split()
        ) if typ == "OK" else frozenset()
        folder = self.config.folder
        typ, data = conn.select(_mailbox_name(folder))
        if typ != "OK":
            raise PollError(f"folder {folder!r} cannot be opened on {self.where}: "
                            f"{_text(data)}")
        _, validity = conn.response("UIDVALIDITY")
        self._uidvalidity = _first(validity) or "0"
        _, permanent = conn.response("PERMANENTFLAGS")
        flags = (_first(permanent) or "").lower()
        if self.config.mark == "keyword" and flags and "\\*" not in flags and (
                KEYWORD.lower() not in flags):
            raise PollError(
                f"the server does not keep keywords in folder {folder!r} (PERMANENTFLAGS "
                f"{_first(permanent)}): set mark = \"seen\" or mark = \"move\" for this source"
            )

    def _uid(self, doing: str, command: str, *args: str) -> list[Any]:
        """``UID <command>`` in the open session; any failure is a ``PollError``."""
        conn = self._session()
        try:
            answer = conn.uid(command, *args)
        except (imaplib.IMAP4.error, OSError) as exc:
            self._conn = None  # the connection is in an unknown state: start afresh
            with contextlib.suppress(Exception):
                conn.shutdown()
            raise PollError(f"{doing} in {self.config.folder!r} on {self.where} failed: "
                            f"{_text(exc)}") from None
        return self._ok(answer, doing)

    def _ok(self, answer: tuple[str, list[Any]], doing: str) -> list[Any]:
        typ, data = answer
        if typ != "OK":
            raise PollError(f"{doing} in {self.config.folder!r} on {self.where} failed: "
                            f"{_text(data)}")
        return data


def _fetched_bodies(data: list[Any]) -> dict[int, bytes]:
    """UID → body from ``UID FETCH`` data; the UID may come before or after the literal."""
    bodies: dict[int, bytes] = {}
    for i, item in enumerate(data):
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        head, body = item[0], item[1]
        match = _UID.search(head)
        if match is None and i + 1 < len(data) and isinstance(data[i + 1], bytes):
            match = _UID.search(data[i + 1])
        if match is not None and isinstance(body, bytes):
            bodies[int(match[1])] = body
    return bodies


def _mailbox_name(name: str) -> str:
    """A folder name as IMAP wants it: modified UTF-7 (RFC 3501 5.1.3), quoted."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    encoded = "".join(out)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _first(values: list[Any] | None) -> str | None:
    if not values or values[0] is None:
        return None
    value = values[0]
    return (value.decode(errors="replace") if isinstance(value, bytes) else str(value)).strip()


def _text(value: object) -> str:
    """A server's answer (or an exception) as one short line."""
    if isinstance(value, BaseException):  # imaplib's errors carry the server's bytes
        value = value.args[0] if value.args and isinstance(value.args[0], bytes) else str(value)
    if isinstance(value, list):
        value = b" ".join(v for v in value if isinstance(v, bytes))
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    text = " ".join(text.split())
    return text[:300] or "no answer"


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(ImapSource)
