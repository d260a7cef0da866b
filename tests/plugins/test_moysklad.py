"""The ``moysklad`` plugin against ``FakeMoySklad`` over real HTTP (issue 10, Must show 4).

The contract kits run first (delivery through the engine, reading to the end); then what
is MoySklad's own: Bearer auth and its 401 body, gzip or 415, the per-token budget with
its headers (measured at the fake: no 429 storm), 5 parallel requests, the auto-ban,
kopecks and Moscow time, refunds and unposted documents left out, exactly once by
``syncId``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from hub.connectors import ConnectorContext, DeliveryItem
from hub.engine.limiter import RateLimiter
from hub.errors import DestinationPaused, RateLimited, RetryableError
from hub.models import Contact, Lead
from hub.testing.kits.destination import DestinationHub, DestinationKit
from hub.testing.kits.reader import ReaderKit, ReaderPlace
from plugins.moysklad.formats import MOSCOW, from_moscow, sync_id, to_moscow
from plugins.moysklad.plugin import MoySkladConfig, MoySkladDestination, MoySkladPayments, rate_for
from plugins.moysklad.testing import FakeMoySklad
from plugins.moysklad.testing.fake import BUDGET_UNITS, PERIOD_S, PREFIX

SOLUTION = "solution-token"  # a published solution's token: 45 requests per 3 s
USER = "user-token"  # a user token from 01.12.2026: 4 units a request, 11 per 3 s
GZIP = {"Accept-Encoding": "gzip"}


def fake_with(**kw: Any) -> FakeMoySklad:
    fake = FakeMoySklad(tokens={SOLUTION: 1, USER: 4}, **kw)
    fake.add_organization("ООО Ромашка")
    return fake


def settings(fake: FakeMoySklad, token: str = SOLUTION, **kw: Any) -> dict[str, Any]:
    budget = 45 if token == SOLUTION else 11
    return {"plugin": "moysklad", "base_url": fake.api_url, "token": token, "timeout_s": 2,
            "requests_per_3s": budget, **kw}


def connector(cls: Any, fake: FakeMoySklad, tmp_path: Path, *, context: ConnectorContext | None = None,
              **kw: Any) -> Any:
    config = MoySkladConfig.model_validate(settings(fake, **kw))
    return cls(config, context or ConnectorContext(name=f"ms-{id(fake)}", data_dir=tmp_path))


def item(key: str, phone: str | None = "+79161234567", email: str | None = None,
         name: str = "Иван Петров", company: str | None = None) -> DeliveryItem:
    lead = Lead(id=f"lead-{key}", source="site_form", channel="form", received_at=datetime.now(UTC),
                contact=Contact(name=name, phones=[phone] if phone else [],
                                emails=[email] if email else []),
                company=company, message="Хочу опт")
    return DeliveryItem(delivery_id=f"d-{key}", idempotency_key=f"key-{key}", lead=lead)


@pytest.fixture
def fake() -> Iterator[FakeMoySklad]:
    with fake_with() as server:
        yield server
        server.assert_clean()


# ---------------------------------------------------------------- the contract kits


class TestMoySkladDestinationKit(DestinationKit):
    connector = MoySkladDestination
    # the order is the record the kit counts; its faults strike the order's POST (the
    # counterparty's own resend is test_a_resend_creates_nothing_new's)
    write_paths = (PREFIX + "/entity/customerorder",)

    def make_fake(self) -> FakeMoySklad:
        return fake_with()

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url + PREFIX, "token": SOLUTION, "timeout_s": 1,
                "requests_per_3s": 45}

    def created(self, hub: DestinationHub) -> int:
        assert isinstance(hub.fake, FakeMoySklad)
        return len(hub.fake.entities("customerorder"))


class TestMoySkladPaymentsKit(ReaderKit):
    connector = MoySkladPayments
    page_size = 100  # expand=agent is only honoured with limit ≤ 100

    def make_fake(self) -> FakeMoySklad:
        return fake_with()

    def settings_for(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url + PREFIX, "token": SOLUTION}

    def seed(self, place: ReaderPlace, dates: list[datetime]) -> list[str]:
        fake = place.fake
        assert isinstance(fake, FakeMoySklad)
        client = fake.add_counterparty("ООО Клиент", inn="7701234567", phone="+7 916 000-00-01")
        return [fake.add_payment(client, 100_00 + i, d, kind=("paymentin", "cashin")[i % 2])
                for i, d in enumerate(dates)]


# ---------------------------------------------------------------- auth and gzip


def test_a_wrong_token_gets_401_with_moysklad_errors_and_is_retried(
        fake: FakeMoySklad, tmp_path: Path) -> None:
    r = httpx.get(fake.api_url + "/entity/counterparty", headers={**GZIP, "Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.headers["content-encoding"] == "gzip"
    assert [e["code"] for e in r.json()["errors"]] == [1056]
    dest = connector(MoySkladDestination, fake, tmp_path, token="wrong-token")
    try:
        with pytest.raises(RetryableError, match="401") as caught:
            dest.deliver([item("a")])
        assert not isinstance(caught.value, RateLimited) and not caught.value.uncertain
        assert "wrong-token" not in str(caught.value)
        reader = connector(MoySkladPayments, fake, tmp_path, token="wrong-token")
        with pytest.raises(RetryableError, match="401"):
            list(reader.payments(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)))
    finally:
        dest.close()
    assert fake.entities("customerorder") == []


def test_the_fake_answers_415_with_an_empty_body_without_gzip(fake: FakeMoySklad, tmp_path: Path) -> None:
    """MoySklad refuses a request that does not offer gzip, even with a good token: the
    fake must too, or a plugin forgetting the header would pass here and fail there."""
    auth = {"Authorization": f"Bearer {SOLUTION}"}
    for encoding in ("identity", "deflate", "br", "gzip;q=0"):
        r = httpx.get(fake.api_url + "/entity/counterparty", headers={**auth, "Accept-Encoding": encoding})
        assert (r.status_code, r.content) == (415, b""), encoding
    assert fake.answered(415) == 4
    r = httpx.get(fake.api_url + "/entity/counterparty", headers={**auth, **GZIP})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    # the plugin always offers gzip (and only gzip)
    fake.clear_records()
    dest = connector(MoySkladDestination, fake, tmp_path)
    try:
        dest.deliver([item("g")])
    finally:
        dest.close()
    assert fake.requests and all(q.headers.get("accept-encoding") == "gzip" for q in fake.requests)


# ---------------------------------------------------------------- limits


@pytest.fixture
def limited_context(redis_url: str, tmp_path: Path) -> Iterator[tuple[ConnectorContext, list[Any]]]:
    """A context whose request slots come from the hub's real limiter (on Redis), at the
    rate the destination declares, as a worker's would."""
    conn = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(conn)
    made: list[Any] = []

    def slot() -> Any:
        limits = made[0].effective_limits()
        return limiter.slot("ms", limits.requests_per_second, limits.burst)

    yield ConnectorContext(name="ms-limited", data_dir=tmp_path, request_slot=slot), made
    conn.close()


