"""The amocrm destination against FakeAmoCRM over real HTTP: deals, lookups, exactly-once
after uncertain failures, error mapping, OAuth rotation and notes for duplicates."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hub.connectors import ConnectorContext, DeliveryItem
from hub.errors import DestinationPaused, PermanentError, RateLimited, RetryableError
from hub.models import Lead
from hub.testing import serving
from plugins.amocrm import AmoCRMConfig, AmoCRMDestination
from plugins.amocrm.fields import MarkerFields
from plugins.amocrm.testing import FakeAmoCRM

TOKEN = "long-lived-token"
COMPLEX = "/api/v4/leads/complex"
NOTES = "/api/v4/leads/notes"
FIELDS = "/api/v4/leads/custom_fields"
LEADS = "/api/v4/leads"


def make_lead(n: int, **extra: Any) -> Lead:
    data: dict[str, Any] = {
        "id": f"01JD{n:04d}", "source": "site_form", "channel": "form",
        "received_at": datetime(2026, 11, 23, 18, 30, tzinfo=UTC),
        "contact": {"name": f"Иван {n}", "phones": [f"+7916123{n:04d}"],
                    "emails": [f"ivan{n}@example.ru"]},
        "message": "Перезвоните после 18:00", "product": "Data analyst course",
        "utm": {"source": "yandex", "medium": "cpc", "campaign": "spring"},
        "click_ids": {"yclid": "123", "ysclid": "abc"},
        "page_url": "https://example.ru/course?utm_source=yandex",
        "fields": {"formid": "form123"}, "assigned_to": "1001",
    }
    data.update(extra)
    return Lead.model_validate(data)


def item(n: int, **extra: Any) -> DeliveryItem:
    dup = extra.pop("duplicate_of_external_id", None)
    return DeliveryItem(f"d{n}", f"{n}:amo_main", make_lead(n, **extra),
                        duplicate_of_external_id=dup)


def destination(fake: FakeAmoCRM, data_dir: Path, **settings: Any) -> AmoCRMDestination:
    settings.setdefault("access_token", TOKEN)
    config = AmoCRMConfig(plugin="amocrm", base_url=fake.base_url, pipeline_id=7000001, **settings)
    return AmoCRMDestination(config, ConnectorContext("amo_main", data_dir))


@pytest.fixture
def fake() -> Iterator[FakeAmoCRM]:
    yield from serving(FakeAmoCRM(rate_limit=1000))


@pytest.fixture
def amo(fake: FakeAmoCRM, tmp_path: Path) -> Iterator[AmoCRMDestination]:
    dest = destination(fake, tmp_path)
    yield dest
    dest.close()


def by_name(entity: dict[str, Any], name: str) -> list[Any]:
    return [v["value"] for cf in entity["custom_fields_values"] or [] if cf["field_name"] == name
            for v in cf["values"]]


def values(entity: dict[str, Any], code: str) -> list[Any]:
    return [v["value"] for cf in entity["custom_fields_values"] or [] if cf["field_code"] == code
            for v in cf["values"]]


def test_a_batch_is_one_complex_call_with_a_deal_and_contact_each(
    fake: FakeAmoCRM, amo: AmoCRMDestination,
) -> None:
    items = [item(n) for n in range(3)]
    outcomes = amo.deliver(items)
    assert [o.error for o in outcomes] == [None] * 3
    assert len(fake.requests_to("POST", COMPLEX)) == 1
    assert len(fake.requests_to("POST", NOTES)) == 1  # the comments, all in one request
    # First use: the marker fields are looked up and created, once.
    assert len(fake.requests_to("GET", FIELDS)) == 1
    assert len(fake.requests_to("POST", FIELDS)) == 1
    by_marker = fake.leads_by_marker()
    for n, outcome in enumerate(outcomes):
        assert by_marker[f"lh:{n}:amo_main"] == [int(outcome.external_id or 0)]
        deal = next(d for d in fake.leads if d["id"] == int(outcome.external_id or 0))
        assert deal["name"] == f"Data analyst course — Иван {n}"
        assert (deal["pipeline_id"], deal["responsible_user_id"]) == (7000001, 1001)
        assert [t["name"] for t in deal["_embedded"]["tags"]] == ["leadhub"]  # a label only
        assert by_name(deal, "LeadHub key") == [f"lh:{n}:amo_main"]
        assert values(deal, "UTM_SOURCE") == ["yandex"] and values(deal, "YCLID") == ["123"]
        assert values(deal, "UTM_CAMPAIGN") == ["spring"]
        (contact,) = fake.contacts_of(deal["id"])
        assert contact["name"] == f"Иван {n}"
        assert values(contact, "PHONE") == [f"+7916123{n:04d}"]
        assert values(contact, "EMAIL") == [f"ivan{n}@example.ru"]
        (note,) = [x for x in fake.notes if x["entity_id"] == deal["id"]]
        assert "Перезвоните после 18:00" in note["params"]["text"]
        assert "ysclid: abc" in note["params"]["text"]


def test_with_a_comment_field_a_batch_costs_one_request(fake: FakeAmoCRM, tmp_path: Path) -> None:
    field_id = fake.account.add_field("leads", "Комментарий", "textarea")
    dest = destination(fake, tmp_path, comment_field_id=field_id)
    dest.marker_fields()  # first use only: found or created, then kept in data_dir
    fake.clear_records()
    outcomes = dest.deliver([item(n) for n in range(50)])
    assert all(o.external_id and o.error is None for o in outcomes)
    assert [r.path for r in fake.requests] == [COMPLEX]
    assert "Перезвоните" in by_name(fake.leads[0], "Комментарий")[0]
    assert dest.counts_own_requests  # each request takes a slot of the shared 7/s
    assert dest.effective_limits().requests_per_second == 7


def test_lookup_finds_a_delivered_lead_and_nothing_else(amo: AmoCRMDestination) -> None:
    (outcome,) = amo.deliver([item(1)])
    assert amo.lookup(item(1)) == outcome.external_id
    assert amo.lookup(item(2)) is None


def test_the_marker_can_live_in_the_admins_own_field(fake: FakeAmoCRM, tmp_path: Path) -> None:
    field_id = fake.account.add_field("leads", "Наш ключ", "text")
    amo = destination(fake, tmp_path, marker_field_id=field_id, tag="")
    (outcome,) = amo.deliver([item(1)])
    (deal,) = fake.leads
    assert deal["_embedded"]["tags"] == []
    assert by_name(deal, "Наш ключ") == ["lh:1:amo_main"]
    names = [f["name"] for f in fake.lead_fields()]
    assert "LeadHub key" not in names and names.count("LeadHub attempt") == 1
    assert amo.lookup(item(1)) == outcome.external_id


@pytest.mark.parametrize("kind", ["timeout", "500", "reset"])
def test_an_uncertain_failure_then_lookup_creates_no_second_deal(
    fake: FakeAmoCRM, tmp_path: Path, kind: str,
) -> None:
    amo = destination(fake, tmp_path, timeout_s=0.5)
    fake.faults(ratio=1.0, kinds=(kind,), after_ratio=1.0, hang_s=3, paths=[COMPLEX])
    with pytest.raises(RetryableError) as raised:
        amo.deliver([item(1)])
    assert raised.value.uncertain
    fake.no_faults()
    retry = item(1)
    retry.uncertain = True
    found = amo.lookup(retry)  # what the engine does before re-sending an uncertain item
    assert found is not None
    assert fake.leads_by_marker() == {"lh:1:amo_main": [int(found)]}
    assert len(fake.leads) == 1 and len(fake.contacts) == 1


def test_a_fault_before_the_effect_is_found_missing_and_delivered_once(
    fake: FakeAmoCRM, amo: AmoCRMDestination,
) -> None:
    fake.faults(ratio=1.0, kinds=("503",), after_ratio=0.0, paths=[COMPLEX])
    with pytest.raises(RetryableError):
        amo.deliver([item(1)])
    fake.no_faults()
    assert amo.lookup(item(1)) is None
    (outcome,) = amo.deliver([item(1)])
    assert fake.leads_by_marker() == {"lh:1:amo_main": [int(outcome.external_id or 0)]}


def test_429_is_rate_limited_with_retry_after(tmp_path: Path) -> None:
    with FakeAmoCRM(rate_limit=1, retry_after=2) as fake:
        amo = destination(fake, tmp_path, comment_field_id=None)
        assert amo.lookup(item(1)) is None
        with pytest.raises(RateLimited) as raised:
            amo.lookup(item(1))
        assert raised.value.retry_after == 2.0 and not raised.value.uncertain
        assert fake.count_429 == 1


def test_a_400_kills_only_the_invalid_lead_of_a_batch(
    fake: FakeAmoCRM, amo: AmoCRMDestination,
) -> None:
    fake.account.users = {1001}
    outcomes = amo.deliver([item(1), item(2, assigned_to="999"), item(3)])
    assert isinstance(outcomes[1].error, PermanentError)
    assert "responsible_user_id" in str(outcomes[1].error)
    assert isinstance(outcomes[0].error, RetryableError)  # nothing was created: send again
    assert not outcomes[0].error.uncertain and fake.leads == []
    again = amo.deliver([item(1), item(3)])
    assert all(o.external_id for o in again)


def test_a_400_for_the_whole_config_is_permanent(fake: FakeAmoCRM, tmp_path: Path) -> None:
    amo = destination(fake, tmp_path, status_id=55)
    (outcome,) = amo.deliver([item(1)])
    assert isinstance(outcome.error, PermanentError) and "status_id" in str(outcome.error)


def test_bad_credentials_and_unreachable_hosts_are_retryable(
    fake: FakeAmoCRM, tmp_path: Path,
) -> None:
    with pytest.raises(RetryableError) as raised:
        destination(fake, tmp_path, access_token="wrong").deliver([item(1)])
    assert "401" in str(raised.value) and not raised.value.uncertain
    config = AmoCRMConfig(plugin="amocrm", base_url="http://127.0.0.1:9", access_token=TOKEN)
    offline = AmoCRMDestination(config, ConnectorContext("amo_main", tmp_path))
    with pytest.raises(RetryableError) as raised:
        offline.deliver([item(1)])
    assert not raised.value.uncertain  # never left: safe to create on the next attempt


def test_oauth_refresh_rotates_and_persists_single_use_tokens(tmp_path: Path) -> None:
    with FakeAmoCRM(token=None, client_id="cid", refresh_token="rt-0", rate_limit=1000) as fake:
        oauth = {"access_token": None, "client_id": "cid", "client_secret": "secret",
                 "refresh_token": "rt-0", "redirect_uri": fake.redirect_uri}
        amo = destination(fake, tmp_path, **oauth)
        assert amo.deliver([item(1)])[0].external_id
        stored = json.loads((tmp_path / "amocrm" / "amo_main.json").read_text())
        assert stored["refresh_token"] != "rt-0"
        fake.expire_access_tokens()  # the next request gets 401: rotate once and resend
        assert amo.deliver([item(2)])[0].external_id
        rotated = json.loads((tmp_path / "amocrm" / "amo_main.json").read_text())
        assert rotated["refresh_token"] != stored["refresh_token"]
        assert fake.oauth_refreshes == 2
        amo.close()
        # A restarted worker still has "rt-0" in its config, long used: the file wins.
        restarted = destination(fake, tmp_path, **oauth)
        assert restarted.lookup(item(2)) is not None
        assert fake.oauth_refreshes == 2  # the stored access token was still good
        fake.expire_access_tokens()
        assert restarted.lookup(item(1)) is not None
        assert fake.oauth_refreshes == 3


def test_a_duplicate_becomes_a_note_on_the_existing_deal(
    fake: FakeAmoCRM, amo: AmoCRMDestination,
) -> None:
    (first,) = amo.deliver([item(1)])
    deal_id = first.external_id or ""
    fake.clear_records()
    dup = item(2, duplicate_of_external_id=deal_id, message="Ещё вопрос")
    (outcome,) = amo.deliver([dup])
    assert (outcome.external_id, outcome.error) == (deal_id, None)
    assert [r.path for r in fake.requests] == [NOTES]  # one request, no new deal
    assert len(fake.leads) == 1
    text = [n for n in fake.notes if n["entity_id"] == int(deal_id)][-1]["params"]["text"]
    assert "Повторное обращение" in text and "Ещё вопрос" in text and "lh:2:amo_main" in text
    assert amo.lookup(dup) == deal_id
    assert amo.lookup(item(3, duplicate_of_external_id=deal_id)) is None


def test_a_mixed_batch_costs_two_requests(fake: FakeAmoCRM, amo: AmoCRMDestination) -> None:
    (first,) = amo.deliver([item(1)])
    fake.clear_records()
    outcomes = amo.deliver([item(2), item(3, duplicate_of_external_id=first.external_id)])
    assert [o.error for o in outcomes] == [None, None]
    assert outcomes[1].external_id == first.external_id
    assert [r.path for r in fake.requests] == [COMPLEX, NOTES]


def test_config_needs_exactly_one_way_to_authenticate() -> None:
    base = {"plugin": "amocrm", "base_url": "https://example.amocrm.ru"}
    with pytest.raises(ValidationError, match="missing: client_id, client_secret"):
        AmoCRMConfig.model_validate(base)
    with pytest.raises(ValidationError, match="not both"):
        AmoCRMConfig.model_validate({**base, "access_token": "t", "client_id": "c"})
    with pytest.raises(ValidationError, match="missing: redirect_uri"):
        AmoCRMConfig.model_validate({**base, "client_id": "c", "client_secret": "s",
                                     "refresh_token": "r"})
    with pytest.raises(ValidationError, match="https://"):
        AmoCRMConfig.model_validate({**base, "base_url": "example.amocrm.ru", "access_token": "t"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        AmoCRMConfig.model_validate({**base, "access_token": "t", "pipline_id": 1})
    assert AmoCRMConfig.model_validate({**base, "access_token": "t"}).inn_field == "ИНН"


def test_chaos_every_lead_becomes_exactly_one_deal(tmp_path: Path) -> None:
    """An engine-like loop (look up what is uncertain, resend the rest) under random faults."""
    with FakeAmoCRM(rate_limit=1000) as fake:
        field_id = fake.account.add_field("leads", "Комментарий", "textarea")
        amo = destination(fake, tmp_path, timeout_s=0.3, comment_field_id=field_id)
        fake.faults(ratio=0.4, kinds=("500", "429", "timeout", "reset"), seed=4, hang_s=0.6)
        pending = {n: item(n) for n in range(20)}
        delivered: dict[int, str] = {}
        for _ in range(60):
            if not pending:
                break
            batch = list(pending.values())[:5]
            try:
                for it in [it for it in batch if it.uncertain]:
                    found = amo.lookup(it)
                    if found is not None:
                        delivered[int(it.delivery_id[1:])] = found
                        del pending[int(it.delivery_id[1:])]
                batch = [it for it in batch if int(it.delivery_id[1:]) in pending]
                outcomes = amo.deliver(batch) if batch else []
            except RetryableError as exc:
                for it in batch:
                    it.uncertain = it.uncertain or exc.uncertain
                continue
            for it, outcome in zip(batch, outcomes, strict=True):
                if outcome.external_id:
                    delivered[int(it.delivery_id[1:])] = outcome.external_id
                    del pending[int(it.delivery_id[1:])]
        assert not pending
        faults = [r.fault for r in fake.requests if r.fault]
        assert "timeout:after" in faults and "500:after" in faults
        assert {k: len(v) for k, v in fake.leads_by_marker().items()} == {
            f"lh:{n}:amo_main": 1 for n in range(20)}
        assert sorted(int(v) for v in delivered.values()) == sorted(d["id"] for d in fake.leads)
        amo.close()


def test_one_lookup_finds_every_deal_of_an_interrupted_batch(
    amo: AmoCRMDestination, fake: FakeAmoCRM
) -> None:
    batch = [item(n) for n in range(20)]
    for i in batch:
        i.attempt_id = "att1"
    outcomes = amo.deliver(batch)
    fake.clear_records()
    retry = [item(n) for n in range(25)]  # 5 of them were never sent
    for i in retry:
        i.uncertain, i.previous_attempt_id, i.attempt_id = True, "att1", "att2"
    found = amo.lookup_many(retry)
    assert found == {o.delivery_id: o.external_id for o in outcomes}
    assert len(fake.requests) == 1  # one GET for the whole batch
    for i in retry:
        i.previous_attempt_id = "other"
    assert amo.lookup_many(retry) == {}


# ---------------------------------------------------------------- finding deals by marker


def lookups(fake: FakeAmoCRM) -> list[str]:
    """The GETs on the leads list, as ``query``/``filter``/``page<n>``."""
    out = []
    for r in fake.requests_to("GET", LEADS):
        if "query" in r.query:
            out.append("query")
        elif any(k.startswith("filter[") for k in r.query):
            out.append("filter")
        else:
            out.append(f"page{r.q('page') or 1}")
    return out


def add_other_deals(fake: FakeAmoCRM, n: int) -> None:
    """Deals a manager made by hand, newer than LeadHub's (same second, higher ids)."""
    with fake.lock:
        for i in range(n):
            fake.account.create_lead({"name": f"Звонок {i}"}, [])


