"""Health that reflects progress, not liveness: a queue that had work and did not move.

n8n's workers stopped consuming after a network flap while their health checks stayed
green; ours go red. Work is *stalled* when something has been due for longer than
``STALL_S`` and nothing for its queue moved in that time.
"""

from __future__ import annotations

import time

from hub.runtime import Runtime
from hub.store import queues

STALL_S = 60.0


def stalled_queues(rt: Runtime, stall_s: float = STALL_S, now: float | None = None) -> list[str]:
    """Names of stalled queues: ``process`` and ``deliver:<destination>``."""
    now = time.time() if now is None else now
    out = []
    with rt.reader.connect() as conn:
        oldest_received = queues.oldest_received(conn)
        if oldest_received is not None and now - oldest_received > stall_s:
            out.append("process")
        overrides = rt.enabled_overrides()
        due = queues.due_before(conn, now - stall_s)
        for dest, _oldest in due:
            if dest not in rt.config.destinations or not rt.is_enabled(dest, overrides):
                continue  # a disabled destination holds its work on purpose
            last_move = queues.last_moved(conn, dest)
            if last_move is None or now - last_move > stall_s:
                out.append(f"deliver:{dest}")
    return out
