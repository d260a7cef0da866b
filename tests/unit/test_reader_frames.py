"""Reader pages into the matcher's frame (``hub/reconcile/frames.py``): the schema the
matcher takes, every page in order, details on request, and a frame the matcher accepts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.reconcile.frames import DEAL_DETAILS, PAYMENT_DETAILS, records_frame
from hub.reconcile.match import RECORD_SCHEMA, match
from hub.sdk import Payment, WonDeal

MSK = timezone(timedelta(hours=3))


def deal_pages() -> Iterator[list[WonDeal]]:
    """Three pages as a CRM API hands them out, one of them empty."""
    yield [WonDeal("d1", "company:1", 1000.0, datetime(2026, 3, 2, 10, tzinfo=MSK),
                   name="ООО Ромашка", inn="7707083893", phones=("8 (916) 123-45-67",),
                   pipeline="7", status="142", title="Поставка")]
    yield []
    yield [WonDeal("d2", "contact:5", 250, datetime(2026, 3, 3, tzinfo=UTC),
                   emails=("Ivan@Example.ru",))]


def test_pages_become_one_frame_of_the_record_schema_in_order() -> None:
    frame = records_frame(deal_pages())
    assert frame.schema == RECORD_SCHEMA
    assert frame.rows() == [
        ("company:1", "ООО Ромашка", "7707083893", ["8 (916) 123-45-67"], [], 1000.0,
         datetime(2026, 3, 2, 7, tzinfo=UTC), "d1"),  # 10:00 in Moscow is 07:00 UTC
        ("contact:5", None, None, [], ["Ivan@Example.ru"], 250.0,
         datetime(2026, 3, 3, tzinfo=UTC), "d2"),
    ]


def test_details_add_what_a_flag_shows() -> None:
    deals = records_frame(deal_pages(), details=True)
    assert list(deals.schema) == [*RECORD_SCHEMA, *DEAL_DETAILS]
    assert deals.select("title", "pipeline", "status").row(0) == ("Поставка", "7", "142")
    paid = [[Payment("p1", "k1", 90.5, datetime(2026, 3, 1, tzinfo=UTC),
                     document_kind="cash_receipt", number="00012")]]
    payments = records_frame(paid, details=True)
    assert list(payments.schema) == [*RECORD_SCHEMA, *PAYMENT_DETAILS]
    assert payments.select("document_kind", "number").row(0) == ("cash_receipt", "00012")
    assert records_frame([], details=True).is_empty()
    mixed = [[Payment("p1", "k1", 1.0, datetime(2026, 3, 1, tzinfo=UTC))], *deal_pages()]
    with pytest.raises(TypeError, match="mix won deals and payments"):
        records_frame(mixed, details=True)  # type: ignore[arg-type]  # the mistake under test


def test_the_matcher_takes_the_frames_of_two_readers() -> None:
    paid = [[Payment("p1", "cp-1", 1000.0, datetime(2026, 3, 2, tzinfo=UTC),
                     name="Ромашка", inn="7707083893")]]
    result = match(records_frame(paid), records_frame(deal_pages()))
    assert result.parties.height == 1  # the tax id ties the payer to company:1
    [party] = result.parties.to_dicts()
    assert party["crm_keys"] == ["company:1"] and party["how"] == ["inn"]
    assert party["accounting_total"] == party["crm_total"] == 1000.0