@pytest.mark.parametrize(("query_mode", "filter_mode", "expected"), [
    ("on", "on", ["query"]),
    ("rejected", "on", ["query", "filter"]),
    ("ignored", "on", ["query", "filter"]),
    ("rejected", "rejected", ["query", "filter", "page1"]),
    ("ignored", "ignored", ["query", "filter"]),  # the ignored filter's answer is page 1
    ("rejected", "ignored", ["query", "filter"]),
])
def test_every_fallback_finds_the_deal_and_nothing_is_created_twice(
    tmp_path: Path, query_mode: str, filter_mode: str, expected: list[str],
) -> None:
    with FakeAmoCRM(rate_limit=1000, query_mode=query_mode, filter_mode=filter_mode) as fake:
        amo = destination(fake, tmp_path)
        (first,) = amo.deliver([item(1)])
        add_other_deals(fake, 5)
        fake.clear_records()
        retry = item(1)
        retry.uncertain = True
        assert amo.lookup(retry) == first.external_id
        assert lookups(fake) == expected
        assert amo.lookup(item(2)) is None  # never sent: nothing found, nothing made up
        (second,) = amo.deliver([item(2)])
        assert amo.lookup(item(2)) == second.external_id
        assert {k: len(v) for k, v in fake.leads_by_marker().items()} == {
            "lh:1:amo_main": 1, "lh:2:amo_main": 1}
        # A refused way is not tried again for a while: one request per look-up again.
        fake.clear_records()
        amo.lookup(item(1))
        assert len(lookups(fake)) == 1
        amo.close()


