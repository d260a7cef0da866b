"""``file`` destination: each lead as one JSON line in a file under ``data_dir``.

Exactly once even across crashes: under an exclusive lock, the file itself is checked
for the lead's id before appending (the ids already in the file are cached per process
and brought up to date by reading only what was appended since). A crash after the
write but before the hub recorded it is therefore harmless: the retry finds the line.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from pydantic import Field, field_validator

from hub.sdk import (
    Capability,
    Connector,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Lead,
    Limits,
    PermanentError,
    hookimpl,
)


class FileConfig(DestinationConfig):
    path: str = Field(default="leads.jsonl", description="JSON lines file, relative to data_dir.")

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        if Path(v).is_absolute() or ".." in Path(v).parts:
            raise ValueError("must be a relative path inside data_dir")
        return v


class FileDestination(Destination[FileConfig]):
    """Append leads to a JSON-lines file (one lead per line), exactly once."""

    Config = FileConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=1000, batch_size=100, burst=10)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.LOOKUP})

    def __init__(self, config: FileConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self.file = self.context.data_dir / config.path
        self._ids: dict[str, int] = {}  # lead id -> byte offset of its line
        self._scanned = 0

    def _catch_up(self, f: BinaryIO) -> None:
        """Read lines appended since our last look (by any process); drop a torn tail."""
        size = os.fstat(f.fileno()).st_size
        if size < self._scanned:  # the file was replaced: start over
            self._ids.clear()
            self._scanned = 0
        f.seek(self._scanned)
        data = f.read()
        offset = self._scanned
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                f.truncate(offset)  # torn by a crash mid-write
                break
            lead_id = _line_id(line)
            if lead_id is not None:
                self._ids[lead_id] = offset
            offset += len(line)
        self._scanned = offset

    def _append(self, items: list[DeliveryItem], write: bool) -> list[DeliveryOutcome]:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        out = []
        with open(self.file, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                self._catch_up(f)
                for item in items:
                    lead_id = item.lead.id
                    if lead_id in self._ids:
                        out.append(DeliveryOutcome(item.delivery_id, f"{self._ids[lead_id]}"))
                        continue
                    if not write:
                        continue
                    line = _line(item.lead)
                    f.seek(0, os.SEEK_END)
                    offset = f.tell()
                    f.write(line)
                    self._ids[lead_id] = offset
                    self._scanned = offset + len(line)
                    out.append(DeliveryOutcome(item.delivery_id, f"{offset}"))
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise PermanentError(f"cannot write {self.config.path}: {exc.strerror}") from exc
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return out

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        fresh = [i for i in items if not i.lead.duplicate_of]
        done = self._append(fresh, write=True) if fresh else []
        # a duplicate's line would be a second record of the same person: record nothing
        return done + [DeliveryOutcome(i.delivery_id, None) for i in items if i.lead.duplicate_of]

    def lookup(self, item: DeliveryItem) -> str | None:
        found = self._append([item], write=False)
        return found[0].external_id if found else None

    def erase(self, lead_ids: list[str]) -> bool:
        """Rewrite the file without the lines of these leads, in place under the same lock
        appends take (an appender waiting for it then writes to the rewritten file). Other
        processes notice the shorter file and read it anew."""
        drop = set(lead_ids)
        if not self.file.exists():
            return True
        with open(self.file, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                kept = [line for line in f.read().splitlines(keepends=True)
                        if _line_id(line) not in drop]
                f.seek(0)
                f.writelines(kept)
                f.truncate()
                f.flush()
                os.fsync(f.fileno())
                self._ids.clear()
                self._scanned = 0
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return True


def _line(lead: Lead) -> bytes:
    """The lead's JSON (the contract's, without its deliveries) as one line, UTF-8, its
    ``id`` first (``_line_id`` reads it back from there)."""
    if lead.deliveries:
        lead = lead.model_copy(update={"deliveries": []})
    return lead.model_dump_json(by_alias=True).encode() + b"\n"


_ID_PREFIXES = (b'{"id":"', b'{"id": "')  # as this plugin writes a line, and as it used to


def _line_id(line: bytes) -> str | None:
    """The lead id of a line of the file. Every process appending to the file reads what
    the others appended (``_catch_up``): the id is taken from the start of the line where
    this plugin put it, the line parsed whole only when it looks otherwise."""
    for prefix in _ID_PREFIXES:
        if line.startswith(prefix):
            end = line.find(b'"', len(prefix))
            value = line[len(prefix):end]
            if end > 0 and b"\\" not in value:
                return value.decode("utf-8", "replace")
    try:
        lead_id = json.loads(line).get("id")
    except (ValueError, AttributeError):
        return None
    return lead_id if isinstance(lead_id, str) else None


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(FileDestination)