def units_in_busiest_window(fake: FakeMoySklad, weight: int) -> int:
    times = sorted(r.time for r in fake.requests)
    return max(sum(weight for u in times if s <= u < s + PERIOD_S) for s in times)


def test_a_user_tokens_budget_of_11_per_3s_is_kept_without_429(
        limited_context: tuple[ConnectorContext, list[Any]], tmp_path: Path) -> None:
    context, made = limited_context
    with fake_with(latency_s=0.05) as fake:
        dest = connector(MoySkladDestination, fake, tmp_path, token=USER, context=context)
        made.append(dest)
        assert dest.effective_limits().requests_per_second == pytest.approx(rate_for(11))
        try:
            for batch in range(2):  # 2 × (10 look-ups + 2 creates) + 1: over two periods
                dest.deliver([item(f"b{batch}-{i}", phone=f"+7916555{batch}{i:03d}") for i in range(10)])
        finally:
            dest.close()
        assert len(fake.requests) == 25
        assert fake.answered(429) == 0, "the fake answered 429"
        assert units_in_busiest_window(fake, 4) <= BUDGET_UNITS
        assert len(fake.entities("customerorder")) == 20


def test_the_plugin_slows_down_when_the_headers_say_the_budget_is_spent(
        fake: FakeMoySklad, tmp_path: Path) -> None:
    """Another integration on the same token spent the period's budget: the plugin reads
    X-RateLimit-Remaining and waits for X-Lognex-Reset instead of meeting 429s."""
    client = fake.add_counterparty("ООО Клиент", phone="+79160000001")
    for i in range(250):
        fake.add_payment(client, 1000, datetime(2026, 3, 2, tzinfo=UTC) + timedelta(minutes=i))
    auth = {**GZIP, "Authorization": f"Bearer {SOLUTION}"}
    with httpx.Client() as other:
        for _ in range(BUDGET_UNITS - 3):
            assert other.get(fake.api_url + "/entity/organization", headers=auth).status_code == 200
    reader = connector(MoySkladPayments, fake, tmp_path)
    try:
        pages = list(reader.payments(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)))
        assert sum(len(p) for p in pages) == 250
        assert reader.client().budget.waits >= 1
    finally:
        reader.close()
    assert fake.answered(429) == 0


