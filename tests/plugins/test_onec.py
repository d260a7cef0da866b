"""The ``onec`` plugin against ``FakeOneC`` over real HTTP: the accounting reader (paging,
dates, which receipts are payments, composite counterparties, contacts from
``Представление``, the Date-filter fallback, ``$metadata`` variants) and the destination
(counterparty, contacts and order; reuse by INN and phone; exactly once after uncertain
failures), with 1C's errors (401, 404 for what is not published)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from hub.connectors import ConnectorContext, DeliveryItem
from hub.errors import PermanentError, RetryableError
from hub.models import Lead
from hub.sdk.readers import Payment
from hub.testing import serving
from hub.testing.kits import DestinationHub, DestinationKit, ReaderKit, ReaderPlace
from plugins.onec import OneCConfig, OneCDestination, OneCPayments
from plugins.onec.testing import LEGACY, FakeOneC
from plugins.onec.testing.fake import ROOT

USER, PASSWORD = "Администратор", "s3cret-pa55"
SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
BANK = "Document_ПоступлениеНаРасчетныйСчет"
CASH = "Document_ПриходныйКассовыйОрдер"
ORDERS = "Document_СчетНаОплатуПокупателю"  # БП 3.0's nearest thing to a customer order


def settings(fake: FakeOneC, **extra: Any) -> OneCConfig:
    table = {"plugin": "onec", "base_url": fake.odata_url, "username": USER,
             "password": PASSWORD, "timeout_s": 2, **extra}
    return OneCConfig.model_validate(table)


@pytest.fixture
def fake() -> Iterator[FakeOneC]:
    yield from serving(FakeOneC(username=USER, password=PASSWORD))


def reader(fake: FakeOneC, tmp_path: Path, **extra: Any) -> OneCPayments:
    return OneCPayments(settings(fake, **extra), ConnectorContext("onec_main", tmp_path))


def read(fake: FakeOneC, tmp_path: Path, since: datetime = SINCE, until: datetime = UNTIL,
         **extra: Any) -> list[list[Payment]]:
    r = reader(fake, tmp_path, **extra)
    try:
        return [list(page) for page in r.payments(since, until)]
    finally:
        r.close()


def flat(pages: list[list[Payment]]) -> list[Payment]:
    return [p for page in pages for p in page]


def lead(n: int, **extra: Any) -> Lead:
    data: dict[str, Any] = {
        "id": f"01JONEC{n:04d}", "source": "site_form", "channel": "form",
        "received_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        "contact": {"name": f"Иван {n}", "phones": [f"+7916123{n:04d}"],
                    "emails": [f"ivan{n}@example.ru"]},
        "message": "Нужен счёт", "product": "Поставка",
    }
    data.update(extra)
    return Lead.model_validate(data)


def item(n: int, *, uncertain: bool = False, attempt: str = "att1", previous: str | None = None,
         **extra: Any) -> DeliveryItem:
    return DeliveryItem(f"d{n}", f"{n}:onec_main", lead(n, **extra), uncertain=uncertain,
                        attempt_id=attempt, previous_attempt_id=previous)


def destination(fake: FakeOneC, tmp_path: Path, **extra: Any) -> OneCDestination:
    return OneCDestination(settings(fake, **extra), ConnectorContext("onec_main", tmp_path))


# ---------------------------------------------------------------- auth, format, errors


def test_a_refused_password_is_a_permanent_error_naming_the_user_not_the_password(
    fake: FakeOneC, tmp_path: Path,
) -> None:
    with pytest.raises(PermanentError) as caught:
        read(fake, tmp_path, password="wrong-password-123")
    message = str(caught.value)
    assert "401" in message and USER in message and "credentials" in message
    assert "wrong-password-123" not in message and PASSWORD not in message
    dest = destination(fake, tmp_path, password="wrong-password-123")
    [out] = dest.deliver([item(1)])
    dest.close()
    assert isinstance(out.error, PermanentError) and "wrong-password-123" not in str(out.error)
    assert fake.counterparties == []


def test_the_fake_answers_atom_unless_json_is_asked_and_the_plugin_asks(
    fake: FakeOneC, tmp_path: Path,
) -> None:
    auth = (USER, PASSWORD)
    atom = httpx.get(fake.odata_url + "/" + BANK, auth=auth)
    assert atom.status_code == 200 and atom.text.startswith("<?xml")
    both = httpx.get(fake.odata_url + "/" + BANK, params={"$format": "json", "$inlinecount": "allpages"},
                     auth=auth)
    assert both.json()["odata.count"] == "0"  # a string, as 1C sends it
    read(fake, tmp_path)
    plugin = [r for r in fake.requests[2:] if "$metadata" not in r.path]  # after our own two
    assert plugin and all(r.q("$format") == "json" and "application/json" in r.headers["accept"]
                          for r in plugin)


def test_an_unpublished_entity_is_a_clear_permanent_error(fake: FakeOneC, tmp_path: Path) -> None:
    fake.unpublish(CASH)  # not in $metadata: found before any request names it
    with pytest.raises(PermanentError, match="УстановитьСоставСтандартногоИнтерфейсаOData"):
        read(fake, tmp_path)
    r = reader(fake, tmp_path)
    r.api().metadata()  # read while the bank receipts were still published
    fake.unpublish(BANK)
    with pytest.raises(PermanentError) as caught:
        list(r.payments(SINCE, UNTIL))
    r.close()
    assert "404" in str(caught.value) and "published OData composition" in str(caught.value)


# ---------------------------------------------------------------- the reader


def test_pages_to_the_end_and_fetches_counterparties_in_batches(fake: FakeOneC, tmp_path: Path) -> None:
    clients = [fake.add_counterparty(f"Клиент {i}", inn=f"77070838{i:02d}") for i in range(4)]
    ids = [fake.add_payment(clients[i % 4], 100 + i, SINCE + timedelta(hours=i + 1)) for i in range(11)]
    fake.clear_records()
    pages = read(fake, tmp_path, page_size=4)
    assert sorted(p.external_id for p in flat(pages)) == sorted(ids)
    assert len([p for p in pages if p]) >= 3
    catalog = [r for r in fake.requests if "/Catalog_" in unquote(r.path)]
    assert len(catalog) <= 2 * 3, "counterparties were fetched one request per payment"
    assert {p.inn for p in flat(pages)} == {f"77070838{i:02d}" for i in range(4)}


def test_since_and_until_are_honoured_in_the_bases_time_zone(fake: FakeOneC, tmp_path: Path) -> None:
    c = fake.add_counterparty("Ромашка")
    dates = [SINCE - timedelta(seconds=1), SINCE, UNTIL - timedelta(seconds=1), UNTIL]
    ids = [fake.add_payment(c, 10, d) for d in dates]
    got = flat(read(fake, tmp_path))
    assert sorted(p.external_id for p in got) == sorted(ids[1:3])
    stored = {r["Ref_Key"]: r["Date"] for r in fake.records(BANK)}
    assert stored[ids[1]] == "2026-03-01T03:00:00"  # Moscow time, no zone
    assert {p.date for p in got} == {SINCE, UNTIL - timedelta(seconds=1)}
    assert all(p.date.utcoffset() == timedelta(hours=3) for p in got)


def test_refunds_supplier_operations_unposted_and_deleted_are_not_payments(
    fake: FakeOneC, tmp_path: Path,
) -> None:
    c = fake.add_counterparty("ООО Ромашка", inn="7707083893")
    day = SINCE + timedelta(days=3)
    paid = fake.add_payment(c, 1000, day)
    cash = fake.add_payment(c, 250, day, cash=True)
    fake.add_payment(c, 300, day, operation="ВозвратОтПоставщика")
    fake.add_payment(c, 300, day, cash=True, operation="ВозвратОтПоставщика")
    fake.add_payment(c, 400, day, posted=False)
    fake.add_payment(c, 500, day, deleted=True)
    fake.add_payment(c, 600, day, cash=True, posted=False)
    got = flat(read(fake, tmp_path))
    assert {(p.external_id, p.document_kind, p.amount) for p in got} == {
        (paid, "bank_receipt", 1000.0), (cash, "cash_receipt", 250.0)}
    assert all(p.number and p.number.startswith("0000-") for p in got)


def test_the_composite_counterparty_is_read_and_other_kinds_of_payer_are_skipped(
    fake: FakeOneC, tmp_path: Path,
) -> None:
    c = fake.add_counterparty("Ромашка")
    day = SINCE + timedelta(days=1)
    mine = fake.add_payment(c, 10, day)
    fake.add_payment(c, 20, day, counterparty_type="Catalog_ФизическиеЛица")
    fake.add_payment("00000000-0000-0000-0000-000000000000", 30, day)
    [payment] = flat(read(fake, tmp_path))
    assert (payment.external_id, payment.client_key, payment.name) == (mine, c, "Ромашка")
    # a receipt has no Контрагент_Key: the fake refuses it as 1C does
    bad = httpx.get(fake.odata_url + "/" + BANK, auth=(USER, PASSWORD),
                    params={"$format": "json", "$filter": f"Контрагент_Key eq guid'{c}'"})
    assert bad.status_code == 400 and "odata.error" in bad.json()
    typed = httpx.get(fake.odata_url + "/" + BANK, auth=(USER, PASSWORD), params={
        "$format": "json", "$filter": f"Контрагент eq cast(guid'{c}','Catalog_Контрагенты')"})
    assert [r["Ref_Key"] for r in typed.json()["value"]] == [mine]


def test_phones_and_emails_come_from_presentation_when_the_fields_are_empty(
    fake: FakeOneC, tmp_path: Path,
) -> None:
    loose = fake.add_counterparty("Петров", phones=["8 (916) 555-11-22", "+7 916 555 33 44"],
                                  emails=["Петров <PETROV@EXAMPLE.RU>"])
    tidy = fake.add_counterparty("Сидоров", phones=["9165556677"], emails=["sid@example.ru"],
                                 structured=True)
    for c in (loose, tidy):
        fake.add_payment(c, 10, SINCE + timedelta(days=2))
    by_client = {p.client_key: p for p in flat(read(fake, tmp_path))}
    assert by_client[loose].phones == ("8 (916) 555-11-22", "+7 916 555 33 44")
    assert by_client[loose].emails == ("petrov@example.ru",)
    assert (by_client[tidy].phones, by_client[tidy].emails) == (("9165556677",), ("sid@example.ru",))


def test_a_base_whose_date_filters_fail_is_filtered_on_the_client(tmp_path: Path) -> None:
    with FakeOneC(username=USER, password=PASSWORD, date_filters_fail=True) as fake:
        c = fake.add_counterparty("Ромашка")
        dates = [SINCE - timedelta(days=2), SINCE + timedelta(days=1), SINCE + timedelta(days=2),
                 UNTIL + timedelta(days=1), UNTIL + timedelta(days=2)]
        ids = [fake.add_payment(c, 10, d) for d in dates]
        with pytest.raises(RetryableError, match="500"):
            read(fake, tmp_path, date_filter_mode="server")
        assert sorted(p.external_id for p in flat(read(fake, tmp_path, page_size=2))) == sorted(ids[1:3])
        r = reader(fake, tmp_path, date_filter_mode="client")
        fake.clear_records()
        assert sorted(p.external_id for page in r.payments(SINCE, UNTIL) for p in page) == sorted(ids[1:3])
        r.close()
        assert not any("datetime'" in (q.q("$filter") or "") for q in fake.requests)


def test_names_come_from_metadata_in_another_configuration(tmp_path: Path) -> None:
    with FakeOneC(username=USER, password=PASSWORD, configuration=LEGACY) as fake:
        c = fake.add_counterparty("Ромашка", inn="7707083893", phones=["8 (916) 123-00-01"])
        fake.add_payment(c, 10, SINCE + timedelta(days=1))
        [p] = flat(read(fake, tmp_path))
        assert (p.name, p.inn, p.phones) == ("Ромашка", "7707083893", ("8 (916) 123-00-01",))
        dest = destination(fake, tmp_path)
        reused, new = dest.deliver([item(1), item(2)])  # +79161230001 is c's phone
        dest.close()
        assert reused.error is None and new.error is None, (reused.error, new.error)
        orders = {o["Ref_Key"]: o for o in fake.records("Document_ЗаказПокупателя")}
        assert orders[str(reused.external_id)]["Контрагент_Key"] == c
        [created] = [r for r in fake.counterparties if r["Ref_Key"] != c]
        assert orders[str(new.external_id)]["Контрагент_Key"] == created["Ref_Key"]
        assert "[lh:2:onec_main]" in created["ДополнительнаяИнформация"]
        assert created["КонтактнаяИнформация"][0]["Представление"] == "+7 916 123-00-02"
        fake.assert_clean()


# ---------------------------------------------------------------- the destination


def test_a_lead_becomes_a_counterparty_with_contacts_and_an_order(fake: FakeOneC, tmp_path: Path) -> None:
    dest = destination(fake, tmp_path, post_orders=True)
    [out] = dest.deliver([item(7, company="ООО Вектор", fields={"inn": "7701234567"})])
    dest.close()
    assert out.error is None, out.error
    [cp] = fake.counterparties
    assert (cp["Description"], cp["ИНН"], cp["ЮридическоеФизическоеЛицо"]) == (
        "ООО Вектор", "7701234567", "ЮридическоеЛицо")
    rows = {(r["Тип"], r["Представление"], r.get("НомерТелефона") or r.get("АдресЭП"))
            for r in cp["КонтактнаяИнформация"]}
    assert rows == {("Телефон", "+7 916 123-00-07", "+79161230007"),
                    ("АдресЭлектроннойПочты", "ivan7@example.ru", "ivan7@example.ru")}
    [order] = fake.orders
    assert (order["Ref_Key"], order["Контрагент_Key"], order["Posted"]) == (
        out.external_id, cp["Ref_Key"], True)
    assert order["Комментарий"].startswith("LeadHub [lh:7:onec_main] [lha:att1]")
    assert "Поставка" in order["Комментарий"]


def test_an_existing_counterparty_is_reused_by_inn_or_by_phone(fake: FakeOneC, tmp_path: Path) -> None:
    by_inn = fake.add_counterparty("Вектор", inn="7701234567")
    by_phone = fake.add_counterparty("Иван", phones=["8 (916) 123-00-02"])
    gone = fake.add_counterparty("Старый", phones=["+7 916 123 00 03"], deleted=True)
    dest = destination(fake, tmp_path)
    outs = dest.deliver([item(1, fields={"inn": "7701234567"}), item(2), item(3)])
    dest.close()
    assert all(o.error is None for o in outs), [o.error for o in outs]
    owners = [o["Контрагент_Key"] for o in fake.orders]
    assert owners[:2] == [by_inn, by_phone]
    assert owners[2] not in (gone, by_inn, by_phone)  # a deleted one is not reused
    assert len(fake.counterparties) == 4


@pytest.mark.parametrize("lost", ["order", "counterparty"])
def test_a_push_retried_after_a_500_after_create_creates_nothing_new(
    fake: FakeOneC, tmp_path: Path, lost: str,
) -> None:
    # reuse off: the counterparty a lost attempt created is found by its marker alone
    dest = destination(fake, tmp_path, reuse_counterparties=False)
    path = ROOT + "/" + quote(ORDERS if lost == "order" else "Catalog_Контрагенты")
    with fake.faults(1.0, ("500",), after_ratio=1.0, methods=("POST",), paths=(path,)):
        [first] = dest.deliver([item(1)])
    assert isinstance(first.error, RetryableError) and first.error.uncertain
    assert len(fake.counterparties) == 1
    assert len(fake.orders) == (1 if lost == "order" else 0)
    again = item(1, uncertain=True, attempt="att2", previous="att1")
    found = dest.lookup(again)
    if lost == "order":
        assert found == fake.orders[0]["Ref_Key"]
        assert dest.lookup_many([again]) == {"d1": found}
    else:
        assert found is None
        [out] = dest.deliver([again])
        assert out.error is None and len(fake.orders) == 1
    dest.close()
    assert len(fake.counterparties) == 1 and len(fake.orders) == 1


def test_a_400_or_5xx_fails_its_lead_alone_and_a_refused_login_stops_the_batch(
    fake: FakeOneC, tmp_path: Path,
) -> None:
    dest = destination(fake, tmp_path)
    with fake.faults(1.0, ("400",), methods=("POST",)):
        outs = dest.deliver([item(1), item(2)])
    assert all(isinstance(o.error, PermanentError) for o in outs)
    with fake.faults(1.0, ("503",), after_ratio=0.0, methods=("POST",)):
        outs = dest.deliver([item(3), item(4)])
    dest.close()
    assert all(isinstance(o.error, RetryableError) for o in outs)
    assert len([r for r in fake.requests if r.method == "POST"]) == 4  # each lead was tried
    fake.clear_records()
    refused = destination(fake, tmp_path, password="not-it")
    outs = refused.deliver([item(5), item(6)])
    refused.close()
    assert all(isinstance(o.error, PermanentError) for o in outs) and len(fake.requests) == 1
    assert fake.counterparties == [] and fake.orders == []


# ---------------------------------------------------------------- the contract kits


class TestOneCKit(DestinationKit):
    connector = OneCDestination
    plugin_id = "onec"
    write_methods = ("POST",)
    write_paths = (ROOT + "/" + quote(ORDERS),)  # the order is the lead's record
    hang_s = 3.0

    def make_fake(self) -> FakeOneC:
        return FakeOneC(username=USER, password=PASSWORD)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url + ROOT, "username": USER, "password": PASSWORD, "timeout_s": 1}

    def created(self, hub: DestinationHub) -> int:
        assert isinstance(hub.fake, FakeOneC)
        return len(hub.fake.orders)


class TestOneCPaymentsKit(ReaderKit):
    connector = OneCPayments
    plugin_id = "onec"
    page_size = 3

    def make_fake(self) -> FakeOneC:
        return FakeOneC(username=USER, password=PASSWORD)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url + ROOT, "username": USER, "password": PASSWORD,
                "page_size": 3}

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        fake = place.fake
        assert isinstance(fake, FakeOneC)
        client = fake.add_counterparty("Kit", inn="7707083893")
        return [fake.add_payment(client, 100, d) for d in dates]

