"""A real LeadHub on loopback for tests and benches: api, workers and scheduler as
separate processes (so a test can SIGKILL any of them), an embedded Redis the test can
stop and wipe, and the store of its choice. Plugin authors get the same harness we use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx

from hub.queue import EmbeddedRedis

if TYPE_CHECKING:
    from hub.runtime import Runtime


def free_port() -> int:
    """A port the kernel says is free now (the harness passes it straight to the api)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing we wait for may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" +
                       (f" (last error: {last_exc!r})" if last_exc else ""))


class HubCluster:
    """Processes of one hub sharing a config, a store and a Redis."""

    def __init__(
        self,
        config: Path,
        *,
        data_dir: Path,
        database_url: str = "",
        redis_url: str | None = None,
        admin_token: str = "test-admin-token",
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.admin_token = admin_token
        self.embedded: EmbeddedRedis | None = None
        if redis_url is None:
            self.embedded = EmbeddedRedis(data_dir / "redis")
            redis_url = self.embedded.url
        self.redis_url = redis_url
        self.env = {
            **os.environ,
            "LEADHUB_CONFIG": str(config),
            "LEADHUB_DATA_DIR": str(data_dir),
            "LEADHUB_DATABASE_URL": database_url,
            "LEADHUB_REDIS_URL": redis_url,
            "LEADHUB_ADMIN_TOKEN": admin_token,
            "PYTHONUNBUFFERED": "1",
            # one api process (``api`` is then the process that answers) unless told
            "LEADHUB_API_PROCESSES": os.environ.get("LEADHUB_API_PROCESSES", "1"),
            **(env or {}),
        }
        self.port = 0
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._client: httpx.Client | None = None

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        return subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args, "--config", str(self.config)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def start_redis(self, wipe: bool = False) -> None:
        assert self.embedded is not None, "the cluster does not own its Redis"
        if wipe:
            for f in self.embedded.directory.glob("appendonly*"):
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink()
        self.embedded.start()

    def stop_redis(self) -> None:
        assert self.embedded is not None
        self.embedded.stop()

    def start_api(self) -> str:
        self.port = self.port or free_port()
        self.api = self._spawn("api", "api", "--port", str(self.port))
        wait_until(self._ready, 60, 0.1, "the api to answer /healthz")
        return self.base_url

    def _ready(self) -> bool:
        assert self.api is not None
        if self.api.poll() is not None:
            raise RuntimeError(f"api exited with {self.api.returncode}; see {self.logs / 'api.log'}")
        return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200

    def start_serve(self, *options: str) -> str:
        """``leadhub serve`` (api, workers and scheduler in one command, with its defaults,
        as the README runs it, or these ``options``) in the place of the api; ``stop`` ends
        it like the api."""
        self.port = self.port or free_port()
        self.api = self._spawn("serve", "serve", "--port", str(self.port), *options)
        wait_until(self._ready, 60, 0.1, "leadhub serve to answer /healthz")
        return self.base_url

    def start_worker(self, processes: int = 1) -> subprocess.Popen[bytes]:
        p = self._spawn(f"worker-{len(self.workers)}", "worker", "--processes", str(processes))
        self.workers.append(p)
        return p

    def restart_worker(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Kill worker ``index`` (SIGKILL by default) and start a new one in its place."""
        self.kill(self.workers[index], sig)
        new = self.start_worker()
        self.workers.pop()  # start_worker appended it; it takes the old one's place
        self.workers[index] = new

    def start_scheduler(self) -> None:
        self.scheduler = self._spawn("scheduler", "scheduler")

    def start(self, workers: int = 1) -> Self:
        if self.embedded is not None:
            self.start_redis()
        self.start_api()
        for _ in range(workers):
            self.start_worker()
        self.start_scheduler()
        return self

    @staticmethod
    def kill(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for p in [self.api, self.scheduler, *self.workers]:
            self.kill(p, signal.SIGTERM)
        self.workers.clear()
        if self.embedded is not None:
            self.embedded.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.base_url, timeout=30)
        return self._client

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)

    def leads(self, **params: Any) -> list[dict[str, Any]]:
        """Every lead, following cursors."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
            page = self.admin("GET", "/api/leads", params=q).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items


@contextlib.contextmanager
def running_app(
    config: Path,
    *,
    data_dir: Path,
    redis_url: str,
    database_url: str = "",
    extra_plugins: list[tuple[str, object]] | None = None,
) -> Iterator[tuple[Runtime, httpx.Client]]:
    """The hub's HTTP app for ``config`` on a loopback port, in this process (no worker):
    the runtime, to look into the store, and a client for the app. Settings that name the
    store and Redis come from the arguments, not from the caller's environment."""
    from hub.api.app import create_app
    from hub.runtime import build_runtime

    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    environ.update(LEADHUB_DATA_DIR=str(data_dir), LEADHUB_REDIS_URL=redis_url,
                   LEADHUB_DATABASE_URL=database_url)
    rt = build_runtime(config, extra_plugins=extra_plugins, environ=environ)
    try:
        with AppServer(create_app(rt)) as srv, httpx.Client(base_url=srv.base_url, timeout=10) as c:
            yield rt, c
    finally:
        rt.close()


class AppServer:
    """A FastAPI app served by uvicorn in a thread on an ephemeral loopback port: real HTTP
    for tests that need the API but not separate processes."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                           access_log=False, lifespan="on")
        )
        self.thread: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 10, 0.01, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
