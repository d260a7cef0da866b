"""The HTTP edge over raw sockets against ``leadhub api`` (issue 8, finding 11): a body
shorter than its Content-Length gets 408 once ``[hub] body_timeout_s`` has passed, and
nothing is stored; an oversized body from a client that is still writing gets the 413,
not a connection reset (``hub/api/body_limits.py``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from hub.testing.cluster import HubCluster
from tests.conftest import ClusterFactory, ConfigWriter

LIMIT = 65536
FORM = "application/x-www-form-urlencoded"
HANG_GUARD_S = 20  # only so that a hub that never answers fails the test instead of hanging it


@pytest.fixture
def hub(write_config: ConfigWriter, make_cluster: ClusterFactory) -> Iterator[HubCluster]:
    config = write_config(f"""
        [hub]
        max_body_bytes = {LIMIT}
        body_timeout_s = 1

        [sources.site_form]
        plugin = "webform"
    """)
    cluster = make_cluster(config)
    cluster.start_redis()
    cluster.start_api()
    yield cluster


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on ``sock`` (the hub closes after it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def error_code(body: bytes) -> Any:
    return json.loads(body)["error"]["code"]


def short_body(hub: HubCluster, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", hub.port), timeout=HANG_GUARD_S) as sock:
        sock.sendall(head(path, {**headers, "Content-Type": FORM, "Content-Length": "100"}))
        sock.sendall(b"phone=+7916")  # 11 of the 100 bytes announced, then nothing
        return answer(sock)


def test_a_webhook_body_shorter_than_its_length_gets_408_and_nothing_is_stored(hub: HubCluster) -> None:
    status, headers, body = short_body(hub, "/hooks/site_form", {})
    assert status == 408 and error_code(body) == "request_timeout"
    assert headers["connection"] == "close"
    assert hub.leads() == []
    assert hub.admin("GET", "/api/quarantine").json()["items"] == []
    # the hub still serves the next request
    r = hub.client.post("/hooks/site_form", data={"phone": "+79161234567"})
    assert r.status_code == 200, r.text


def test_an_admin_body_shorter_than_its_length_gets_408(hub: HubCluster) -> None:
    """The sign-in form needs no token: before, any client could hold it open for ever."""
    status, _, body = short_body(hub, "/admin/login", {})
    assert status == 408 and error_code(body) == "request_timeout"


def test_an_oversized_admin_body_gets_413(hub: HubCluster) -> None:
    r = hub.client.post("/admin/login", content=b"token=" + b"a" * (2 * LIMIT),
                        headers={"content-type": FORM})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def write_oversized(port: int, chunked: bool) -> int | str:
    """Send three times the limit in 8 KiB writes, announcing it (Content-Length) or not
    (chunked), asking the hub to close after its answer; then read the answer. Returns its
    status, or the error that replaced it."""
    total, piece = 3 * LIMIT, b"a" * 8192
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(total)}
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD_S) as sock:
            sock.sendall(head("/hooks/site_form", {"Content-Type": FORM, "Connection": "close",
                                                   **framing}))
            for _ in range(total // len(piece)):
                sock.sendall(b"2000\r\n" + piece + b"\r\n" if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
            status, headers, body = answer(sock)
            assert error_code(body) == "payload_too_large" and headers["connection"] == "close"
            return status
    except OSError as exc:  # ECONNRESET, EPIPE: the answer was lost
        return type(exc).__name__


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_still_writing_an_oversized_body_reads_the_413(hub: HubCluster, chunked: bool) -> None:
    outcomes = [write_oversized(hub.port, chunked) for _ in range(20)]
    assert outcomes == [413] * 20
    assert hub.leads() == []