def test_without_query_and_filter_the_newest_deals_are_read_page_by_page(
    tmp_path: Path,
) -> None:
    with FakeAmoCRM(rate_limit=1000, query_mode="ignored", filter_mode="ignored") as fake:
        amo = destination(fake, tmp_path)
        (first,) = amo.deliver([item(1)])
        add_other_deals(fake, 260)  # our deal is now on the second page of the newest
        fake.clear_records()
        assert amo.lookup(item(1)) == first.external_id
        assert lookups(fake) == ["query", "filter", "page2"]
        fake.clear_records()
        assert amo.lookup(item(7)) is None
        assert lookups(fake) == ["page1", "page2"]  # SCAN_PAGES, then it gives up
        amo.close()


def test_a_deal_lost_in_an_uncertain_batch_is_found_with_one_request(
    fake: FakeAmoCRM, tmp_path: Path,
) -> None:
    amo = destination(fake, tmp_path, timeout_s=0.5)
    batch = [item(n) for n in range(10)]
    for i in batch:
        i.attempt_id = "att7"
    fake.faults(ratio=1.0, kinds=("timeout",), after_ratio=1.0, hang_s=2, paths=[COMPLEX])
    with pytest.raises(RetryableError) as raised:
        amo.deliver(batch)
    assert raised.value.uncertain
    fake.no_faults()
    amo.close()
    fake.clear_records()
    restarted = destination(fake, tmp_path)  # another worker: field ids come from data_dir
    retry = [item(n) for n in range(10)]
    for i in retry:
        i.uncertain, i.previous_attempt_id, i.attempt_id = True, "att7", "att8"
    found = restarted.lookup_many(retry)
    assert len(fake.requests) == 1  # one GET for the whole batch
    assert sorted(found) == [f"d{n}" for n in range(10)]
    assert {int(v) for v in found.values()} == {d["id"] for d in fake.leads}
    restarted.close()


