"""The ``businessru`` plugin against the strict fake Business.Ru: signatures both ways (a
tampered answer refused), token repair on 401, the 503 limit answer raised or waited
out, paging to the end, the date window honoured, customer payments only, and a push
that stays exactly once after an ambiguous create. The contract kits run the destination
through the hub's engine and the reader through its paging checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.connectors import ConnectorContext
from hub.models import Contact, Lead
from hub.sdk import DeliveryItem, PermanentError, RateLimited, RetryableError
from hub.testing.kits import DestinationKit, ReaderKit
from hub.testing.kits.destination import DestinationHub
from hub.testing.kits.reader import ReaderPlace
from plugins.businessru.client import SignatureMismatch, md5, signed_query
from plugins.businessru.php import http_build_query, json_encode, ksort, nulls_to_empty, parse_str
from plugins.businessru.plugin import (
    BusinessRuConfig,
    BusinessRuDestination,
    BusinessRuPayments,
    order_number,
)
from plugins.businessru.testing import FakeBusinessRu

APP_ID = "123456"
SECRET = "kitSecretKitSecretKitSecret01234"  # 32 characters, as Business.Ru issues them
SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)


def settings(base_url: str, **more: Any) -> dict[str, Any]:
    return {"base_url": base_url, "app_id": APP_ID, "secret": SECRET, "timeout_s": 2, **more}


def build(cls: Any, fake: FakeBusinessRu, tmp_path: Path, **more: Any) -> Any:
    config = BusinessRuConfig.model_validate({"plugin": "businessru", **settings(fake.base_url, **more)})
    return cls(config, ConnectorContext(name="bru", data_dir=tmp_path))


@pytest.fixture
def fake() -> Iterator[FakeBusinessRu]:
    with FakeBusinessRu(APP_ID, SECRET) as server:
        yield server
        server.assert_clean()


def item(key: str = "key-1", *, phones: tuple[str, ...] = ("+79161112233",),
         emails: tuple[str, ...] = (), name: str = "Ivan", inn: str | None = None) -> DeliveryItem:
    lead = Lead(id=f"lead-{key}", source="site", channel="form", received_at=datetime.now(UTC),
                contact=Contact(name=name, phones=list(phones), emails=list(emails)),
                fields={"inn": inn} if inn else {})
    return DeliveryItem(delivery_id=f"d-{key}", idempotency_key=key, lead=lead)


# ---------------------------------------------------------------- PHP encodings


def test_query_is_built_as_php_http_build_query() -> None:
    """Byte for byte what PHP builds: the expected string is a public Business.Ru
    integration's test of the same rule (nested keys encoded, null → "", space → +)."""
    params = nulls_to_empty(ksort({"z": "a b", "app_id": 7, "filter": {"ids": [2, 4]}, "empty": None}))
    assert http_build_query(params) == (
        "app_id=7&empty=&filter%5Bids%5D%5B0%5D=2&filter%5Bids%5D%5B1%5D=4&z=a+b")
    assert http_build_query({"updated": {"from": "18.06.2024 15:04"}, "t": "~"}) == (
        "updated%5Bfrom%5D=18.06.2024+15%3A04&t=%7E")
    assert list(ksort({"b": 1, "10": 1, "9": 1, "a": 1})) == ["9", "10", "a", "b"]
    assert parse_str("updated%5Bfrom%5D=18.06.2024+15%3A04&a%5B%5D=1&a%5B%5D=2") == {
        "updated": {"from": "18.06.2024 15:04"}, "a": {"0": "1", "1": "2"}}


def test_json_is_encoded_as_php_json_encode() -> None:
    assert json_encode({"url": "https://x/y", "name": "Ромашка", "e": {}, "l": {"0": "a", "1": "b"},
                        "sum": 10.0, "n": None}) == (
        '{"url":"https:\\/\\/x\\/y","name":"\\u0420\\u043e\\u043c\\u0430\\u0448\\u043a\\u0430",'
        '"e":[],"l":["a","b"],"sum":10.0,"n":null}')


# ---------------------------------------------------------------- signatures both ways


