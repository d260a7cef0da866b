"""``crm_echo``: a third-party destination that writes what it receives to a file.

It uses only the public plugin API, ``hub.sdk``, and reaches the hub only through its
``leadhub`` entry point.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from hub.sdk import (
    Connector,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Lead,
    Limits,
    PermanentError,
    hookimpl,
)

RECEIVED_FILE = "crm_echo_received.txt"
_data_dir: Path | None = None  # set by leadhub_startup in each hub process


class EchoConfig(DestinationConfig):
    path: str = Field(default="crm_echo.txt", description="File under data_dir, one lead per line.")
    api_key: SecretStr | None = Field(default=None, description="Unused; shows a secret setting.")


class EchoDestination(Destination[EchoConfig]):
    """Echo each delivered lead's id and phone into a file."""

    Config = EchoConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=100, batch_size=10)

    @property
    def file(self) -> Path:
        return self.context.data_dir / self.config.path

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        lines = "".join(f"{i.lead.id}\t{(i.lead.contact.phones or [''])[0]}\n" for i in items)
        try:
            _append(self.file, lines)
        except OSError as exc:
            raise PermanentError(f"cannot write {self.file}: {exc}") from exc
        return [DeliveryOutcome(i.delivery_id, external_id=f"echo-{i.lead.id}") for i in items]

    def lookup(self, item: DeliveryItem) -> str | None:
        if not self.file.exists():
            return None
        ids = {line.split("\t", 1)[0] for line in self.file.read_text().splitlines()}
        return f"echo-{item.lead.id}" if item.lead.id in ids else None


def _append(file: Path, text: str) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(text)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(EchoDestination)


@hookimpl
def leadhub_startup(settings: dict[str, Any]) -> None:
    global _data_dir
    _data_dir = Path(settings["data_dir"])


@hookimpl
def leadhub_lead_received(lead: Lead, source: str) -> None:
    if _data_dir is not None:
        _append(_data_dir / RECEIVED_FILE, f"{lead.id}\t{source}\n")