def test_the_lookup_needs_the_exact_field_value(fake: FakeAmoCRM, amo: AmoCRMDestination) -> None:
    amo.deliver([item(12)])
    with fake.lock:  # a deal whose name merely contains another lead's marker
        fake.account.create_lead({"name": "lh:1:amo_main (copy)"}, [])
    assert amo.lookup(item(1)) is None


def _start_and_deliver(base_url: str, data_dir: str, n: int) -> str | None:
    config = AmoCRMConfig(plugin="amocrm", base_url=base_url, access_token=TOKEN)
    dest = AmoCRMDestination(config, ConnectorContext("amo_main", Path(data_dir)))
    try:
        return dest.deliver([item(n)])[0].external_id
    finally:
        dest.close()


def test_two_processes_starting_together_create_each_field_once(
    fake: FakeAmoCRM, tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_start_and_deliver,
                               [(fake.base_url, str(tmp_path), n) for n in range(2)])
    assert all(results)
    names = [f["name"] for f in fake.lead_fields()]
    assert names.count("LeadHub key") == 1 and names.count("LeadHub attempt") == 1
    assert len(fake.requests_to("POST", FIELDS)) == 1
    stored = json.loads((tmp_path / "amocrm" / "amo_main.fields.json").read_text())
    assert set(stored["fields"]) == {"LeadHub key", "LeadHub attempt"}


