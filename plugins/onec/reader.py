"""The ``onec`` accounting reader: customer payments for reconciliation.

A payment is a posted, not deleted bank receipt (``Document_ПоступлениеНаРасчетныйСчет``)
or cash receipt (``Document_ПриходныйКассовыйОрдер``) whose ``ВидОперации`` is a customer's
payment (``ОплатаПокупателя``; ``customer_payment_kinds``): refunds from suppliers and the
other operations those documents also record are not (reference §3 (e)). Its counterparty
is a composite-type reference, ``Контрагент`` + ``Контрагент_Type``, not ``Контрагент_Key``
(reference §3, "Composite-type references"); only ``Catalog_Контрагенты`` counterparties are
clients. The sum is ``СуммаДокумента``, the date ``Date`` in the base's local time
(``timezone``), given a zone here.

Requests: per document kind, one ``GET`` per page of ``page_size`` rows (``$top``/``$skip``
ordered by ``Date, Ref_Key``, 1C has no cursor), plus, per page, the page's new
counterparties fetched ``KEYS_PER_REQUEST`` at a time (``Ref_Key eq guid'…' or …``) and
their contact rows from ``Catalog_Контрагенты_КонтактнаяИнформация`` the same way: never
one request per payment; a counterparty is fetched once per run.

Dates are filtered on the server (``Date ge datetime'…' and Date lt datetime'…'``). Some
bases fail on ``Date`` filters, and a public connector keeps a per-base client-side
fallback (reference §3, [verify]); with ``date_filter_mode = "auto"`` a page whose request
fails (400 or 500) is asked again without the date clause, and when that works the reader
filters dates itself for the rest of the connector's life: rows come ordered by ``Date``, so
it skips those before ``since`` and stops at the first one at or after ``until``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from hub.sdk import (
    AccountingReader,
    Capability,
    ConnectorConfig,
    Payment,
    PermanentError,
    RetryableError,
)
from plugins.onec.config import OneCConfig
from plugins.onec.contacts import contact_set, emails_of, phones_of
from plugins.onec.metadata import Metadata
from plugins.onec.odata import ODataClient, any_of, is_empty, text, values, when

log = logging.getLogger(__name__)
COUNTERPARTY_TYPE = "StandardODATA.{entity}"
ORDER = "Date asc,Ref_Key asc"


@dataclass
class Client:
    """A counterparty as a payment shows it."""

    name: str | None
    inn: str | None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


class OneCPayments(AccountingReader[OneCConfig]):
    """Customer payments (bank and cash receipts) from 1C over its standard OData."""

    Config: ClassVar[type[ConnectorConfig]] = OneCConfig
    description: ClassVar[str] = "1C: posted customer payments (bank and cash receipts)"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.ACCOUNTING_READER})

    _api: ODataClient | None = None
    #: "client" once a Date filter failed where the same request without it worked
    _date_mode: str | None = None

    def api(self) -> ODataClient:
        if self._api is None:
            self._api = ODataClient(self.config, self.context)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    @property
    def date_mode(self) -> str:
        return self._date_mode or self.config.date_filter_mode

    def payments(self, since: datetime, until: datetime) -> Iterator[list[Payment]]:
        zone = ZoneInfo(self.config.timezone)
        local_since = since.astimezone(zone).replace(tzinfo=None)
        local_until = until.astimezone(zone).replace(tzinfo=None)
        clients: dict[str, Client] = {}
        for entity, kind in ((self.config.bank_receipts, "bank_receipt"),
                             (self.config.cash_receipts, "cash_receipt")):
            if entity:
                yield from self._read(entity, kind, local_since, local_until, zone, clients)

    # ------------------------------------------------------------ one document kind

    def _read(self, entity: str, kind: str, since: datetime, until: datetime, zone: ZoneInfo,
              clients: dict[str, Client]) -> Iterator[list[Payment]]:
        api = self.api()
        meta = api.metadata()
        api.require(entity)
        counterparty = self.config.counterparties
        if not meta.composite(entity, "Контрагент") or not meta.has(entity, "ВидОперации"):
            raise PermanentError(f"{entity} has no composite Контрагент or no ВидОперации in "
                                 "this configuration's $metadata: set bank_receipts/cash_receipts")
        amount = meta.pick(entity, ("СуммаДокумента", "Сумма"))
        if amount is None:
            raise PermanentError(f"{entity} has no СуммаДокумента in $metadata")
        select = ["Ref_Key", "Number", "Date", "Контрагент", "Контрагент_Type", amount]
        kinds = any_of([f"ВидОперации eq {text(k)}" for k in self.config.customer_payment_kinds])
        base = f"Posted eq true and DeletionMark eq false and {kinds}"
        dated = f"{base} and Date ge {when(since)} and Date lt {when(until)}"
        wanted = COUNTERPARTY_TYPE.format(entity=counterparty)
        page = self.config.page_size
        seen: set[str] = set()
        skip = 0
        while True:
            rows, client_side = self._page(entity, base, dated, select, page, skip)
            batch: list[dict[str, Any]] = []
            past_until = False
            for row in rows:
                date = _local(row.get("Date"))
                if client_side and date is not None and date >= until:
                    past_until = True
                    break
                if date is None or not since <= date < until or row["Ref_Key"] in seen:
                    continue  # a row seen on the previous page moved over by an insert
                seen.add(row["Ref_Key"])
                if row.get("Контрагент_Type") != wanted or is_empty(row.get("Контрагент")):
                    log.info("1C %s %s: counterparty is %s, not a client; skipped", entity,
                             row.get("Number"), row.get("Контрагент_Type") or "empty")
                    continue
                batch.append(row)
            self._resolve(meta, [str(r["Контрагент"]) for r in batch], clients)
            yield [_payment(r, amount, kind, zone, clients[str(r["Контрагент"])]) for r in batch]
            if past_until or len(rows) < page:
                return
            skip += page

    def _page(self, entity: str, base: str, dated: str, select: list[str], top: int,
              skip: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of rows and whether dates are the client's to filter."""
        api = self.api()
        if self.date_mode == "client":
            return api.rows(entity, filter=base, select=select, orderby=ORDER, top=top,
                            skip=skip), True
        response = api.rows_response(entity, filter=dated, select=select, orderby=ORDER,
                                     top=top, skip=skip)
        error = api.error_for(response)
        if error is None:
            return values(response), False
        if self.date_mode != "auto" or response.status_code not in (400, 500):
            raise error
        try:
            rows = api.rows(entity, filter=base, select=select, orderby=ORDER, top=top, skip=skip)
        except (PermanentError, RetryableError):
            raise error from None  # not the date filter: the base fails either way
        log.warning("1C %s: the Date filter failed (%s) where the same request without it "
                    "works; filtering dates in LeadHub from now on", entity, error)
        self._date_mode = "client"
        return rows, True

    # ------------------------------------------------------------ counterparties

    def _resolve(self, meta: Metadata, refs: list[str], clients: dict[str, Client]) -> None:
        """Fetch the counterparties of ``refs`` not fetched yet, with their contacts."""
        new = sorted(set(refs) - set(clients))
        if not new:
            return
        api, entity = self.api(), self.config.counterparties
        fields = meta.present(entity, ("Ref_Key", "Description", "НаименованиеПолное", "ИНН"))
        rows = {str(r["Ref_Key"]): r for r in api.by_keys(entity, new, select=fields)}
        contacts: dict[str, list[dict[str, Any]]] = {}
        table = contact_set(entity)
        if meta.published(table):
            select = meta.present(table, ("Ref_Key", "LineNumber", "Тип", "Представление",
                                          "НомерТелефона", "АдресЭП"))
            for row in api.by_keys(table, new, select=select, orderby="Ref_Key,LineNumber"):
                contacts.setdefault(str(row["Ref_Key"]), []).append(row)
        for ref in new:
            row = rows.get(ref, {})
            name = str(row.get("Description") or row.get("НаименованиеПолное") or "").strip()
            inn = str(row.get("ИНН") or "").strip()
            mine = contacts.get(ref, [])
            clients[ref] = Client(name or None, inn or None, phones_of(mine), emails_of(mine))


def _local(value: object) -> datetime | None:
    """A 1C date (``2024-06-18T15:04:05``, no zone); None for the empty ``0001-01-01``."""
    if not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        return None


def _payment(row: dict[str, Any], amount: str, kind: str, zone: ZoneInfo, client: Client) -> Payment:
    date = _local(row["Date"])
    assert date is not None
    return Payment(
        external_id=str(row["Ref_Key"]), client_key=str(row["Контрагент"]),
        amount=float(row.get(amount) or 0), date=date.replace(tzinfo=zone),
        name=client.name, inn=client.inn, phones=client.phones, emails=client.emails,
        document_kind=kind, number=str(row.get("Number") or "").strip() or None,
    )