def test_a_429_is_waited_out_as_x_lognex_retry_after_says(fake: FakeMoySklad, tmp_path: Path) -> None:
    """Over the budget anyway: 429 with code 1049 and X-Lognex-Retry-After in ms; a read
    waits that long and goes on; a write's 429 reaches the engine as RateLimited."""
    auth = {**GZIP, "Authorization": f"Bearer {SOLUTION}"}
    with httpx.Client() as other:
        for _ in range(BUDGET_UNITS):
            other.get(fake.api_url + "/entity/organization", headers=auth)
        r = other.get(fake.api_url + "/entity/organization", headers=auth)
    assert r.status_code == 429 and [e["code"] for e in r.json()["errors"]] == [1049]
    assert 0 < int(r.headers["x-lognex-retry-after"]) <= PERIOD_S * 1000 + 1
    assert r.headers["x-ratelimit-remaining"] == "0"
    dest = connector(MoySkladDestination, fake, tmp_path)
    try:
        with pytest.raises(RateLimited) as caught:
            dest.client().post("/entity/counterparty", {"name": "X"})
        assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= PERIOD_S
        reader = connector(MoySkladPayments, fake, tmp_path)
        assert list(reader.payments(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)))
    finally:
        dest.close()
    assert fake.answered(429) <= 3, "the reader kept knocking instead of waiting"
    assert fake.entities("counterparty") == []


