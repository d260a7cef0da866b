"""``erp``: a test plugin providing three connector classes from one registration hook.

A small ERP kept in a JSON-lines file under ``data_dir``: the destination appends leads
to it, the CRM reader reads its won deals and the accounting reader its payments, page by
page (``page_size`` records a page), each page one "request" through the destination's
rate slot. Both readers are built from the destination's ``[destinations.*]`` table: they
read the ``path`` and ``page_size`` the admin set there, which is the pairing under test.
Only ``hub.sdk`` is imported, as a third-party plugin would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from hub.sdk import (
    AccountingReader,
    Capability,
    Connector,
    ConnectorConfig,
    CrmReader,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
    Payment,
    WonDeal,
    hookimpl,
)


class ErpConfig(DestinationConfig):
    path: str = Field(default="erp.jsonl", description="The ERP's records, under data_dir.")
    page_size: int = Field(default=2, gt=0, description="Records per page the readers fetch.")


def _records(config: ErpConfig, data_dir: Path, kind: str) -> list[dict[str, Any]]:
    file = data_dir / config.path
    if not file.exists():
        return []
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line]
    return [r for r in rows if r["type"] == kind]


class ErpDestination(Destination[ErpConfig]):
    """The ERP takes leads and gives back won deals and payments."""

    Config = ErpConfig
    limits: ClassVar[Limits] = Limits(requests_per_second=50, batch_size=10)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.LOOKUP})

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        file = self.context.data_dir / self.config.path
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "a", encoding="utf-8") as f:
            for item in items:
                f.write(json.dumps({"type": "lead", "id": item.lead.id}) + "\n")
        return [DeliveryOutcome(i.delivery_id, external_id=f"erp-{i.lead.id}") for i in items]

    def lookup(self, item: DeliveryItem) -> str | None:
        ids = {r["id"] for r in _records(self.config, self.context.data_dir, "lead")}
        return f"erp-{item.lead.id}" if item.lead.id in ids else None


def _pages(
    config: ErpConfig, rows: list[dict[str, Any]], slot: Callable[[], Any],
) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), config.page_size):
        with slot():  # one request per page, under the destination's limit
            yield rows[start:start + config.page_size]


def _in(row: dict[str, Any], since: datetime, until: datetime) -> bool:
    return since <= datetime.fromisoformat(row["date"]) < until


class ErpDeals(CrmReader[ErpConfig]):
    """Won deals of the ERP's sales module."""

    Config = ErpConfig

    def won_deals(self, since: datetime, until: datetime,
                  pipelines: Sequence[int] = ()) -> Iterator[list[WonDeal]]:
        rows = [r for r in _records(self.config, self.context.data_dir, "deal")
                if _in(r, since, until) and (not pipelines or r["pipeline"] in pipelines)]
        for page in _pages(self.config, rows, self.context.request_slot):
            yield [WonDeal(external_id=r["id"], client_key=r["client"], amount=r["amount"],
                           date=datetime.fromisoformat(r["date"]), name=r.get("name"),
                           inn=r.get("inn"), phones=tuple(r.get("phones", ())),
                           emails=tuple(r.get("emails", ())), pipeline=str(r["pipeline"]),
                           status="won") for r in page]


class ErpPayments(AccountingReader[ErpConfig]):
    """Customer payments of the ERP's accounting module."""

    Config = ErpConfig

    def payments(self, since: datetime, until: datetime) -> Iterator[list[Payment]]:
        rows = [r for r in _records(self.config, self.context.data_dir, "payment") if _in(r, since, until)]
        for page in _pages(self.config, rows, self.context.request_slot):
            yield [Payment(external_id=r["id"], client_key=r["client"], amount=r["amount"],
                           date=datetime.fromisoformat(r["date"]), inn=r.get("inn"),
                           name=r.get("name"), phones=tuple(r.get("phones", ())),
                           emails=tuple(r.get("emails", ())), document_kind="bank_receipt")
                   for r in page]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(ErpDestination)
    register(ErpDeals)
    register(ErpPayments)


# a reader built from another table than its plugin's destination's: refused at discovery
class OtherConfig(ConnectorConfig):
    token: str = ""


class MismatchedDeals(ErpDeals):
    Config = OtherConfig  # type: ignore[assignment]  # the mistake under test
