"""``leadhub serve`` killed by SIGKILL takes its children with it: its workers and the
embedded redis-server it started (issue 8, finding 10; ``hub/lifeline.py``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub.testing.cluster import wait_until
from tests.conftest import ClusterFactory, ConfigWriter

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="finds the processes in /proc (Linux)")

ROOT = Path(__file__).resolve().parents[2]
Proc = tuple[int, str]  # pid and start time: a pid alone may be reused by then


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses
    return text.rsplit(")", 1)[1].split()


def descendants(pid: int) -> set[Proc]:
    """Every process below ``pid`` now, with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[Proc] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if (fields := _stat(child)) is not None:
            found.add((child, fields[19]))
        todo += children.get(child, [])
    return found


def running(proc: Proc) -> bool:
    """Still the same process, and not a zombie waiting for whoever adopted it."""
    fields = _stat(proc[0])
    return fields is not None and fields[19] == proc[1] and fields[0] != "Z"


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def ready_serve(write_config: ConfigWriter, make_cluster: ClusterFactory) -> subprocess.Popen[bytes]:
    """``leadhub serve`` with one webform and the embedded Redis it starts (and owns),
    once ready (its workers running); its process."""
    config = write_config("""
        [sources.site_form]
        plugin = "webform"
    """)
    hub = make_cluster(config, redis_url="")
    hub.start_serve()
    wait_until(lambda: hub.client.get("/readyz").status_code == 200, 60, 0.2,
               "leadhub serve to be ready (workers running)")
    assert hub.api is not None
    return hub.api


def test_serve_killed_by_sigkill_leaves_no_worker_or_redis(
    write_config: ConfigWriter, make_cluster: ClusterFactory
) -> None:
    serve = ready_serve(write_config, make_cluster)
    children = descendants(serve.pid)
    commands = [command(pid) for pid, _ in children]
    assert sum("redis-server" in c for c in commands) == 1, commands
    assert sum(" worker " in c for c in commands) == 2, commands
    try:
        # the serve process alone, not its process group (which HubCluster.stop signals,
        # and which a terminal's Ctrl-C reaches): nothing of serve's own code runs
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(10)
        wait_until(lambda: not any(running(p) for p in children), 15, 0.1,
                   "serve's workers and redis-server to end")
    finally:
        for pid, _ in [p for p in children if running(p)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


PARENT = """
import subprocess, sys, time
from hub.lifeline import lifeline
line = lifeline()
child = subprocess.Popen(
    [sys.executable, "-c",
     "import time; from hub.lifeline import watch_lifeline; assert watch_lifeline(); time.sleep(600)"],
    env=line.child_env({}), pass_fds=line.pass_fds)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_busy_child_ends_by_its_lifeline_alone() -> None:
    """The portable fallback without the Linux signal: a child whose main thread is busy
    (asleep here) still ends when the parent that holds its lifeline is killed."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    child: Proc | None = None
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        fields = _stat(pid)
        assert fields is not None
        child = watched = (pid, fields[19])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not running(watched), 15, 0.1, "the child to end")
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        if child is not None and running(child):
            os.kill(child[0], signal.SIGKILL)


def test_a_worker_pool_keeps_the_embedded_redis_it_started(tmp_path: Path) -> None:
    """``leadhub worker --processes 2`` with the embedded Redis: the pool's processes reach
    it for as long as the pool runs (it used to be stopped right after being started), and
    it ends with the pool."""
    from hub.queue import EmbeddedRedis

    config = tmp_path / "plugins.toml"
    config.write_text(f'[hub]\ndata_dir = "{tmp_path / "var"}"\n\n[sources.form]\nplugin = "webform"\n')
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADHUB_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--config", str(config),
                                 "--processes", "2"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    redis_dir = EmbeddedRedis(tmp_path / "var" / "redis")
    try:
        wait_until(lambda: redis_dir._alive(), timeout=20, what="the embedded Redis")
        wait_until(lambda: log.read_text().count("Worker") >= 2, timeout=20, what="the pool's workers")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # the window in which the old code's Redis went away
        assert proc.poll() is None, log.read_text()[-2000:]
        assert redis_dir._alive(), "the embedded Redis stopped under the running pool"
        assert "Error" not in log.read_text(), log.read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_until(lambda: not redis_dir._alive(), timeout=10, what="the embedded Redis to stop with the pool")
