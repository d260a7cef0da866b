"""How the admin is protected (issue 8, findings 4, 5, 8 and 9), over real HTTP on
loopback with a real Redis: server-side sessions, CSRF checks on cookie writes, security
headers, the sign-in rate limit, docs and metrics behind the token, and the refusal to
listen beyond loopback with the example token."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from hub.runtime import Runtime
from hub.testing.cluster import free_port, running_app
from tests.conftest import ClusterFactory

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "admin-token-for-the-security-tests"
CONFIG = """
[hub]
admin_token = "{token}"
{extra}

[sources.site_form]
plugin = "webform"

[destinations.jsonl]
plugin = "file"
"""
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def write(directory: Path, token: str = TOKEN, extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "plugins.toml"
    path.write_text(CONFIG.format(token=token, extra=extra), encoding="utf-8")
    return path


@pytest.fixture
def hub(tmp_path: Path, redis_url: str) -> Iterator[tuple[Runtime, httpx.Client]]:
    with running_app(write(tmp_path / "a"), data_dir=tmp_path / "data", redis_url=redis_url) as hub:
        yield hub


def origin(c: httpx.Client) -> str:
    return str(c.base_url).rstrip("/")


def sign_in(c: httpx.Client, token: str = TOKEN, **headers: str) -> httpx.Response:
    return c.post("/admin/login", data={"token": token}, follow_redirects=False,
                  headers={"Origin": origin(c), **headers})


def signed_in(c: httpx.Client) -> str:
    """Sign in as a browser would; the session's CSRF token, from the admin page."""
    assert sign_in(c).status_code == 303
    page = c.get("/admin/")
    found = CSRF_META.search(page.text)
    assert found, page.text[:500]
    return found.group(1)


def session_cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"leadhub_session={session_id}"}


def site_form_enabled(rt: Runtime, c: httpx.Client) -> bool:
    return rt.enabled_overrides().get("site_form", True) and \
        c.post("/hooks/site_form", data={"phone": "+79161234567"}).status_code == 200


# ------------------------------------------------------------------ finding 4: CSRF
def test_a_cross_origin_write_with_the_session_cookie_is_refused(hub: Any) -> None:
    """A page on another port of the same host (same *site*, so SameSite=Strict sends the
    cookie) posts to the admin API: refused, the source stays enabled."""
    rt, c = hub
    assert sign_in(c).status_code == 303
    other_port = f"http://127.0.0.1:{free_port()}"
    # what the page on the other port did (issue 8, finding 4)
    r = c.post("/api/connectors/site_form/disable", headers={"Origin": other_port})
    assert r.status_code == 403, r.text
    csrf = signed_in(c)
    for headers in (
        {"Origin": other_port, "X-CSRF-Token": csrf},       # even holding the token
        {"Origin": "null", "X-CSRF-Token": csrf},
        {"Referer": f"{other_port}/evil.html", "X-CSRF-Token": csrf},
        {"X-CSRF-Token": csrf},                              # neither Origin nor Referer
        {"Origin": "http://admin.127.0.0.1.example", "X-CSRF-Token": csrf},  # a sibling name
    ):
        r = c.post("/api/connectors/site_form/disable", headers=headers)
        assert r.status_code == 403, (headers, r.text)
        assert r.json()["error"]["code"] == "cross_origin"
    assert site_form_enabled(rt, c)
    # the sign-out is a write too
    assert c.post("/admin/logout", data={"csrf_token": csrf},
                  headers={"Origin": other_port}).status_code == 403
    assert c.get("/api/connectors").status_code == 200  # still signed in


