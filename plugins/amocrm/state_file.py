"""A small JSON file of a connector's state, shared by every process on the host.

amoCRM keeps two: the rotated OAuth tokens (each refresh token works once) and the ids of
the marker fields (created once per account). Both are read and written under an
exclusive file lock, and written atomically (a temporary file, fsync, rename), so a worker
killed mid-write leaves the old state, and two workers never both act on a stale one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: processes do not share the lock
    fcntl = None  # type: ignore[assignment]


class StateFile:
    """``path`` holds a JSON object; ``path.lock`` serializes the processes using it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as handle:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any] | None:
        """The stored object; None when the file is missing or unreadable."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write(self, data: dict[str, Any]) -> None:
        """Replace the stored object atomically (readable by its owner only: it may hold tokens)."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
