"""``hub.sdk.http`` against a real loopback server: every answer and transport failure maps
to the ``hub.errors`` exception the engine acts on, ``Retry-After`` in both forms, secrets
never in an exception's text or the log, and each request holds a slot of the real
limiter (on Redis) from when it leaves until it is answered."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr, ValidationError

from hub.connectors import ConnectorContext
from hub.engine.limiter import RateLimiter
from hub.errors import DeliveryError, PermanentError, RateLimited, RetryableError
from hub.sdk.http import (
    ANY_STATUS,
    ConnectorClient,
    HttpConnectorConfig,
    api_key_header,
    api_key_query,
    basic_auth,
    bearer_token,
    error_for,
    parse_retry_after,
    url_secrets,
)
from hub.testing import FakeServer, RecordedRequest, Response, serving

API_KEY = "sk_live_api_key_4242"
QUERY_TOKEN = "EAAG-query-token-7777"
PASSWORD = "hunter2-basic-pw"
PATH_TOKEN = "123456:bot-path-token"
RUNTIME_TOKEN = "oauth-runtime-token-9999"
ALL_SECRETS = (API_KEY, QUERY_TOKEN, PASSWORD, PATH_TOKEN, RUNTIME_TOKEN)


class CrmConfig(HttpConnectorConfig):
    api_key: SecretStr
    query_token: SecretStr
    password: SecretStr
    bot_token: SecretStr


class Echo(FakeServer):
    """Answers ``/status/{code}`` with that status; the body repeats everything the request
    carried (as careless APIs do), so a secret in it would reach the error text."""

    def __init__(self) -> None:
        super().__init__()
        self.retry_after: str | None = None
        self.on_arrival: Callable[[], None] = lambda: None
        for method in ("GET", "POST"):
            self.add_route(method, "/status/{code}", self._status)
            self.add_route(method, "/bot{token}/send", self._status)

    def _status(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        self.on_arrival()
        status = int(params.get("code", "404"))
        headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        echoed = f"you sent {request.path}?{request.query} with {request.headers}"
        return Response(status, echoed, headers=headers)


@pytest.fixture
def api() -> Iterator[Echo]:
    yield from serving(Echo())


def config(base_url: str, **kw: object) -> CrmConfig:
    values: dict[str, object] = {
        "plugin": "crm", "base_url": base_url, "api_key": API_KEY, "query_token": QUERY_TOKEN,
        "password": PASSWORD, "bot_token": PATH_TOKEN, **kw}
    return CrmConfig.model_validate(values)


def client(base_url: str, *, slot: Callable[[], AbstractContextManager[None]] | None = None,
           tmp_path: Path = Path("."), **kw: object) -> ConnectorClient:
    cfg = config(base_url, timeout_s=kw.pop("timeout_s", 5))
    context = (ConnectorContext("crm", tmp_path) if slot is None
               else ConnectorContext("crm", tmp_path, request_slot=slot))
    return ConnectorClient(cfg, context, **kw)  # type: ignore[arg-type]


def failure(call: Callable[[], object]) -> DeliveryError:
    with pytest.raises(DeliveryError) as raised:
        call()
    return raised.value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


# ---------------------------------------------------------------- Retry-After


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 3 ", now) == 3.0
    assert parse_retry_after("Sun, 01 Mar 2026 12:02:00 GMT", now) == 120.0  # IMF-fixdate
    assert parse_retry_after("Sunday, 01-Mar-26 12:01:00 GMT", now) == 60.0  # RFC 850
    assert parse_retry_after("Sun Mar  1 12:00:30 2026", now) == 30.0  # asctime
    assert parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("-5", now) == 0.0
    for unreadable in (None, "", "soon", "nan", "inf", "Sun, 99 Mar 2026"):
        assert parse_retry_after(unreadable, now) is None


def test_429_is_rate_limited_with_either_form_of_retry_after(api: Echo) -> None:
    c = client(api.base_url)
    api.retry_after = "7"
    limited = failure(lambda: c.post("/status/429", json={}))
    assert isinstance(limited, RateLimited) and limited.retry_after == 7.0
    assert not limited.uncertain
    api.retry_after = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    limited = failure(lambda: c.post("/status/429", json={}))
    assert isinstance(limited, RateLimited) and limited.retry_after is not None
    assert 3000 < limited.retry_after <= 3600  # the date form, not "unreadable"
    api.retry_after = None
    limited = failure(lambda: c.get("/status/429"))
    assert isinstance(limited, RateLimited) and limited.retry_after is None
    c.close()


# ---------------------------------------------------------------- statuses


def test_statuses_map_to_retry_or_give_up(api: Echo) -> None:
    c = client(api.base_url)
    assert c.post("/status/201", json={"a": 1}).status_code == 201
    for status in (500, 502, 503):  # the server may have acted before failing
        err = failure(lambda s=status: c.post(f"/status/{s}", json={}))  # type: ignore[misc]
        assert type(err) is RetryableError and err.uncertain, status
        assert f"HTTP {status}" in str(err) and "POST /status/" in str(err)
    read = failure(lambda: c.get("/status/503"))  # a GET that arrived changed nothing
    assert type(read) is RetryableError and not read.uncertain
    timeout = failure(lambda: c.post("/status/408", json={}))
    assert type(timeout) is RetryableError and not timeout.uncertain
    for status in (400, 401, 403, 404, 409, 422, 301):
        err = failure(lambda s=status: c.post(f"/status/{s}", json={}))  # type: ignore[misc]
        assert type(err) is PermanentError, status
    c.close()


def test_a_plugin_special_cases_statuses(api: Echo) -> None:
    """409 "already exists" returned to the plugin (``accept``), or mapped by its hook."""
    c = client(api.base_url)
    assert c.post("/status/409", json={}, accept={409}).status_code == 409
    assert c.post("/status/502", json={}, accept=ANY_STATUS).status_code == 502

    def busy_means_retry(response: httpx.Response) -> DeliveryError | None:
        if response.status_code == 423:
            return RetryableError(f"locked, try later (bearer {API_KEY})", uncertain=False)
        return None

    hooked = client(api.base_url, errors=busy_means_retry)
    locked = failure(lambda: hooked.post("/status/423", json={}))
    assert type(locked) is RetryableError and "locked" in str(locked)
    assert API_KEY not in str(locked)  # the hook's own text is masked too
    assert type(failure(lambda: hooked.post("/status/400", json={}))) is PermanentError
    c.close()
    hooked.close()


def test_error_for_is_pure() -> None:
    request = httpx.Request("POST", "https://api.example.com/leads?access_token=" + QUERY_TOKEN,
                            headers={"Authorization": f"Bearer {API_KEY}"})
    answer = httpx.Response(503, text=f"upstream rejected token {QUERY_TOKEN} / {API_KEY}",
                            request=request)
    err = error_for(answer)
    assert type(err) is RetryableError and err.uncertain
    assert QUERY_TOKEN not in str(err) and API_KEY not in str(err)
    assert error_for(httpx.Response(200, request=request)) is None
    limited = error_for(httpx.Response(429, headers={"Retry-After": "2"}, request=request))
    assert isinstance(limited, RateLimited) and limited.retry_after == 2.0


# ---------------------------------------------------------------- no answer


def test_a_timeout_after_the_request_was_sent_is_uncertain(api: Echo) -> None:
    c = client(api.base_url, timeout_s=0.3)
    with api.faults(ratio=1.0, kinds=("timeout",), after_ratio=0.0, hang_s=2.0):
        err = failure(lambda: c.post("/status/201", json={"a": 1}))
    assert type(err) is RetryableError and err.uncertain
    assert isinstance(err.__cause__, httpx.ReadTimeout)
    assert len(api.requests_to("POST", "/status/201")) == 1  # it did arrive
    c.close()


def test_a_broken_connection_after_sending_is_uncertain(api: Echo) -> None:
    c = client(api.base_url)
    with api.faults(ratio=1.0, kinds=("reset",), after_ratio=1.0):
        err = failure(lambda: c.post("/status/201", json={"a": 1}))
    assert type(err) is RetryableError and err.uncertain
    c.close()


def test_a_refused_connection_is_certain(tmp_path: Path) -> None:
    c = client(f"http://127.0.0.1:{free_port()}", tmp_path=tmp_path)
    err = failure(lambda: c.post("/status/201", json={}))
    assert type(err) is RetryableError and not err.uncertain
    assert "not sent" in str(err)
    c.close()


# ---------------------------------------------------------------- secrets


def test_secrets_never_appear_in_errors_or_logs(api: Echo, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")
    cfg = config(api.base_url)
    ctx = ConnectorContext("crm", Path("."))
    clients = [
        ConnectorClient(cfg, ctx, auth=bearer_token(cfg.api_key)),
        ConnectorClient(cfg, ctx, auth=api_key_header("X-Api-Key", cfg.api_key)),
        ConnectorClient(cfg, ctx, auth=api_key_query("access_token", cfg.query_token)),
        ConnectorClient(cfg, ctx, auth=basic_auth("admin", cfg.password)),
    ]
    errors: list[BaseException] = []
    for c in clients:
        for status in (400, 401, 500):
            errors.append(failure(lambda c=c, s=status: c.post(f"/status/{s}", json={})))  # type: ignore[misc]
    plain = clients[0]
    # a secret in the path (a bot token), one obtained at run time, one in a query
    errors.append(failure(lambda: plain.get(f"/bot{PATH_TOKEN}/send")))
    errors.append(failure(lambda: plain.post(
        "/status/403", headers={"Authorization": f"Bearer {RUNTIME_TOKEN}"})))
    errors.append(failure(lambda: plain.get("/status/500", params={"token": RUNTIME_TOKEN})))
    with api.faults(ratio=1.0, kinds=("reset",), after_ratio=0.0):
        errors.append(failure(lambda: clients[2].post("/status/201", json={})))
    sent = [r for r in api.requests if r.path.startswith(("/status/", "/bot"))]
    assert any(API_KEY in r.headers.get("authorization", "") for r in sent)  # they were sent
    assert any(r.q("access_token") == QUERY_TOKEN for r in sent)
    assert "HTTP Request" in caplog.text  # httpx logged each request (URL included)
    texts = [str(e) for e in errors] + [str(e.__cause__) for e in errors if e.__cause__]
    texts.append(caplog.text)
    encoded = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    for secret in (*ALL_SECRETS, encoded):
        assert not any(secret in text for text in texts), secret
    assert "***" in str(errors[0])  # masked, not dropped: the echo is still readable
    for c in clients:
        c.close()


def test_the_config_base_checks_its_url() -> None:
    with pytest.raises(ValidationError, match="https://"):
        config("ftp://example.com")
    assert config("https://example.com/api/").base_url == "https://example.com/api"
    assert config("https://example.com").timeout_s == 10.0


# ---------------------------------------------------------------- the shared limiter


def test_each_request_holds_a_limiter_slot_until_answered(
    api: Echo, redis_url: str, tmp_path: Path,
) -> None:
    """The real limiter logs each request in Redis when it leaves (in flight: counted until
    its arrival bound) and lowers it to its answer time once answered."""
    conn = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(conn)
    log_key = "leadhub:rate:crm"
    seen: list[tuple[int, bool]] = []

    def arrival() -> None:
        now_s, now_us = conn.time()
        now = now_s * 1_000_000 + now_us
        scores = [score for _, score in conn.zrange(log_key, 0, -1, withscores=True)]
        seen.append((len(scores), any(score > now for score in scores)))

    api.on_arrival = arrival
    c = client(api.base_url, slot=lambda: limiter.slot("crm", 50), tmp_path=tmp_path)
    for _ in range(3):
        c.post("/status/200", json={})
    assert seen == [(1, True), (2, True), (3, True)]  # logged, and in flight while served
    now_s, now_us = conn.time()
    scores = [score for _, score in conn.zrange(log_key, 0, -1, withscores=True)]
    assert len(scores) == 3 and all(s <= now_s * 1_000_000 + now_us for s in scores)
    failure(lambda: c.post("/status/500", json={}))
    assert conn.zcard(log_key) == 4  # a failed request counts as well
    c.post("/status/200", json={}, slot=False)  # the caller holds the slot itself
    assert conn.zcard(log_key) == 4
    c.close()


def test_a_failed_limiter_sends_nothing(api: Echo, tmp_path: Path) -> None:
    dead = RateLimiter(redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1))
    c = client(api.base_url, slot=lambda: dead.slot("crm", 5), tmp_path=tmp_path)
    err = failure(lambda: c.post("/status/200", json={}))
    assert type(err) is RetryableError and not err.uncertain and "rate limiter" in str(err)
    assert api.requests == []
    c.close()


def test_url_secrets_are_the_parts_of_a_configured_url_a_key_hides_in() -> None:
    found = url_secrets("https://relay:pa55word@hooks.example.com/services/T0ABC/B0DEF/"
                        "xYz123SecretKey/in?key=query-secret&v=1")
    assert {"relay", "pa55word", "query-secret", "services", "T0ABC", "B0DEF",
            "xYz123SecretKey"} <= set(found)
    assert "in" not in found and "1" not in found  # too short to be a key
    assert url_secrets("https://example.com/") == []
    assert url_secrets("https://example.com/%D0%BA%D0%BB%D1%8E%D1%87-42") == ["ключ-42"]
