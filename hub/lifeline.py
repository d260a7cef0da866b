"""Child processes that die with their parent, whatever kills it.

``leadhub serve`` runs its workers, and with ``redis_url`` empty the embedded
redis-server, as child processes. A parent killed by SIGKILL runs no cleanup, and its
children used to run on as orphans, so each child learns of the death itself:

* On Linux, ``PR_SET_PDEATHSIG``, set between fork and exec (``parent_death_signal``):
  the kernel signals the child when the *thread* that forked it ends, not the process.
  Spawn from a thread that outlives the child: the main thread, or a supervisor thread
  that reaps its children before it returns (``hub.cli.Supervisor``).
* Everywhere, a lifeline (``Lifeline``): a pipe whose write end only the parent holds.
  The kernel closes it when the parent dies however it dies; a thread in the child
  (``watch_lifeline``) reads EOF and ends the process, even while its main thread is busy
  in a job. The worker's jobs are crash-safe (leases in the store), so ending it
  abruptly loses nothing.

redis-server is a third-party binary that cannot watch a pipe: it gets only the Linux
signal (SIGTERM, so it flushes its append-only file first).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, MutableMapping

LIFELINE_ENV = "LEADHUB_LIFELINE_FD"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("leadhub.lifeline")


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


# resolved once in the parent: the function given to Popen runs between fork and exec,
# where loading a library could take locks another thread held at the fork
_PRCTL = _load_prctl()


def parent_death_signal(sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send ``sig`` to the child when the calling
    thread of this process ends; None where the kernel has no such thing (not Linux)."""
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def set_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died between the fork and the prctl
            os.kill(os.getpid(), sig)

    return set_signal


class Lifeline:
    """The parent's end of the pipe its children watch. Kept open for the life of the
    process, never closed: the kernel closes it when the process ends."""

    def __init__(self) -> None:
        # both ends non-inheritable (PEP 446): only a child given ``pass_fds`` gets the
        # read end, and no child ever gets the write end (one would keep the line alive)
        self.read_fd, self._write_fd = os.pipe()

    def child_env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, LIFELINE_ENV: str(self.read_fd)}

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self.read_fd,)


_lifeline: Lifeline | None = None
_lifeline_lock = threading.Lock()


def lifeline() -> Lifeline:
    """This process's lifeline, made on first use."""
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = Lifeline()
        return _lifeline


def watch_lifeline(environ: MutableMapping[str, str] | None = None) -> bool:
    """If this process was started with a lifeline (``$LEADHUB_LIFELINE_FD``), end it
    as soon as the line closes, that is when the parent has died. Returns whether it
    watches. The variable is removed so this process's own children do not inherit it."""
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    value = env.pop(LIFELINE_ENV, "")
    if not value.isdigit():
        return False
    fd = int(value)
    try:
        os.fstat(fd)
    except OSError:  # not passed to us after all (a grandchild that inherited the variable)
        return False
    threading.Thread(target=_watch, args=(fd,), daemon=True, name="lifeline").start()
    return True


def _watch(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 1):
            pass  # nobody writes; a byte would be a bug of the parent, not a reason to exit
    log.warning("parent process gone; exiting")
    os.kill(os.getpid(), signal.SIGKILL)
