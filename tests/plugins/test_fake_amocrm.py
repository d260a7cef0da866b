"""The fakes behave like the real services: FakeServer's strictness and faults, FakeAmoCRM's
auth, limits and shapes from shared/reference/destinations.md §1 — over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from hub.testing import FakeServer, RecordedRequest, Response
from plugins.amocrm.testing import FakeAmoCRM

TOKEN = "long-lived-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def amo() -> Iterator[FakeAmoCRM]:
    with FakeAmoCRM(rate_limit=1000) as fake:
        yield fake


@pytest.fixture
def http(amo: FakeAmoCRM) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=amo.base_url, headers=AUTH, timeout=5) as client:
        yield client


def complex_lead(rid: str, **extra: Any) -> dict[str, Any]:
    lead: dict[str, Any] = {
        "name": f"Deal {rid}", "request_id": rid,
        "custom_fields_values": [{"field_code": "UTM_SOURCE", "values": [{"value": "yandex"}]}],
        "_embedded": {
            "tags": [{"name": f"lh:{rid}"}],
            "contacts": [{"name": "Иван", "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]},
            ]}],
        },
    }
    lead.update(extra)
    return lead


# ---------------------------------------------------------------- FakeServer


class Echo(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[Any] = []
        self.add_route("POST", "/things", self._create)
        self.add_route("GET", "/things/{id}", self._get)

    def _create(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        self.created.append(request.json())
        return Response.json({"id": len(self.created)}, 201)

    def _get(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        return Response.json({"id": params["id"], "q": request.q("q")})


def test_records_requests_and_fails_on_unexpected_ones() -> None:
    with Echo() as fake:
        assert httpx.post(f"{fake.base_url}/things", json={"a": 1}).status_code == 201
        got = httpx.get(f"{fake.base_url}/things/7?q=x").json()
        assert got == {"id": "7", "q": "x"}
        fake.assert_clean()
        assert httpx.delete(f"{fake.base_url}/things/7").status_code == 404
        with pytest.raises(AssertionError, match="DELETE /things/7"):
            fake.assert_clean()
        first = fake.requests[0]
        assert (first.method, first.path, first.json()) == ("POST", "/things", {"a": 1})
        assert first.headers["content-type"] == "application/json"


def test_fault_before_the_effect_changes_nothing_after_applies_it() -> None:
    with Echo() as fake:
        fake.faults(ratio=1.0, kinds=("500",), after_ratio=0.0)
        assert httpx.post(f"{fake.base_url}/things", json={}).status_code == 500
        assert fake.created == []
        fake.faults(ratio=1.0, kinds=("500",), after_ratio=1.0)
        assert httpx.post(f"{fake.base_url}/things", json={}).status_code == 500
        assert len(fake.created) == 1  # the effect happened, the answer was lost
        assert fake.requests[-1].fault == "500:after"
        fake.no_faults()
        assert httpx.post(f"{fake.base_url}/things", json={}).status_code == 201
        with fake.faults(ratio=1.0, kinds=("429",)):
            assert httpx.post(f"{fake.base_url}/things", json={}).status_code == 429
        assert httpx.post(f"{fake.base_url}/things", json={}).status_code == 201
        assert len(fake.created) == 3


def test_timeout_fault_outlasts_the_client_and_stop_releases_it() -> None:
    fake = Echo().start()
    fake.faults(ratio=1.0, kinds=("timeout",), after_ratio=1.0, hang_s=30)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fake.base_url}/things", json={}, timeout=0.3)
    assert len(fake.created) == 1
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 5


def test_faults_are_reproducible_with_a_seed() -> None:
    def run() -> list[str | None]:
        with Echo() as fake:
            fake.faults(ratio=0.5, kinds=("500", "429"), seed=42)
            with httpx.Client(base_url=fake.base_url) as client:
                for _ in range(30):
                    client.post("/things", json={})
            return [r.fault for r in fake.requests]

    first = run()
    assert first == run()
    assert 5 < sum(f is not None for f in first) < 25


def test_serves_concurrent_clients() -> None:
    with Echo() as fake:
        def burst(_: int) -> list[int]:
            with httpx.Client(base_url=fake.base_url) as client:
                return [client.post("/things", json={}).status_code for _ in range(50)]

        with ThreadPoolExecutor(8) as pool:
            codes = [c for batch in pool.map(burst, range(8)) for c in batch]
        assert codes == [201] * 400
        assert len(fake.created) == 400


# ---------------------------------------------------------------- FakeAmoCRM


def test_401_problem_json_without_or_with_a_wrong_token(amo: FakeAmoCRM) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(f"{amo.base_url}/api/v4/leads", headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 401


def test_429_with_a_non_json_body_beyond_7_requests_per_second() -> None:
    with FakeAmoCRM() as amo, httpx.Client(base_url=amo.base_url, headers=AUTH) as http:
        codes = [http.get("/api/v4/leads/pipelines") for _ in range(12)]
        assert [r.status_code for r in codes] == [200] * 7 + [429] * 5
        with pytest.raises(json.JSONDecodeError):
            json.loads(codes[-1].text)
        assert amo.count_429 == 5
        time.sleep(1.05)  # the window slides
        assert http.get("/api/v4/leads/pipelines").status_code == 200


def test_empty_lists_are_204_with_an_empty_body(http: httpx.Client) -> None:
    for path in ("/api/v4/leads", "/api/v4/contacts?query=79990000000", "/api/v4/leads?query=x"):
        r = http.get(path)
        assert (r.status_code, r.content) == (204, b"")


def test_complex_answers_a_bare_array_and_stores_the_deal(
    amo: FakeAmoCRM, http: httpx.Client,
) -> None:
    r = http.post("/api/v4/leads/complex", json=[complex_lead("a"), complex_lead("b")])
    assert r.status_code == 200
    answer = r.json()
    assert isinstance(answer, list)
    assert [row["request_id"] for row in answer] == [["a"], ["b"]]
    assert all(row["merged"] is False and row["contact_id"] for row in answer)
    found = http.get("/api/v4/leads", params={"query": "Deal a", "with": "contacts"})
    assert found.headers["content-type"] == "application/hal+json"
    (lead,) = found.json()["_embedded"]["leads"]
    assert lead["id"] == answer[0]["id"]
    assert lead["_embedded"]["contacts"][0]["id"] == answer[0]["contact_id"]
    assert lead["custom_fields_values"][0]["field_code"] == "UTM_SOURCE"
    contacts = http.get("/api/v4/contacts", params={"query": "79161234567"}).json()
    assert len(contacts["_embedded"]["contacts"]) == 2
    amo.assert_clean()


def test_complex_validation_errors_create_nothing(amo: FakeAmoCRM, http: httpx.Client) -> None:
    too_many = http.post("/api/v4/leads/complex", json=[complex_lead(str(i)) for i in range(51)])
    assert too_many.status_code == 400
    assert too_many.headers["content-type"] == "application/problem+json"
    assert "validation-errors" in too_many.json()
    two_contacts = complex_lead("x")
    two_contacts["_embedded"]["contacts"] *= 2
    bad_code = complex_lead("y", custom_fields_values=[
        {"field_code": "UTM_NOPE", "values": [{"value": "1"}]}])
    r = http.post("/api/v4/leads/complex", json=[complex_lead("ok"), two_contacts, bad_code])
    assert r.status_code == 400
    body = r.json()
    assert (body["title"], body["status"], body["detail"]) == (
        "Bad Request", 400, "Request validation failed")
    entries = {e["request_id"]: e["errors"] for e in body["validation-errors"]}
    assert set(entries) == {"x", "y"}
    assert entries["y"][0]["path"] == "custom_fields_values.0.field_code"
    assert amo.leads == [] and amo.contacts == []


def test_pagination_filters_and_won_deals(amo: FakeAmoCRM, http: httpx.Client) -> None:
    now = int(time.time())
    for i in range(7):
        amo.add_won_deal(f"Won {i}", 1000 * i, phone=f"+7916000000{i}", closed_at=now - i * 86400)
    http.post("/api/v4/leads/complex", json=[complex_lead("open")])
    params = {"filter[statuses][0][pipeline_id]": "7000001",
              "filter[statuses][0][status_id]": "142",
              "filter[closed_at][from]": str(now - 5 * 86400 - 10),
              "limit": "2", "with": "contacts"}
    pages, url = [], "/api/v4/leads"
    query: dict[str, str] | None = params
    while True:
        r = http.get(url, params=query)
        assert r.status_code == 200
        body = r.json()
        pages.append([lead["name"] for lead in body["_embedded"]["leads"]])
        assert body["_page"] == len(pages)
        if "next" not in body["_links"]:
            break
        url, query = body["_links"]["next"]["href"], None
    assert pages == [["Won 0", "Won 1"], ["Won 2", "Won 3"], ["Won 4", "Won 5"]]
    assert http.get("/api/v4/leads", params={**params, "page": "4"}).status_code == 204
    assert http.get("/api/v4/leads", params={"limit": "251"}).status_code == 400
    assert http.get("/api/v4/leads/pipelines").json()["_embedded"]["pipelines"][0]["id"] == 7000001


def test_notes_and_leads_for_an_existing_contact(amo: FakeAmoCRM, http: httpx.Client) -> None:
    (row,) = http.post("/api/v4/leads/complex", json=[complex_lead("n")]).json()
    r = http.post("/api/v4/leads", json=[{"name": "Again", "_embedded": {
        "contacts": [{"id": row["contact_id"], "is_main": True}]}}])
    assert r.json()["_embedded"]["leads"][0]["request_id"] == "0"
    note = [{"entity_id": row["id"], "note_type": "common", "params": {"text": "hello"}}]
    assert http.post("/api/v4/leads/notes", json=note).status_code == 200
    assert http.post("/api/v4/leads/notes", json=[{**note[0], "entity_id": 1}]).status_code == 400
    listed = http.get(f"/api/v4/leads/{row['id']}/notes", params={"filter[note_type]": "common"})
    assert listed.json()["_embedded"]["notes"][0]["params"]["text"] == "hello"
    assert [n["entity_id"] for n in amo.notes] == [row["id"]]


def test_oauth_refresh_tokens_are_single_use() -> None:
    with FakeAmoCRM(token=None, client_id="cid", refresh_token="rt-0") as amo:
        grant = {"client_id": "cid", "client_secret": "secret", "grant_type": "refresh_token",
                 "refresh_token": "rt-0", "redirect_uri": amo.redirect_uri}
        first = httpx.post(f"{amo.base_url}/oauth2/access_token", json=grant)
        assert first.status_code == 200
        tokens = first.json()
        assert tokens["refresh_token"] != "rt-0" and tokens["token_type"] == "Bearer"
        again = httpx.post(f"{amo.base_url}/oauth2/access_token", json=grant)
        assert again.status_code == 400
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert httpx.get(f"{amo.base_url}/api/v4/leads", headers=headers).status_code == 204
        amo.expire_access_tokens()
        assert httpx.get(f"{amo.base_url}/api/v4/leads", headers=headers).status_code == 401


# ---------------------------------------------------------------- finding deals


def text_field(http: httpx.Client, name: str) -> int:
    r = http.post("/api/v4/leads/custom_fields", json=[{"name": name, "type": "text"}])
    assert r.status_code == 200
    return int(r.json()["_embedded"]["custom_fields"][0]["id"])


def with_marker(rid: str, field_id: int, value: str) -> dict[str, Any]:
    lead = complex_lead(rid)
    lead["custom_fields_values"].append({"field_id": field_id, "values": [{"value": value}]})
    return lead


def leads_of(r: httpx.Response) -> list[str]:
    return [] if r.status_code == 204 else [d["name"] for d in r.json()["_embedded"]["leads"]]


def test_query_never_finds_a_deal_by_tag_but_by_a_field_value(http: httpx.Client) -> None:
    fid = text_field(http, "LeadHub key")
    http.post("/api/v4/leads/complex", json=[complex_lead("tagged"),
                                               with_marker("fielded", fid, "lh:42:amo")])
    tag_only = http.get("/api/v4/leads", params={"query": "lh:tagged"})
    assert (tag_only.status_code, tag_only.content) == (204, b"")  # tags are not fields
    assert leads_of(http.get("/api/v4/leads", params={"query": "lh:42:amo"})) == ["Deal fielded"]
    assert leads_of(http.get("/api/v4/leads", params={"query": "deal FIELDED"})) == ["Deal fielded"]


def test_custom_fields_are_listed_in_pages_and_created(http: httpx.Client) -> None:
    first = http.get("/api/v4/leads/custom_fields")
    assert first.headers["content-type"] == "application/hal+json"
    listed = first.json()["_embedded"]["custom_fields"]
    assert {f["type"] for f in listed} == {"tracking_data"}  # every account has these
    r = http.post("/api/v4/leads/custom_fields",
                  json=[{"name": "LeadHub key", "type": "text"}, {"name": "B", "type": "text"}])
    body = r.json()
    assert (r.status_code, body["_total_items"]) == (200, 2)
    created = body["_embedded"]["custom_fields"]
    assert [(f["name"], f["type"], f["request_id"], f["entity_type"]) for f in created] == [
        ("LeadHub key", "text", "0", "leads"), ("B", "text", "1", "leads")]
    page = http.get("/api/v4/leads/custom_fields", params={"limit": 5})
    assert "next" in page.json()["_links"] and len(page.json()["_embedded"]["custom_fields"]) == 5
    last = http.get("/api/v4/leads/custom_fields", params={"limit": 5, "page": 3})
    assert [f["name"] for f in last.json()["_embedded"]["custom_fields"]] == ["LeadHub key", "B"]
    assert http.get("/api/v4/leads/custom_fields", params={"limit": 5, "page": 4}).status_code == 204


def test_invalid_fields_are_400_and_create_nothing(amo: FakeAmoCRM, http: httpx.Client) -> None:
    before = len(amo.lead_fields())
    r = http.post("/api/v4/leads/custom_fields",
                  json=[{"name": "ok", "type": "text"}, {"name": "", "type": "nope"}])
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    (entry,) = r.json()["validation-errors"]
    assert entry["request_id"] == "1"
    assert {e["path"] for e in entry["errors"]} == {"name", "type"}
    assert len(amo.lead_fields()) == before


def test_an_unknown_field_id_in_a_deal_is_rejected(amo: FakeAmoCRM, http: httpx.Client) -> None:
    r = http.post("/api/v4/leads/complex", json=[with_marker("x", 12345, "lh:1")])
    assert r.status_code == 400
    (entry,) = r.json()["validation-errors"]
    assert entry["errors"][0] == {"code": "NotSupportedChoice",
                                  "path": "custom_fields_values.1.field_id",
                                  "detail": "The value you selected is not a valid choice."}
    assert amo.leads == []


def test_filter_by_field_value_and_order(amo: FakeAmoCRM, http: httpx.Client) -> None:
    fid = text_field(http, "LeadHub key")
    http.post("/api/v4/leads/complex", json=[with_marker(str(i), fid, f"lh:{i % 2}")
                                             for i in range(4)])
    for key in (f"filter[custom_fields_values][{fid}][]", f"filter[custom_fields_values][{fid}][0]"):
        assert leads_of(http.get("/api/v4/leads", params={key: "lh:1"})) == ["Deal 1", "Deal 3"]
    assert leads_of(http.get("/api/v4/leads", params={
        f"filter[custom_fields_values][{fid}][0]": "lh:"})) == []  # the whole value
    newest = http.get("/api/v4/leads", params={"order[created_at]": "desc"})
    assert leads_of(newest) == ["Deal 3", "Deal 2", "Deal 1", "Deal 0"]
    assert leads_of(http.get("/api/v4/leads", params={"order[id]": "asc"}))[0] == "Deal 0"
    assert http.get("/api/v4/leads", params={"order[name]": "asc"}).status_code == 400
    assert amo.leads_by_marker() == {"lh:0": [amo.leads[0]["id"], amo.leads[2]["id"]],
                                     "lh:1": [amo.leads[1]["id"], amo.leads[3]["id"]]}


@pytest.mark.parametrize("mode", ["ignored", "rejected"])
def test_query_and_filter_can_be_switched_off(mode: str) -> None:
    with FakeAmoCRM(rate_limit=1000, query_mode=mode, filter_mode=mode) as amo, \
            httpx.Client(base_url=amo.base_url, headers=AUTH) as http:
        fid = text_field(http, "LeadHub key")
        http.post("/api/v4/leads/complex", json=[with_marker(str(i), fid, f"lh:{i}")
                                                 for i in range(3)])
        by_query = http.get("/api/v4/leads", params={"query": "lh:1"})
        by_filter = http.get("/api/v4/leads",
                             params={f"filter[custom_fields_values][{fid}][0]": "lh:1"})
        if mode == "ignored":  # the whole list comes back, as if nothing had been asked
            assert leads_of(by_query) == leads_of(by_filter) == ["Deal 0", "Deal 1", "Deal 2"]
        else:
            assert by_query.status_code == by_filter.status_code == 400
            assert "validation-errors" in by_query.json()


def test_a_blocked_account_gets_403_with_a_non_json_body(amo: FakeAmoCRM, http: httpx.Client) -> None:
    amo.block(0.5)
    r = http.get("/api/v4/leads")
    assert r.status_code == 403
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    time.sleep(0.6)
    assert http.get("/api/v4/leads").status_code == 204


def test_a_client_that_keeps_sending_over_the_limit_is_blocked() -> None:
    with FakeAmoCRM(auto_block_after_429s=3, auto_block_s=60) as amo, \
            httpx.Client(base_url=amo.base_url, headers=AUTH) as http:
        codes = [http.get("/api/v4/leads/pipelines").status_code for _ in range(11)]
        assert codes == [200] * 7 + [429] * 3 + [403]
        time.sleep(1.05)  # the rate window is clear, the block is not
        assert http.get("/api/v4/leads/pipelines").status_code == 403