def test_more_than_5_parallel_requests_get_1073_and_the_plugin_sends_at_most_5(tmp_path: Path) -> None:
    with fake_with(latency_s=0.3) as fake:
        auth = {**GZIP, "Authorization": f"Bearer {SOLUTION}"}
        answers: list[httpx.Response] = []

        def raw() -> None:
            answers.append(httpx.get(fake.api_url + "/entity/organization", headers=auth, timeout=5))

        threads = [threading.Thread(target=raw) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused = [r for r in answers if r.status_code == 429]
        assert refused and all(r.json()["errors"][0]["code"] == 1073 for r in refused)
        fake.max_parallel_seen = 0
        time.sleep(PERIOD_S)  # a fresh period
        fake.clear_records()
        dest = connector(MoySkladDestination, fake, tmp_path)
        try:
            threads = [threading.Thread(target=dest.client().get, args=("/entity/organization",))
                       for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            dest.close()
        assert fake.max_parallel_seen <= 5 and fake.answered(429) == 0


def test_the_auto_ban_pauses_the_destination(tmp_path: Path) -> None:
    """Too many 429s in a minute and MoySklad disables the user's API access; the plugin
    stops sending (a pause) rather than adding failures."""
    with FakeMoySklad(tokens={"heavy": BUDGET_UNITS}, auto_ban=True, ban_after=3) as fake:
        auth = {**GZIP, "Authorization": "Bearer heavy"}
        statuses = [httpx.get(fake.api_url + "/entity/organization", headers=auth).status_code
                    for _ in range(6)]
        assert statuses[:5] == [200, 429, 429, 429, 429] and statuses[5] == 403
        dest = connector(MoySkladDestination, fake, tmp_path, token="heavy")
        try:
            with pytest.raises(DestinationPaused) as caught:
                dest.deliver([item("ban")])
            assert caught.value.pause_s >= 3600
        finally:
            dest.close()


# ---------------------------------------------------------------- formats and paging


def test_kopecks_and_moscow_time(fake: FakeMoySklad, tmp_path: Path) -> None:
    """[since, until) is UTC; MoySklad's moments are Moscow time without a zone. A
    receipt at 01:30 MSK on 1 March is 22:30 UTC on 28 February: outside; one at 02:30 MSK
    on 1 April is 23:30 UTC on 31 March: inside."""
    client = fake.add_counterparty("ООО Опт", inn="7701234567", phone="8 (916) 123-45-67",
                                   email="Buh@Opt.RU")
    before = fake.add_payment(client, 1_234_550, datetime(2026, 3, 1, 1, 30, tzinfo=MOSCOW))
    inside = fake.add_payment(client, 1_234_550, datetime(2026, 4, 1, 2, 30, tzinfo=MOSCOW))
    r = httpx.get(fake.api_url + f"/entity/paymentin/{inside}",
                  headers={**GZIP, "Authorization": f"Bearer {SOLUTION}"})
    assert r.json()["moment"] == "2026-04-01 02:30:00.000" and r.json()["sum"] == 1_234_550
    reader = connector(MoySkladPayments, fake, tmp_path)
    try:
        [payment] = [p for page in reader.payments(datetime(2026, 3, 1, tzinfo=UTC),
                                                   datetime(2026, 4, 1, tzinfo=UTC)) for p in page]
    finally:
        reader.close()
    assert payment.external_id == inside != before
    assert payment.amount == 12345.50
    assert payment.date == datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert (payment.name, payment.inn, payment.phones, payment.emails) == (
        "ООО Опт", "7701234567", ("+79161234567",), ("buh@opt.ru",))
    assert payment.client_key == f"counterparty:{client}" and payment.document_kind == "bank_receipt"
    sent = next(q for q in fake.requests if q.path.endswith("/entity/paymentin"))
    assert sent.q("filter") == "moment>=2026-03-01 03:00:00;moment<2026-04-01 03:00:00;applicable=true"
    assert to_moscow(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01 03:00:00"
    assert from_moscow("2026-01-01 03:00:00.000") == datetime(2026, 1, 1, tzinfo=UTC)


def test_refunds_unposted_deleted_and_own_transfers_are_not_payments(
        fake: FakeMoySklad, tmp_path: Path) -> None:
    client = fake.add_counterparty("ИП Сидоров", phone="+79160000002")
    org = next(iter(fake.account.entities["organization"]))
    day = datetime(2026, 3, 10, 12, tzinfo=UTC)
    paid = {fake.add_payment(client, 500_00, day), fake.add_payment(client, 700_00, day, kind="cashin")}
    fake.add_payment(client, 100_00, day, kind="paymentout")  # a refund
    fake.add_payment(client, 100_00, day, kind="cashout")
    fake.add_payment(client, 100_00, day, applicable=False)  # not posted
    fake.add_payment(client, 100_00, day, kind="cashin", deleted=True)  # in the trash
    fake.add_payment(org, 100_00, day, agent_type="organization")  # between our own accounts
    fake.add_payment(client, 100_00, day, purchase_return=True)  # a supplier's refund
    reader = connector(MoySkladPayments, fake, tmp_path)
    try:
        found = [p for page in reader.payments(datetime(2026, 3, 1, tzinfo=UTC),
                                               datetime(2026, 4, 1, tzinfo=UTC)) for p in page]
    finally:
        reader.close()
    assert {p.external_id for p in found} == paid
    assert sorted(p.document_kind or "" for p in found) == ["bank_receipt", "cash_receipt"]


def test_lists_are_strict_about_limit_expand_and_arrays(fake: FakeMoySklad) -> None:
    auth = {**GZIP, "Authorization": f"Bearer {SOLUTION}"}
    client = fake.add_counterparty("ООО Клиент")
    fake.add_payment(client, 100, datetime(2026, 3, 1, tzinfo=UTC))
    url = fake.api_url + "/entity/paymentin"
    assert httpx.get(url, params={"limit": 1001}, headers=auth).status_code == 400
    big = httpx.get(url, params={"limit": 1000, "expand": "agent"}, headers=auth).json()
    assert "name" not in big["rows"][0]["agent"], "expand must be ignored over limit 100"
    small = httpx.get(url, params={"limit": 100, "expand": "agent"}, headers=auth).json()
    assert small["rows"][0]["agent"]["name"] == "ООО Клиент"
    r = httpx.post(fake.api_url + "/entity/counterparty", headers=auth,
                   json=[{"name": f"c{i}"} for i in range(1001)])
    assert r.status_code == 413 and r.json()["errors"][0]["code"] == 2007
    assert len(fake.entities("counterparty")) == 1


# ---------------------------------------------------------------- exactly once


def test_a_resend_creates_nothing_new(fake: FakeMoySklad, tmp_path: Path) -> None:
    """syncId: the same request again returns what the first one made, whatever the
    look-up finds; an existing counterparty is reused. (``phone~`` is a literal substring:
    a phone typed "8 (916) 765-43-21" is not found by its digits, so its person would get a
    counterparty of LeadHub's; that one, on a resend, is found or returned by syncId.)"""
    known = fake.add_counterparty("Пётр", phone="89167654321")
    fake.add_counterparty("Не тот", phone="+7 (916) 765-43-21")  # not found by phone~
    dest = connector(MoySkladDestination, fake, tmp_path)
    items = [item("x", phone="+79161112233"), item("y", phone=None, email="a@b.ru"),
             item("z", phone="+79167654321")]
    try:
        first = dest.deliver(items)
        assert all(o.error is None and o.external_id for o in first), first
        counts = (len(fake.entities("counterparty")), len(fake.entities("customerorder")))
        assert counts == (4, 3)  # two new counterparties, "Пётр" reused
        again = dest.deliver(items)
        # a counterparty the look-up cannot find (no phone, email case kept) comes back by syncId
        body = dest.counterparty_body(items[1], sync_id(items[1].idempotency_key, "counterparty"))
        twice = dest.client().post("/entity/counterparty", [body, body])
    finally:
        dest.close()
    assert [o.external_id for o in again] == [o.external_id for o in first]
    assert (len(fake.entities("counterparty")), len(fake.entities("customerorder"))) == counts
    assert twice[0]["id"] == twice[1]["id"]
    orders = fake.entities("customerorder")
    assert any(o["agent"]["meta"]["href"].endswith(known) for o in orders)
    assert all(o["organization"]["meta"]["type"] == "organization" for o in orders)
