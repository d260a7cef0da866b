"""The amoCRM CRM reader against the strict fake amoCRM: won deals per client, paged to the
end, the window and the pipelines honoured, clients fetched in batches, and amoCRM's 7
requests/s kept through the hub's shared limiter (real Redis), as a reconcile run reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import ConnectorContext
from hub.runtime import Runtime, build_runtime
from hub.sdk import WonDeal
from hub.testing.kits import ReaderKit
from hub.testing.kits.reader import ReaderPlace
from plugins.amocrm.plugin import AmoCRMConfig
from plugins.amocrm.reader import AmoCRMReader
from plugins.amocrm.testing import FakeAmoCRM
from tests.conftest import ConfigWriter

TOKEN = "reader-token"
SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
MID = SINCE + timedelta(days=10)


class TestAmoCRMReaderKit(ReaderKit):
    """The reader contract (``hub.testing.kits.ReaderKit``). The kit builds the reader with
    no limiter, so a burst may meet the fake's 429: the reader waits it out."""

    connector = AmoCRMReader
    page_size = 250

    def make_fake(self) -> FakeAmoCRM:
        return FakeAmoCRM(token=TOKEN)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "access_token": TOKEN, "timeout_s": 5}

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        fake = place.fake
        assert isinstance(fake, FakeAmoCRM)
        clients = [fake.add_contact(f"Client {i}", phones=[f"+7916555{i:04d}"]) for i in range(5)]
        return [str(fake.add_won_deal(f"Deal {i}", 1000, closed_at=d, contact_ids=[clients[i % 5]]))
                for i, d in enumerate(dates)]


@pytest.fixture
def amo_rt(write_config: ConfigWriter, tmp_path: Path, redis_url: str,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeAmoCRM, Runtime]]:
    """The fake amoCRM (its real 7 requests/s) and a runtime whose ``[destinations.amo]``
    the reader is built from, sharing the destination's limiter in Redis."""
    monkeypatch.setenv("LEADHUB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADHUB_REDIS_URL", redis_url)
    with FakeAmoCRM(token=TOKEN) as fake:
        rt = build_runtime(write_config(f"""
            [destinations.amo]
            plugin = "amocrm"
            base_url = "{fake.base_url}"
            access_token = "{TOKEN}"
            timeout_s = 5
        """))
        try:
            yield fake, rt
        finally:
            rt.close()
        fake.assert_clean()


def reader_of(rt: Runtime) -> AmoCRMReader:
    reader = rt.crm_reader("amo")
    assert isinstance(reader, AmoCRMReader)
    return reader


def read(reader: AmoCRMReader, pipelines: list[int] | None = None) -> list[list[WonDeal]]:
    return [list(page) for page in reader.won_deals(SINCE, UNTIL, pipelines or ())]


def test_many_deals_page_to_the_end_with_clients_in_batches_and_no_429(
    amo_rt: tuple[FakeAmoCRM, Runtime],
) -> None:
    fake, rt = amo_rt
    second = fake.add_pipeline("Опт")
    seeded = []
    for i in range(520):  # 3 pages of 250; each deal its own contact, every 4th a company
        company = fake.add_company(f"Компания {i}", inn=f"77{i:08d}") if i % 4 == 0 else None
        contact = fake.add_contact(f"Клиент {i}", phones=[f"+7 916 {i:07d}"])
        seeded.append(fake.add_won_deal(f"Сделка {i}", 100 + i, closed_at=MID + timedelta(minutes=i),
                                        contact_ids=[contact], company_id=company,
                                        pipeline_id=second if i % 2 else None))
    reader = reader_of(rt)
    pages = read(reader)
    got = [d.external_id for page in pages for d in page]
    assert sorted(got) == sorted(map(str, seeded)) and len(got) == len(set(got))
    assert len(pages) == 3

    leads = fake.requests_to("GET", "/api/v4/leads")
    contacts = fake.requests_to("GET", "/api/v4/contacts")
    companies = fake.requests_to("GET", "/api/v4/companies")
    assert len(leads) == 3 and [r.q("page") for r in leads] == ["1", "2", "3"]
    assert len(contacts) == 3 + 3 + 1  # 250, 250 and 20 contacts, 100 ids a request
    assert len(companies) == 3  # 63, 62 and 5 companies
    assert all(int(r.q("limit") or 50) <= 250 for r in fake.requests)
    assert fake.answered(429) == 0, "the reader went over amoCRM's 7 requests/s"

    by_id = {d.external_id: d for page in pages for d in page}
    first = by_id[str(seeded[0])]
    assert first.client_key.startswith("company:") and first.inn == "7700000000"
    assert first.name == "Компания 0" and first.phones == ("+7 916 0000000",)  # its contact's
    one = by_id[str(seeded[1])]
    assert one.client_key.startswith("contact:") and one.name == "Клиент 1" and one.inn is None
    assert (one.amount, one.date, one.pipeline, one.status) == (
        101.0, MID + timedelta(minutes=1), str(second), "142")


