"""Mailgun signs only ``timestamp + token``: a genuine signature block pasted onto another
message is a replay (401, nothing stored); Mailgun's own retry of the same post is the
same lead, never an error it would retry for hours."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis
from sqlalchemy import func, select

from hub.connectors import Nonce
from hub.engine.nonces import nonce_key, remember
from hub.runtime import Runtime
from hub.store import tables as t
from hub.testing.cluster import free_port, running_app

ADMIN = {"Authorization": "Bearer adm"}
KEY = "mailgun-signing-key-for-replays"
CONFIG = f"""
[hub]
admin_token = "adm"
default_destinations = ["jsonl"]

[destinations.jsonl]
plugin = "file"

[sources.mg]
plugin = "mailgun"
signing_key = "{KEY}"
"""


def signature_block(token: str | None = None) -> dict[str, str]:
    timestamp, token = str(int(time.time())), token or uuid.uuid4().hex + "x" * 18
    sig = hmac.new(KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": sig}


def message(sender: str, text: str) -> dict[str, str]:
    return {"recipient": "sales@mg.example.ru", "from": sender, "subject": "Заявка",
            "body-plain": text, "Message-Id": f"<{uuid.uuid4().hex}@mail.example>"}


@pytest.fixture
def hub(tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    path = tmp_path / "plugins.toml"
    path.write_text(CONFIG, encoding="utf-8")
    with running_app(path, data_dir=tmp_path / "data", redis_url=redis_url) as running:
        yield running


def stored(rt: Runtime) -> int:
    with rt.reader.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.inbound_events)).scalar_one())


def post(client: httpx.Client, fields: dict[str, str]) -> httpx.Response:
    return client.post("/hooks/mg", content=urlencode(fields).encode(),
                       headers={"content-type": "application/x-www-form-urlencoded"})


def test_a_signature_reused_with_another_message_is_refused(hub: tuple[Runtime, httpx.Client]) -> None:
    rt, client = hub
    block = signature_block()
    fields = {**message("Ivan <ivan@example.ru>", "Позвоните: 8 916 111-22-38"), **block}
    first = post(client, fields)
    assert first.status_code == 200, first.text

    forged = post(client, {**message("Eve <eve@example.org>", "Купите: +7 999 000-00-00"), **block})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
    assert stored(rt) == 1

    # Mailgun's own retry resends the original block with the same fields: the same lead,
    # also as multipart with another boundary (never an error it would retry for 8 hours)
    again = post(client, fields)
    multipart = client.post("/hooks/mg", files={k: (None, v) for k, v in fields.items()})
    assert again.status_code == multipart.status_code == 200, multipart.text
    assert again.json()["id"] == multipart.json()["id"] == first.json()["id"]
    leads = client.get("/api/leads", headers=ADMIN).json()["items"]
    assert [lead["contact"]["emails"] for lead in leads] == [["ivan@example.ru"]]
    assert client.get("/api/ledger", headers=ADMIN).json()["totals"]["events"] == 1

    # a fresh signature block makes the second message a lead of its own, as it should
    other = post(client, {**message("Eve <eve@example.org>", "+7 999 000-00-00"), **signature_block()})
    assert other.status_code == 200 and other.json()["id"] != first.json()["id"]


def test_remember_keeps_nonce_and_content_for_the_signatures_lifetime(redis_url: str) -> None:
    client: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    nonce = Nonce("tok-1", ttl_s=600.5, content="a")
    assert remember(client, "mg", nonce)
    assert remember(client, "mg", nonce)  # the provider's retry
    assert not remember(client, "mg", Nonce("tok-1", 600.5, "b"))  # a replay
    assert remember(client, "other_source", Nonce("tok-1", 600.5, "b"))  # per source
    assert 595 <= client.ttl(nonce_key("mg", "tok-1")) <= 601
    client.close()


def test_without_redis_a_nonce_cannot_be_checked_and_nothing_is_stored(tmp_path: Path) -> None:
    """Redis down: 503 (Mailgun retries later), never a lead on an unchecked token."""
    path = tmp_path / "plugins.toml"
    path.write_text(CONFIG, encoding="utf-8")
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with running_app(path, data_dir=tmp_path / "data", redis_url=nowhere) as (rt, client):
        r = post(client, {**message("Ivan <ivan@example.ru>", "8 916 111-22-38"), **signature_block()})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert stored(rt) == 0
