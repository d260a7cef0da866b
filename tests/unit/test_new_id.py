"""``new_id``: ULIDs from a buffered random chunk and a per-millisecond time prefix."""

from __future__ import annotations

import os
import time

from ulid import ULID

from hub.ids import new_id


def test_new_id_is_a_ulid_of_now_and_unique() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:500]:
        assert len(value) == 26 and str(ULID.from_str(value)) == value
        assert abs(ULID.from_str(value).timestamp - time.time()) < 60


def test_new_id_sorts_by_time() -> None:
    first = new_id()
    time.sleep(0.003)
    assert new_id() > first


def test_a_forked_child_draws_its_own_randomness() -> None:
    new_id()  # the parent's chunk is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, "".join(new_id()[10:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        child = f.read()
    parent = "".join(new_id()[10:] for _ in range(50))
    assert len(child) == len(parent) == 800 and child != parent