def test_the_window_is_since_inclusive_until_exclusive_and_only_won_deals_count(
    amo_rt: tuple[FakeAmoCRM, Runtime],
) -> None:
    fake, rt = amo_rt
    at = {name: fake.add_won_deal(name, 10, phone="+79160000001", closed_at=when)
          for name, when in (("before", SINCE - timedelta(seconds=1)), ("since", SINCE),
                             ("last", UNTIL - timedelta(seconds=1)), ("until", UNTIL))}
    fake.add_won_deal("lost", 10, phone="+79160000001", closed_at=MID, status_id=143)
    fake.add_won_deal("open", 10, phone="+79160000001", closed_at=MID,
                      status_id=fake.account.status_ids(fake.account.main_pipeline())[1])
    got = {d.external_id for page in read(reader_of(rt)) for d in page}
    assert got == {str(at["since"]), str(at["last"])}
    sent = fake.requests_to("GET", "/api/v4/leads")[0]
    assert sent.q("filter[closed_at][from]") == str(int(SINCE.timestamp()))
    assert sent.q("filter[statuses][0][status_id]") == "142"


def test_every_pipeline_or_only_the_jobs_pipelines(amo_rt: tuple[FakeAmoCRM, Runtime]) -> None:
    fake, rt = amo_rt
    main, wholesale = fake.account.main_pipeline(), fake.add_pipeline("Опт")
    retail = fake.add_won_deal("retail", 10, email="a@example.org", closed_at=MID)
    bulk = fake.add_won_deal("bulk", 20, email="b@example.org", closed_at=MID, pipeline_id=wholesale)
    reader = reader_of(rt)
    assert {d.external_id for p in read(reader) for d in p} == {str(retail), str(bulk)}
    assert len(fake.requests_to("GET", "/api/v4/leads/pipelines")) == 1
    sent = fake.requests_to("GET", "/api/v4/leads")[0]
    assert {sent.q("filter[statuses][0][pipeline_id]"), sent.q("filter[statuses][1][pipeline_id]")} \
        == {str(main), str(wholesale)}
    assert [d.external_id for p in read(reader, [wholesale]) for d in p] == [str(bulk)]
    assert len(fake.requests_to("GET", "/api/v4/leads/pipelines")) == 1  # given: not listed


def test_no_won_deals_is_a_204_and_an_empty_read(amo_rt: tuple[FakeAmoCRM, Runtime]) -> None:
    fake, rt = amo_rt
    fake.add_won_deal("old", 10, phone="+79160000001", closed_at=SINCE - timedelta(days=3))
    pages = read(reader_of(rt))
    assert [d for p in pages for d in p] == []
    assert fake.answered(204) == 1 and fake.requests_to("GET", "/api/v4/contacts") == []


