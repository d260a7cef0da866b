"""Readers: what reconciliation reads back from a CRM (won deals) and from accounting (payments).

A reader is a connector class a plugin registers next to its destination: amoCRM delivers
leads and reads won deals, 1C takes leads and reads payments. It has no table of its own
in ``plugins.toml``: ``[reconcile.daily] crm = "amo_main"`` names the
``[destinations.amo_main]`` connector, and the hub builds the plugin's reader with that
destination's validated settings and context (so it talks to the same account, through
the same rate limit). That is why a reader's ``Config`` must be its plugin's destination
``Config`` or a base of it; discovery refuses anything else at start.

Readers stream: ``won_deals`` and ``payments`` yield one page (a list of records) per API
page, so a year of a big account never sits in memory twice, and the reconcile engine
turns the pages into one columnar frame (``hub/reconcile/frames.py``). Each record carries
what the matcher needs (``hub/reconcile/match.py`` ``RECORD_SCHEMA``: the client's key,
name, tax id, phones, emails; the amount and the date) and what a flag must show an admin
(the record's id there, the deal's pipeline and status, the payment's document kind).

A reader makes its requests itself, from a generator the engine cannot wrap: it holds
``self.context.request_slot()`` around each one, like a destination declaring
``COUNTS_OWN_REQUESTS``. It raises ``hub.errors`` as a destination does: a
``RetryableError`` fails the run, which the admin (or the schedule) starts again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from hub.capabilities import Capability
from hub.connectors import ConfigT, Connector, ConnectorConfig, ConnectorKind


def _check_record(kind: str, external_id: str, client_key: str, amount: float, date: datetime) -> None:
    """The invariants the matcher relies on; a reader that breaks one is a plugin bug,
    better found at the record than as a wrong flag."""
    if not external_id:
        raise ValueError(f"{kind}: external_id is empty")
    if not client_key:
        raise ValueError(f"{kind} {external_id}: client_key is empty")
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        raise ValueError(f"{kind} {external_id}: amount must be a finite number, got {amount!r}")
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError(f"{kind} {external_id}: date must carry a time zone (UTC is fine)")


@dataclass(frozen=True)
class WonDeal:
    """One won deal in a CRM.

    ``client_key`` is the CRM's own id of the client the deal belongs to (its company, else
    its contact: ``"company:123"``), the same for every deal of that client, so the
    reconcile engine sums a client's deals. ``name``, ``inn``, ``phones`` and ``emails``
    are the client's as written in the CRM (the engine normalizes them). ``date`` is when
    the deal was won, with its time zone.
    """

    external_id: str  # the deal's id in the CRM
    client_key: str
    amount: float
    date: datetime
    name: str | None = None
    inn: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    title: str | None = None  # the deal's own name
    pipeline: str | None = None  # the pipeline's id (or name, where the CRM has no ids)
    status: str | None = None  # the won status's id or name

    def __post_init__(self) -> None:
        _check_record("won deal", self.external_id, self.client_key, self.amount, self.date)


@dataclass(frozen=True)
class Payment:
    """One payment received, as the accounting system records it.

    ``client_key`` is the accounting system's id of the payer (1C's counterparty
    reference), the same for every payment of that client. ``document_kind`` says what the
    document is (1C: ``bank_receipt``, ``cash_receipt``); refunds and supplier operations
    are not payments, and a reader does not yield them. ``date`` is when it was paid, with
    its time zone.
    """

    external_id: str  # the document's id in accounting
    client_key: str
    amount: float
    date: datetime
    name: str | None = None
    inn: str | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    document_kind: str | None = None
    number: str | None = None  # the document's number as printed

    def __post_init__(self) -> None:
        _check_record("payment", self.external_id, self.client_key, self.amount, self.date)


class CrmReader(Connector[ConfigT]):
    """Reads won deals from a CRM for reconciliation; registered next to its destination."""

    kind: ClassVar[ConnectorKind] = "crm_reader"
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CRM_READER})

    def won_deals(
        self, since: datetime, until: datetime, pipelines: Sequence[int] = (),
    ) -> Iterator[list[WonDeal]]:
        """Deals won in ``[since, until)``, one page of records per API page, oldest first
        where the API allows. ``pipelines`` limits them to those pipelines; empty means
        every pipeline. A page may be empty; the iterator ends after the last page."""
        raise NotImplementedError


class AccountingReader(Connector[ConfigT]):
    """Reads payments from an accounting system for reconciliation; registered next to its
    destination."""

    kind: ClassVar[ConnectorKind] = "accounting_reader"
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.ACCOUNTING_READER})

    def payments(self, since: datetime, until: datetime) -> Iterator[list[Payment]]:
        """Payments received in ``[since, until)`` (posted, not deleted; no refunds), one
        page of records per API page. A page may be empty; the iterator ends after the
        last page."""
        raise NotImplementedError