def test_two_instances_starting_together_create_each_field_once(
    fake: FakeAmoCRM, tmp_path: Path,
) -> None:
    dests = [destination(fake, tmp_path) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda d: d[1].deliver([item(d[0])]), enumerate(dests)))
    assert all(o[0].external_id for o in outcomes)
    assert len(fake.requests_to("POST", FIELDS)) == 1
    assert len(fake.requests_to("GET", FIELDS)) == 1
    assert len({d.marker_fields() for d in dests}) == 1
    for d in dests:
        d.close()


def test_existing_fields_are_found_by_name_across_pages(fake: FakeAmoCRM, tmp_path: Path) -> None:
    for i in range(300):
        fake.account.add_field("leads", f"Поле {i}", "text")
    key = fake.account.add_field("leads", "LeadHub key", "text")
    attempt = fake.account.add_field("leads", "LeadHub attempt", "text")
    amo = destination(fake, tmp_path)
    assert amo.marker_fields() == MarkerFields(key=key, attempt=attempt)
    assert len(fake.requests_to("GET", FIELDS)) == 2  # 250 a page
    assert fake.requests_to("POST", FIELDS) == []


def test_a_deleted_field_is_found_or_created_again(fake: FakeAmoCRM, tmp_path: Path) -> None:
    amo = destination(fake, tmp_path)
    amo.deliver([item(1)])
    old = amo.marker_fields()
    with fake.lock:  # an admin deletes the field; amoCRM then rejects its id with a 400
        del fake.account.fields["leads"][old.key]
    (outcome,) = amo.deliver([item(2)])
    assert outcome.error is None and outcome.external_id
    new = amo.marker_fields()
    assert new.key != old.key and new.attempt == old.attempt
    stored = json.loads((tmp_path / "amocrm" / "amo_main.fields.json").read_text())
    assert stored["fields"]["LeadHub key"] == new.key
    other = destination(fake, tmp_path)  # another process reads the new id
    assert other.marker_fields() == new
    assert amo.lookup(item(2)) == outcome.external_id