def test_clients_company_first_inn_field_by_name_or_id_main_contact(tmp_path: Path) -> None:
    with FakeAmoCRM(token=TOKEN) as fake:
        tax = fake.add_company("ООО «Вектор»", inn="7707083893", phones=["8 (495) 111-22-33"],
                               emails=["office@vector.ru"], inn_field="ИНН организации")
        boss = fake.add_contact("Пётр", phones=["+7 916 000-00-01"], emails=["PETR@vector.ru"])
        clerk = fake.add_contact("Анна", phones=["+7 916 000-00-02"])
        d1 = fake.add_won_deal("Поставка 1", 1000, closed_at=MID, contact_ids=[boss, clerk],
                               company_id=tax)
        d2 = fake.add_won_deal("Поставка 2", 500, closed_at=MID, contact_ids=[clerk],
                               company_id=tax)
        d3 = fake.add_won_deal("Разовая", 70, closed_at=MID, contact_ids=[clerk])
        d4 = fake.add_won_deal("Без клиента", 5, closed_at=MID)
        by_name = AmoCRMReader(AmoCRMConfig(plugin="amocrm", base_url=fake.base_url,
                                            access_token=TOKEN, inn_field="инн организации"),
                               ConnectorContext(name="amo", data_dir=tmp_path))
        deals = {d.external_id: d for p in by_name.won_deals(SINCE, UNTIL) for d in p}
        by_name.close()
        first, second, third, fourth = (deals[str(d)] for d in (d1, d2, d3, d4))
        assert first.client_key == second.client_key == f"company:{tax}"
        assert first.inn == "7707083893" and first.name == "ООО «Вектор»"
        assert first.phones == ("8 (495) 111-22-33", "+7 916 000-00-01")  # company's, main contact's
        assert first.emails == ("office@vector.ru", "PETR@vector.ru")
        assert second.phones == ("8 (495) 111-22-33", "+7 916 000-00-02")
        assert third.client_key == f"contact:{clerk}" and third.name == "Анна" and third.inn is None
        assert fourth.client_key == f"lead:{d4}" and fourth.name is None and fourth.title == "Без клиента"
        assert len(fake.requests_to("GET", "/api/v4/companies")) == 1

        field_id = next(f.id for f in fake.account.fields["companies"].values()
                        if f.name == "ИНН организации")
        by_id = AmoCRMReader(AmoCRMConfig(plugin="amocrm", base_url=fake.base_url,
                                          access_token=TOKEN, inn_field=str(field_id)),
                             ConnectorContext(name="amo", data_dir=tmp_path))
        assert next(d.inn for p in by_id.won_deals(SINCE, UNTIL) for d in p
                    if d.external_id == str(d1)) == "7707083893"
        by_default = AmoCRMReader(AmoCRMConfig(plugin="amocrm", base_url=fake.base_url,
                                               access_token=TOKEN),
                                  ConnectorContext(name="amo", data_dir=tmp_path))
        assert next(d.inn for p in by_default.won_deals(SINCE, UNTIL) for d in p
                    if d.external_id == str(d1)) is None  # no field "ИНН" holds it
        by_id.close()
        by_default.close()


def test_an_account_without_filtering_is_still_read_right(tmp_path: Path) -> None:
    """Filtering is an alpha feature of some accounts; others ignore it and list all."""
    with FakeAmoCRM(token=TOKEN, filter_mode="ignored", rate_limit=1000) as fake:
        won = fake.add_won_deal("won", 10, phone="+79160000001", closed_at=MID)
        fake.add_won_deal("lost", 10, phone="+79160000002", closed_at=MID, status_id=143)
        fake.add_won_deal("old", 10, phone="+79160000003", closed_at=SINCE - timedelta(days=1))
        reader = AmoCRMReader(AmoCRMConfig(plugin="amocrm", base_url=fake.base_url,
                                           access_token=TOKEN),
                              ConnectorContext(name="amo", data_dir=tmp_path))
        [deal] = [d for p in reader.won_deals(SINCE, UNTIL) for d in p]
        reader.close()
        assert deal.external_id == str(won) and deal.phones == ("+79160000001",)
        assert len(fake.requests_to("GET", f"/api/v4/contacts/{deal.client_key[8:]}")) == 1


def test_a_429_on_a_read_is_waited_out(tmp_path: Path) -> None:
    """Without the hub's limiter (another integration spent the budget): wait, go on."""
    with FakeAmoCRM(token=TOKEN, rate_limit=1, retry_after=1) as fake:
        for i in range(3):
            fake.add_won_deal(f"d{i}", 10, phone=f"+7916000000{i}", closed_at=MID)
        reader = AmoCRMReader(AmoCRMConfig(plugin="amocrm", base_url=fake.base_url,
                                           access_token=TOKEN),
                              ConnectorContext(name="amo", data_dir=tmp_path))
        assert len([d for p in reader.won_deals(SINCE, UNTIL) for d in p]) == 3
        reader.close()
        assert fake.answered(429) >= 1


def test_the_fake_refuses_what_amocrm_refuses() -> None:
    with FakeAmoCRM(token=TOKEN, rate_limit=1000) as fake, httpx.Client(
            base_url=fake.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        fake.add_won_deal("w", 10, phone="+79160000001", closed_at=MID)
        no_pipeline = http.get("/api/v4/leads", params={"filter[statuses][0][status_id]": "142"})
        assert no_pipeline.status_code == 400
        assert no_pipeline.headers["content-type"].startswith("application/problem+json")
        bad_date = http.get("/api/v4/leads", params={"filter[closed_at][from]": "2026-03-01"})
        assert bad_date.status_code == 400
        assert http.get("/api/v4/companies", params={"limit": "251"}).status_code == 400
        assert http.get("/api/v4/companies").status_code == 204  # none yet: no content
        assert http.get("/api/v4/contacts/1").status_code == 204
        [pipeline] = http.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"]
        assert {142, 143} <= {s["id"] for s in pipeline["_embedded"]["statuses"]}