def test_a_write_from_the_hubs_own_page_with_the_csrf_token_works(hub: Any) -> None:
    rt, c = hub
    csrf = signed_in(c)
    r = c.post("/api/connectors/site_form/disable", headers={"Origin": origin(c)})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_token"
    r = c.post("/api/connectors/site_form/disable", headers={"Origin": origin(c), "X-CSRF-Token": "x" + csrf})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_token"
    assert site_form_enabled(rt, c)
    r = c.post("/api/connectors/site_form/disable", headers={"Origin": origin(c), "X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json() == {"name": "site_form", "enabled": False}
    assert rt.enabled_overrides() == {"site_form": False}
    # Referer stands in for a missing Origin
    r = c.post("/api/connectors/site_form/enable",
               headers={"Referer": f"{origin(c)}/admin/", "X-CSRF-Token": csrf})
    assert r.status_code == 200 and rt.enabled_overrides() == {"site_form": True}
    # an API client with the bearer token carries no ambient credential: no CSRF check
    api = httpx.Client(base_url=origin(c), headers={"Authorization": f"Bearer {TOKEN}"})
    with api:
        assert api.post("/api/connectors/site_form/disable",
                        headers={"Origin": "http://elsewhere.example"}).status_code == 200


# ------------------------------------------------------------------ finding 5: the session
def test_the_cookie_is_a_server_side_session_not_the_token(hub: Any, tmp_path: Path,
                                                           redis_url: str) -> None:
    _, c = hub
    r = sign_in(c)
    cookie = r.headers["set-cookie"]
    session_id = c.cookies["leadhub_session"]
    assert TOKEN not in cookie and session_id != TOKEN and len(session_id) >= 32
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low and "max-age=" in low
    assert "secure" not in low  # plain http here: a Secure cookie would never come back
    # Redis keeps only a hash of the id
    conn: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    keys = list(conn.keys("*"))
    assert keys and not [k for k in keys if session_id.encode() in k]
    for key in keys:
        with contextlib.suppress(redis.ResponseError):  # not a string
            assert session_id.encode() not in (conn.get(key) or b"")
    assert c.get("/api/leads").status_code == 200
    # another api process (same Redis, same token) knows the session
    with running_app(write(tmp_path / "b"), data_dir=tmp_path / "data", redis_url=redis_url) as (_, c2):
        assert c2.get("/api/leads", headers=session_cookie(session_id)).status_code == 200
    # a changed admin_token ends every session
    with running_app(write(tmp_path / "c", token="another-admin-token-0123456789"),
                     data_dir=tmp_path / "data", redis_url=redis_url) as (_, c3):
        assert c3.get("/api/leads", headers=session_cookie(session_id)).status_code == 401
    # signing out deletes the session: the same cookie, sent again, opens nothing
    csrf = CSRF_META.search(c.get("/admin/").text).group(1)  # type: ignore[union-attr]
    r = c.post("/admin/logout", data={"csrf_token": csrf}, headers={"Origin": origin(c)},
               follow_redirects=False)
    assert r.status_code == 303 and not c.cookies.get("leadhub_session")
    with httpx.Client(base_url=origin(c)) as fresh:
        assert fresh.get("/api/leads", headers=session_cookie(session_id)).status_code == 401
    conn.close()


def test_the_cookie_is_secure_behind_a_trusted_proxy_saying_https(hub: Any) -> None:
    """uvicorn trusts X-Forwarded-Proto from FORWARDED_ALLOW_IPS (default 127.0.0.1, where
    this client is): the request is https, so the cookie is Secure."""
    _, c = hub
    own_https = origin(c).replace("http://", "https://")
    r = sign_in(c, **{"X-Forwarded-Proto": "https", "Origin": own_https})
    assert r.status_code == 303, r.text
    assert "secure" in r.headers["set-cookie"].lower()
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_security_headers_on_the_admin_and_the_api(hub: Any) -> None:
    _, c = hub
    answers = {
        "login page": c.get("/admin/"),
        "api": c.get("/api/leads", headers={"Authorization": f"Bearer {TOKEN}"}),
        "api error": c.get("/api/leads"),
        "script": c.get("/admin/admin.js"),
    }

    def check(what: str, r: httpx.Response) -> None:
        assert r.headers.get("x-frame-options") == "DENY", what
        assert r.headers.get("x-content-type-options") == "nosniff", what
        assert r.headers.get("referrer-policy") == "same-origin", what
        csp = r.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, what

    for what, r in answers.items():
        check(what, r)
    signed_in(c)
    answers["admin page"] = c.get("/admin/")
    check("admin page", answers["admin page"])
    assert "script-src 'self'" in answers["admin page"].headers["content-security-policy"]
    assert answers["api"].headers["cache-control"] == "no-store"
    # no inline script or style is left for the CSP to block
    for page in (answers["admin page"].text, answers["login page"].text):
        assert "<script>" not in page and "<style>" not in page and " on" not in page.split("<body")[1]
    assert answers["script"].headers["content-type"].startswith("text/javascript")
    assert "X-CSRF-Token" in answers["script"].text


def test_the_eleventh_wrong_sign_in_gets_429(hub: Any) -> None:
    _, c = hub
    for _ in range(10):
        assert sign_in(c, token="guess").status_code == 401
    r = sign_in(c, token="guess")
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 300
    # locked out: the right token does not get in either, nor a bearer token
    assert sign_in(c).status_code == 429
    r = c.get("/api/leads", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 429 and r.headers["retry-after"]


def test_wrong_bearer_tokens_count_as_failed_sign_ins(hub: Any) -> None:
    _, c = hub
    for _ in range(10):
        assert c.get("/api/leads", headers={"Authorization": "Bearer guess"}).status_code == 401
    assert sign_in(c).status_code == 429


# ------------------------------------------------------------------ finding 8: docs and metrics
PROTECTED = ["/docs", "/redoc", "/openapi.json", "/metrics"]


def test_docs_and_metrics_need_the_token_unless_made_public(hub: Any, tmp_path: Path,
                                                             redis_url: str) -> None:
    _, c = hub
    for path in PROTECTED:
        r = c.get(path)
        assert r.status_code == 401, path
        assert "site_form" not in r.text
        assert c.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
    assert "site_form" in c.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).text
    signed_in(c)  # the docs open in the browser of a signed-in admin
    assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200
    docs_csp = c.get("/docs").headers["content-security-policy"]
    assert "'sha256-" in docs_csp and "frame-ancestors 'none'" in docs_csp
    extra = "public_docs = true\npublic_metrics = true"
    with running_app(write(tmp_path / "public", extra=extra), data_dir=tmp_path / "data2",
                     redis_url=redis_url) as (_, public):
        for path in PROTECTED:
            assert public.get(path).status_code == 200, path
        assert public.get("/api/leads").status_code == 401  # the admin API itself stays closed
    with running_app(write(tmp_path / "metrics", extra="public_metrics = true"),
                     data_dir=tmp_path / "data3", redis_url=redis_url) as (_, half):
        assert half.get("/metrics").status_code == 200
        assert half.get("/openapi.json").status_code == 401


# ------------------------------------------------------------------ finding 9: the example token
def _leadhub(tmp_path: Path, redis_url: str, *args: str, token: str | None) -> tuple[int, str]:
    """Run ``leadhub *args`` with the example plugins.toml; its exit code and stderr. A
    process that starts serving (the bug) is ended with its whole group after 30 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    env.update(LEADHUB_DATA_DIR=str(tmp_path / "data"), LEADHUB_REDIS_URL=redis_url)
    if token is not None:
        env["LEADHUB_ADMIN_TOKEN"] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", *args, "--config", str(ROOT / "plugins.toml"),
         "--port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return -1, "still running after 30 s"
    return proc.returncode, stderr.decode()


@pytest.mark.parametrize(("command", "token"), [("serve", None), ("api", "short-token")])
def test_serve_and_api_refuse_a_weak_admin_token_on_all_addresses(
    tmp_path: Path, redis_url: str, command: str, token: str | None,
) -> None:
    """The image runs ``serve --host 0.0.0.0`` with the example plugins.toml, whose token
    is ``change-me`` unless LEADHUB_ADMIN_TOKEN is set."""
    code, stderr = _leadhub(tmp_path, redis_url, command, "--host", "0.0.0.0", token=token)
    assert code == 2, stderr
    assert "refusing to listen on 0.0.0.0" in stderr and "LEADHUB_ADMIN_TOKEN" in stderr
    assert "change-me" not in stderr and "short-token" not in stderr  # the secret is not echoed


def test_the_example_token_still_works_on_loopback(make_cluster: ClusterFactory, tmp_path: Path) -> None:
    """``make run`` (127.0.0.1, the example plugins.toml, no LEADHUB_ADMIN_TOKEN)."""
    hub = make_cluster(ROOT / "plugins.toml", admin_token="change-me")
    hub.start_redis()
    hub.start_api()
    assert hub.admin("GET", "/api/leads").status_code == 200


def test_which_addresses_count_as_loopback() -> None:
    from hub.api.exposure import exposure_problem, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "192.168.1.10", "hub.example"))
    assert exposure_problem("0.0.0.0", "a-random-token-of-24-chars") is None
    assert exposure_problem("0.0.0.0", "") is None  # no token: the admin API is off
    assert exposure_problem("::", "change-me") is not None
