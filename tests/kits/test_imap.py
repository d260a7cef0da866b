"""The imap source keeps what of the source contract applies to a polled source: empty
secrets refused, payloads parse as expected. It takes no webhooks, so the refusal, answer
and repeat checks skip (a repeated poll is one event by its ``event_id``:
tests/plugins/test_imap.py runs that against a real mail server)."""

from typing import Any, ClassVar

from hub.testing.kits import SourceKit
from plugins.imap import ImapSource
from tests.payload_loader import PAYLOADS


class TestImapKit(SourceKit):
    connector = ImapSource
    settings: ClassVar[dict[str, Any]] = {"host": "127.0.0.1", "username": "leads@example.ru",
                                "password": "kit-password"}
    payloads = PAYLOADS / "imap"
