"""The file destination keeps what of the destination contract applies without a remote:
a batch is delivered (one JSON line per lead); the fault, limit and status checks skip."""

from typing import Any, ClassVar

from hub.testing.kits import DestinationHub, DestinationKit
from plugins.file import FileDestination


class TestFileKit(DestinationKit):
    connector = FileDestination
    settings: ClassVar[dict[str, Any]] = {"path": "kit.jsonl"}

    def created(self, hub: DestinationHub) -> int:
        path = hub.data_dir / "kit.jsonl"
        return len(path.read_text("utf-8").splitlines()) if path.exists() else 0