def test_requests_signed_otherwise_are_refused(fake: FakeBusinessRu, tmp_path: Path) -> None:
    reader = build(BusinessRuPayments, fake, tmp_path)
    token = reader.client().token()
    good = signed_query({"limit": 1}, APP_ID, token, SECRET)
    with httpx.Client(base_url=fake.base_url) as http:
        assert http.get(f"/api/rest/partners.json?{good}").status_code == 200
        bad = good.rsplit("=", 1)[0] + "=" + md5("nope")
        assert http.get(f"/api/rest/partners.json?{bad}").status_code == 401
        # the same parameters, signed but not ksort-ed: the server's rebuilt string differs
        query = f"limit=1&app_id={APP_ID}"
        unsorted = f"{query}&app_psw={md5(token + SECRET + query)}"
        assert http.get(f"/api/rest/partners.json?{unsorted}").status_code == 401
        # signed with the secret but no token (only repair.json takes that)
        query = f"app_id={APP_ID}"
        assert http.get(f"/api/rest/partners.json?{query}&app_psw={md5(SECRET + query)}").status_code == 401
    reader.close()


def test_a_tampered_answer_is_refused(fake: FakeBusinessRu, tmp_path: Path) -> None:
    fake.add_partner("Client")
    client = build(BusinessRuPayments, fake, tmp_path).client()
    assert client.request("GET", "partners")["result"]
    fake.tamper(1)
    with pytest.raises(SignatureMismatch) as caught:
        client.request("GET", "partners")
    assert not caught.value.uncertain  # a read changed nothing
    fake.tamper(1)
    with pytest.raises(SignatureMismatch) as caught:
        client.request("POST", "partners", {"name": "New"})
    assert caught.value.uncertain  # the partner may exist now: look it up before creating
    assert len(fake.partners) == 2
    client.close()


def test_a_wrong_secret_is_permanent(fake: FakeBusinessRu, tmp_path: Path) -> None:
    config = BusinessRuConfig.model_validate(
        {"plugin": "businessru", **settings(fake.base_url, secret="x" * 32)})
    reader = BusinessRuPayments(config, ConnectorContext(name="bru", data_dir=tmp_path))
    with pytest.raises(PermanentError):
        reader.client().request("GET", "partners")
    reader.close()


def test_an_expired_token_is_repaired_once(fake: FakeBusinessRu, tmp_path: Path) -> None:
    client = build(BusinessRuPayments, fake, tmp_path).client()
    client.request("GET", "partners")
    assert (client.repairs, fake.tokens_issued) == (1, 1)
    client.request("GET", "partners")
    assert client.repairs == 1, "the token is kept until a 401"
    fake.expire_token()
    client.request("GET", "partners")
    assert (client.repairs, fake.answered(401)) == (2, 1)
    client.close()


def test_processes_share_one_token(fake: FakeBusinessRu, tmp_path: Path) -> None:
    """As the SDK's file cache: a second client (another worker process, same data_dir)
    takes the token the first obtained; answered 401 because another repaired meanwhile,
    it takes the newer token from the file instead of repairing again."""
    first = build(BusinessRuDestination, fake, tmp_path).client()
    second = build(BusinessRuPayments, fake, tmp_path).client()
    first.request("GET", "partners")
    second.request("GET", "partners")
    assert (first.repairs, second.repairs, fake.tokens_issued) == (1, 0, 1)
    fake.expire_token()
    first.request("GET", "partners")  # 401, repaired, written
    second.request("GET", "partners")  # 401, takes the file's token
    assert (first.repairs, second.repairs, fake.tokens_issued) == (2, 0, 2)
    assert fake.answered(401) == 2
    [stored] = (tmp_path / "businessru").glob("*.token")
    assert stored.stat().st_mode & 0o077 == 0, "the token file is readable by others"
    first.close()
    second.close()


# ---------------------------------------------------------------- the 503 limit


def test_the_limit_answer_is_rate_limited_for_the_destination(tmp_path: Path) -> None:
    with FakeBusinessRu(APP_ID, SECRET, limit=2, window_s=60) as fake:
        client = build(BusinessRuDestination, fake, tmp_path).client()
        client.request("GET", "partners")  # repair + this one use the two
        with pytest.raises(RateLimited) as caught:
            client.request("GET", "partners")
        assert caught.value.retry_after == 30.0  # the SDK's sleep; no Retry-After was sent
        client.close()
    with FakeBusinessRu(APP_ID, SECRET, limit=2, window_s=60, retry_after="7") as fake:
        client = build(BusinessRuDestination, fake, tmp_path).client()
        client.request("GET", "partners")
        with pytest.raises(RateLimited) as caught:
            client.request("GET", "partners")
        assert caught.value.retry_after == 7.0
        client.close()