def test_an_unknown_field_id_of_the_admin_stays_a_permanent_error(
    fake: FakeAmoCRM, tmp_path: Path,
) -> None:
    amo = destination(fake, tmp_path, marker_field_id=999)
    (outcome,) = amo.deliver([item(1)])
    assert isinstance(outcome.error, PermanentError) and "field_id" in str(outcome.error)
    assert fake.leads == []


# ---------------------------------------------------------------- 403


def test_403_account_blocked_pauses_the_destination(fake: FakeAmoCRM, amo: AmoCRMDestination) -> None:
    amo.marker_fields()
    fake.block(60)
    with pytest.raises(DestinationPaused) as raised:
        amo.deliver([item(1)])
    assert raised.value.pause_s == 300 and not raised.value.uncertain
    with pytest.raises(DestinationPaused):
        amo.lookup(item(1))
    fake.unblock()
    assert amo.deliver([item(1)])[0].external_id


def test_403_ip_not_allowed_stays_retryable(fake: FakeAmoCRM, amo: AmoCRMDestination) -> None:
    fake.deny_ip()
    with pytest.raises(RetryableError) as raised:
        amo.deliver([item(1)])
    assert not isinstance(raised.value, DestinationPaused)
    assert "113" in str(raised.value)


def test_a_client_over_the_limit_gets_blocked_and_paused(tmp_path: Path) -> None:
    with FakeAmoCRM(rate_limit=1, auto_block_after_429s=3) as fake:
        amo = destination(fake, tmp_path, marker_field_id=1, attempt_field_id=2)
        amo.lookup(item(1))
        for _ in range(3):
            with pytest.raises(RateLimited):
                amo.lookup(item(1))
        with pytest.raises(DestinationPaused):
            amo.lookup(item(1))


@pytest.mark.parametrize(("query_mode", "filter_mode", "expected"), [
    ("rejected", "on", ["query", "filter"]),
    ("ignored", "ignored", ["query", "filter"]),
    ("rejected", "rejected", ["query", "filter", "page1"]),
])
def test_lookup_many_falls_back_too(
    tmp_path: Path, query_mode: str, filter_mode: str, expected: list[str],
) -> None:
    with FakeAmoCRM(rate_limit=1000, query_mode=query_mode, filter_mode=filter_mode) as fake:
        amo = destination(fake, tmp_path)
        batch = [item(n) for n in range(5)]
        for i in batch:
            i.attempt_id = "att3"
        outcomes = amo.deliver(batch)
        add_other_deals(fake, 3)
        fake.clear_records()
        retry = [item(n) for n in range(6)]
        for i in retry:
            i.uncertain, i.previous_attempt_id = True, "att3"
        assert amo.lookup_many(retry) == {o.delivery_id: o.external_id for o in outcomes}
        assert lookups(fake) == expected
        amo.close()