def test_the_reader_waits_the_limit_out(tmp_path: Path) -> None:
    with FakeBusinessRu(APP_ID, SECRET, limit=3, window_s=0.5) as fake:
        partner = fake.add_partner("Client", phones=("+79160000001",))
        ids = [fake.add_payment(partner, 100, SINCE + timedelta(hours=i)) for i in range(12)]
        reader = build(BusinessRuPayments, fake, tmp_path, page_size=2, limit_wait_s=0.2, limit_waits=50)
        read = [p.external_id for page in reader.payments(SINCE, UNTIL) for p in page]
        reader.close()
        assert sorted(read) == sorted(f"bank_receipt:{i}" for i in ids)
        assert fake.answered(503) > 0, "the fake's limit was never reached: nothing was waited out"


# ---------------------------------------------------------------- the reader


class TestBusinessRuReaderKit(ReaderKit):
    """The reader contract: paging to the end, [since, until) honoured to the second
    although Business.Ru filters by the minute."""

    connector = BusinessRuPayments
    page_size = 5

    def make_fake(self) -> FakeBusinessRu:
        return FakeBusinessRu(APP_ID, SECRET)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return settings(base_url, page_size=self.page_size)

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        fake = place.fake
        assert isinstance(fake, FakeBusinessRu)
        partners = [fake.add_partner(f"Client {i}") for i in range(3)]
        return [f"bank_receipt:{fake.add_payment(partners[i % 3], 1000, d)}" for i, d in enumerate(dates)]


def test_only_customer_payments_are_read(fake: FakeBusinessRu, tmp_path: Path) -> None:
    """Bank and cash receipts from customers, with the partner's name, INN, phones and
    emails; no supplier refund, no planned, unposted or deleted document."""
    client = fake.add_partner("ООО Ромашка", inn="7701234567", phones=("8 (916) 123-45-67",),
                              emails=("INFO@ROMASHKA.RU",))
    day = SINCE + timedelta(days=3)
    bank = fake.add_payment(client, 1500.5, day, number="17")
    cash = fake.add_payment(client, 300, day, model="cashin")
    fake.add_payment(client, 900, day, operation="supplier_refund")
    fake.add_payment(client, 900, day, model="cashin", operation="supplier_refund")
    fake.add_payment(client, 900, day, payment_type=1)
    fake.add_payment(client, 900, day, held=False)
    fake.add_payment(client, 900, day, deleted=True)
    fake.add_payment(client, 900, day, model="cashin", deleted=True)
    reader = build(BusinessRuPayments, fake, tmp_path)
    payments = [p for page in reader.payments(SINCE, UNTIL) for p in page]
    reader.close()
    assert sorted(p.external_id for p in payments) == sorted([f"bank_receipt:{bank}", f"cash_receipt:{cash}"])
    first = next(p for p in payments if p.document_kind == "bank_receipt")
    assert (first.client_key, first.amount, first.name, first.inn, first.number) == (
        client, 1500.5, "ООО Ромашка", "7701234567", "17")
    assert first.phones == ("8 (916) 123-45-67",) and first.emails == ("INFO@ROMASHKA.RU",)
    assert first.date == day


def test_filters_are_dd_mm_yyyy_in_moscow_time(fake: FakeBusinessRu, tmp_path: Path) -> None:
    reader = build(BusinessRuPayments, fake, tmp_path)
    list(reader.payments(datetime(2026, 3, 1, 21, 30, 15, tzinfo=UTC), UNTIL))
    reader.close()
    [first] = [r for r in fake.requests if r.path == "/api/rest/paymentin.json"]
    assert first.q("date[from]") == "02.03.2026 00:30"  # UTC+3, by the minute
    assert first.q("date[to]") == "01.04.2026 03:01"


# ---------------------------------------------------------------- the destination


class TestBusinessRuDestinationKit(DestinationKit):
    """The delivery contract through the hub's engine: a retry after a lost answer (500 or
    timeout after the fake applied it) creates no second order or partner. The kit's
    faults strike the order's POST (the record it counts); lost answers to the partner's
    and contacts' POSTs are ``test_an_ambiguous_create_is_looked_up_not_repeated``."""

    connector = BusinessRuDestination
    write_paths = ("/api/rest/customerorders.json",)
    hang_s = 3.0

    def make_fake(self) -> FakeBusinessRu:
        return FakeBusinessRu(APP_ID, SECRET)

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return settings(base_url, timeout_s=1)

    def test_a_5xx_is_retried(self, kit_hub: DestinationHub) -> None:
        """The kit's check with a 502: Business.Ru's 503 is its limit answer, a
        ``RateLimited`` the whole destination waits 30 s for (tests above), not an error."""
        fake = self.need_fake(kit_hub)
        before = self.created(kit_hub)
        [lead] = self.post_leads(kit_hub, 1)
        with fake.faults(1.0, ("502",), after_ratio=0.0, methods=self.write_methods,
                         paths=self.write_paths):
            self.run_engine(kit_hub)
        [row] = self.deliveries(kit_hub, [lead])
        assert row.status == "failed", (row.status, row.last_error)
        self.run_engine(kit_hub, at=time.time() + 86400 / 4)
        [row] = self.deliveries(kit_hub, [lead])
        assert row.status == "delivered", (row.status, row.last_error)
        assert self.created(kit_hub) == before + 1

    def created(self, hub: DestinationHub) -> int:
        fake = hub.fake
        assert isinstance(fake, FakeBusinessRu)
        orders = fake.orders
        partners = {o["partner_id"] for o in orders}
        assert len(partners) == len(orders), "an order's partner was created twice or shared"
        return len(orders)


def test_a_lead_becomes_a_partner_and_an_order(fake: FakeBusinessRu, tmp_path: Path) -> None:
    dest = build(BusinessRuDestination, fake, tmp_path, organization_id=5)
    [outcome] = dest.deliver([item(emails=("ivan@example.com",), inn="7701234567")])
    assert outcome.error is None and outcome.external_id
    [partner] = fake.partners
    assert (partner["name"], partner["inn"]) == ("Ivan", "7701234567")
    assert sorted((c["contact_info_type_id"], c["contact_info"]) for c in fake.contacts) == [
        ("1", "+79161112233"), ("4", "ivan@example.com")]
    [order] = fake.orders
    assert (order["id"], order["partner_id"], order["organization_id"]) == (
        outcome.external_id, partner["id"], "5")
    assert order["number"] == order_number(item())
    dest.close()


def test_a_known_partner_is_found_by_phone_email_or_inn(fake: FakeBusinessRu, tmp_path: Path) -> None:
    by_phone = fake.add_partner("A", phones=("+79160000001",))
    by_email = fake.add_partner("B", emails=("b@example.com",))
    by_inn = fake.add_partner("C", inn="500100732259")
    dest = build(BusinessRuDestination, fake, tmp_path)
    outcomes = dest.deliver([item("k1", phones=("+79160000001",))])
    outcomes += dest.deliver([item("k2", phones=(), emails=("b@example.com",))])
    outcomes += dest.deliver([item("k3", phones=("+79160000003",), inn="500100732259")])
    assert [o.error for o in outcomes] == [None] * 3
    assert [o["partner_id"] for o in fake.orders] == [by_phone, by_email, by_inn]
    assert len(fake.partners) == 3
    dest.close()


@pytest.mark.parametrize("model", ["partners", "partnercontactinfo", "customerorders"])
def test_an_ambiguous_create_is_looked_up_not_repeated(
    fake: FakeBusinessRu, tmp_path: Path, model: str,
) -> None:
    """The answer to one POST fails its signature (the SDK's ``auth:1``): the record may
    exist. The retry, as the engine makes it (``lookup`` first, then ``deliver`` with
    ``uncertain``), finds what the first attempt made and creates nothing twice."""
    dest = build(BusinessRuDestination, fake, tmp_path)
    lead = item("amb", emails=("ivan@example.com",))
    before = len(fake.requests_to("POST", f"/api/rest/{model}.json"))
    original = fake._signed

    def tamper_on(body: dict[str, Any], token: str) -> Any:  # the one answer to a POST on `model`
        last = fake.requests[-1] if fake.requests else None
        if last and last.method == "POST" and last.path == f"/api/rest/{model}.json":
            fake._tamper = 1
        return original(body, token)

    fake._signed = tamper_on  # type: ignore[method-assign]
    [outcome] = dest.deliver([lead])
    fake._signed = original  # type: ignore[method-assign]
    assert isinstance(outcome.error, RetryableError) and outcome.error.uncertain
    assert len(fake.requests_to("POST", f"/api/rest/{model}.json")) > before
    existing = dest.lookup(lead)
    if model == "customerorders":
        assert existing == fake.orders[0]["id"]
        return  # the engine takes the found order as delivered
    assert existing is None
    lead.uncertain = True
    [again] = dest.deliver([lead])
    assert again.error is None, again.error
    assert (len(fake.partners), len(fake.orders)) == (1, 1)
    assert len(fake.contacts) == 2
    assert dest.deliver([lead])[0].external_id == again.external_id  # a third try: still one
    assert len(fake.orders) == 1
    dest.close()
