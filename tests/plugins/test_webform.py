"""The ``webform`` source on real-shaped request bodies: verify, parse, respond."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.connectors import Accepted, ConnectorContext, InboundRequest, LeadDraft
from hub.errors import AuthError, ParseError
from hub.normalize import normalize_lead
from hub.sdk import sign_standard_webhook as sign
from plugins.webform import WebformConfig, WebformSource, leadhub_register_connectors, wants_page
from tests.payload_loader import load_request, payload_names

TOKEN = "s3cret-form-token"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def source(**settings: object) -> WebformSource:
    config = WebformConfig.model_validate({"plugin": "webform", **settings})
    return WebformSource(config, ConnectorContext(name="site_form", data_dir=Path(".")))


def parse_one(src: WebformSource, request: InboundRequest) -> tuple[str | None, LeadDraft]:
    events = src.parse(request)
    assert len(events) == 1 and events[0].lead is not None
    return events[0].event_id, events[0].lead


def lead_json(draft: LeadDraft) -> dict[str, object]:
    lead = normalize_lead(draft, lead_id="01TEST", source="site_form",
                          received_at=datetime(2026, 11, 23, tzinfo=UTC), default_region="RU")
    return lead.to_json_dict()


def test_every_payload_has_its_source_named() -> None:
    names = payload_names("webform")
    assert {"urlencoded_ru", "multipart_chrome", "json_fetch", "tilda_cookies"} <= set(names)
    for name in names:
        load_request("webform", name)  # asserts the sidecar names its source


def test_registers_one_source_class() -> None:
    registered: list[type] = []
    leadhub_register_connectors(register=registered.append)
    assert registered == [WebformSource]


# ---------------------------------------------------------------- parse


def test_urlencoded_russian_form() -> None:
    event_id, draft = parse_one(source(), load_request("webform", "urlencoded_ru"))
    assert event_id is None
    lead = lead_json(draft)
    assert lead["contact"] == {"name": "Иван Петров", "phones": ["+79161234567"],
                               "emails": ["ivan.petrov@example.ru"], "messengers": []}
    assert lead["message"] == "Перезвоните после 18:00 & не раньше\nСпасибо!"
    assert lead["utm"] == {"source": "yandex", "medium": "cpc", "campaign": "spring",
                           "term": None, "content": "banner_1"}
    assert lead["click_ids"]["yclid"] == "7031337"
    # token (query), reCAPTCHA token and the empty utm_term never reach the lead
    assert lead["fields"] == {"formid": "form123", "agree": "on"}


def test_multipart_from_chrome_with_empty_file_input() -> None:
    request = load_request("webform", "multipart_chrome")
    assert ("resume", "") not in request.form_items()
    _, draft = parse_one(source(), request)
    lead = lead_json(draft)
    assert lead["contact"]["name"] == "Анна Смирнова"
    assert lead["contact"]["phones"] == ["+79167654321"]
    assert lead["contact"]["emails"] == []
    assert lead["message"] == "Строка 1\nСтрока 2"
    assert lead["product"] == "Курс аналитика"
    assert lead["utm"]["source"] == "vk" and lead["utm"]["medium"] == "social"
    assert lead["fields"] == {"tariff": ["Базовый", "Менторство"]}


def test_json_body_with_nested_contact_and_utm() -> None:
    event_id, draft = parse_one(source(), load_request("webform", "json_fetch"))
    assert event_id == "b7f0c0de-0001"
    lead = lead_json(draft)
    assert lead["contact"]["name"] == "Пётр Сидоров"
    assert lead["contact"]["phones"] == ["+74951234567", "+79161112233"]
    assert lead["contact"]["emails"] == ["petr@example.ru"]
    assert lead["company"] == "ООО «Ромашка»"
    assert lead["utm"]["campaign"] == "brand"
    assert lead["utm"]["source"] == "google"  # the empty nested "source" is absent: URL's wins
    assert lead["click_ids"]["gclid"] == "EAIaIQobChMI"
    assert lead["fields"] == {"event_id": "b7f0c0de-0001", "consent": "true",
                              "quiz": {"rooms": 2, "budget": "до 5 млн"}}


def test_json_sent_as_text_plain_by_no_cors_fetch() -> None:
    body = json.dumps({"phone": 89161234567, "name": "Оля"}).encode()
    request = load_request("webform", "json_fetch", body=body,
                           headers={"content-type": "text/plain;charset=UTF-8"})
    _, draft = parse_one(source(), request)
    assert lead_json(draft)["contact"]["phones"] == ["+79161234567"]


def test_query_parameters_are_fields_the_body_lacks_but_never_the_token() -> None:
    request = load_request("webform", "urlencoded_ru",
                           query={"token": TOKEN, "product": "Курс", "formid": "from-query"})
    _, draft = parse_one(source(token=TOKEN), request)
    assert draft.product == "Курс"
    assert draft.fields["formid"] == "form123"
    assert TOKEN not in json.dumps(lead_json(draft), ensure_ascii=False)


def test_body_without_contact_is_still_a_draft() -> None:
    request = load_request("webform", "urlencoded_ru", body=b"comment=hello&phone=")
    _, draft = parse_one(source(), request)
    assert draft.phones == [] and draft.message == "hello"


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/xml", None),
    ("application/json", b"[1, 2]"),
    ("application/json", b"{not json"),
    ("text/plain", b"hello"),
    ("multipart/form-data", b"no boundary"),
    ("image/png", b"\x89PNG\r\n"),
])
def test_garbage_raises_parse_error(content_type: str, body: bytes | None) -> None:
    request = load_request("webform", "not_a_form", body=body,
                           headers={"content-type": content_type})
    with pytest.raises(ParseError):
        source().parse(request)


def test_field_map_adds_aliases() -> None:
    body = b"your-number=8+916+123-45-67&q1=%D0%9A%D1%83%D1%80%D1%81&who=%D0%98%D0%B2%D0%B0%D0%BD"
    request = load_request("webform", "urlencoded_ru", body=body, query={})
    src = source(field_map={"Your-Number": "phone", "q1": "product", "who": "name"})
    _, draft = parse_one(src, request)
    assert (draft.phones, draft.product, draft.name) == (["8 916 123-45-67"], "Курс", "Иван")


def test_field_map_with_an_unknown_target_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="unknown target"):
        source(field_map={"q1": "telephone"})


def test_empty_secret_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="is empty"):
        source(token="")


# ---------------------------------------------------------------- verify


def test_open_form_needs_nothing() -> None:
    source().verify(load_request("webform", "urlencoded_ru", query={}))


@pytest.mark.parametrize(("query", "headers"), [
    ({"token": TOKEN}, {}),
    ({}, {"x-leadhub-token": TOKEN}),
])
def test_token_accepted(query: dict[str, str], headers: dict[str, str]) -> None:
    source(token=TOKEN).verify(load_request("webform", "urlencoded_ru", query=query,
                                            headers=headers))


@pytest.mark.parametrize(("query", "headers"), [
    ({}, {}),
    ({"token": "wrong"}, {}),
    ({"token": ""}, {}),
    ({}, {"x-leadhub-token": TOKEN + "x"}),
    ({"token": "токен"}, {}),
])
def test_token_missing_or_wrong(query: dict[str, str], headers: dict[str, str]) -> None:
    with pytest.raises(AuthError):
        source(token=TOKEN).verify(load_request("webform", "urlencoded_ru", query=query,
                                                headers=headers))


def signed(name: str, *, at: int | None = None, secret: str = SECRET,
           msg_id: str = "msg_2Yh7") -> InboundRequest:
    plain = load_request("webform", name)
    headers = sign(secret, msg_id, int(time.time()) if at is None else at, plain.body)
    return load_request("webform", name, headers=headers)


def test_standard_webhooks_signature_accepted_and_its_id_is_the_event_id() -> None:
    src = source(signing_secret=SECRET)
    request = signed("json_fetch")
    src.verify(request)
    assert parse_one(src, request)[0] == "msg_2Yh7"


def test_secret_without_prefix_is_the_same_secret() -> None:
    source(signing_secret=SECRET.removeprefix("whsec_")).verify(signed("json_fetch"))


def test_bad_signature() -> None:
    request = signed("json_fetch", secret="whsec_" + "A" * 32)
    with pytest.raises(AuthError):
        source(signing_secret=SECRET).verify(request)


def test_tampered_body() -> None:
    request = signed("json_fetch")
    tampered = load_request("webform", "json_fetch", headers=dict(request.headers),
                            body=request.body.replace("Ромашка".encode(), "Лютик".encode()))
    assert tampered.body != request.body
    with pytest.raises(AuthError):
        source(signing_secret=SECRET).verify(tampered)


@pytest.mark.parametrize("age_s", [6 * 60, -6 * 60])
def test_expired_or_future_signature(age_s: int) -> None:
    request = signed("json_fetch", at=int(time.time()) - age_s)
    with pytest.raises(AuthError):
        source(signing_secret=SECRET).verify(request)


def test_unsigned_request_when_a_signature_is_required() -> None:
    with pytest.raises(AuthError):
        source(signing_secret=SECRET).verify(load_request("webform", "json_fetch"))


def test_with_token_and_signing_secret_either_proof_is_enough() -> None:
    """CONTRACT, "Authentication of sources": a token for plain HTML forms, or a signature."""
    src = source(token=TOKEN, signing_secret=SECRET)
    src.verify(signed("urlencoded_ru"))  # both: its sidecar carries ?token=
    src.verify(load_request("webform", "urlencoded_ru"))  # the token alone
    src.verify(signed("json_fetch"))  # the signature alone
    for forged in (load_request("webform", "json_fetch"),  # neither
                   load_request("webform", "urlencoded_ru", query={"token": "wrong"})):
        with pytest.raises(AuthError):
            src.verify(forged)


# ---------------------------------------------------------------- respond


@pytest.mark.parametrize("payload", ["multipart_chrome", "urlencoded_ru", "text_plain_form"])
def test_html_form_post_is_redirected(payload: str) -> None:
    src = source(redirect_url="https://example.ru/thanks")
    response = src.respond(load_request("webform", payload), Accepted(["01L"]))
    assert response.status_code == 303
    assert response.headers == {"Location": "https://example.ru/thanks"}


def test_json_and_ajax_get_json_even_with_a_redirect_url() -> None:
    src = source(redirect_url="https://example.ru/thanks")
    for request in (
        load_request("webform", "json_fetch"),
        load_request("webform", "urlencoded_ru", headers={"sec-fetch-mode": "cors"}),
    ):
        response = src.respond(request, Accepted(["01L"]))
        assert (response.status_code, response.body) == (200, {"id": "01L", "status": "accepted"})


def test_without_redirect_url_the_default_answer() -> None:
    response = source().respond(load_request("webform", "urlencoded_ru"), Accepted(["01L"]))
    assert (response.status_code, response.body) == (200, {"id": "01L", "status": "accepted"})


@pytest.mark.parametrize(("headers", "page"), [
    ({}, True),
    ({"accept": "*/*"}, True),
    ({"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, True),
    ({"accept": "application/json"}, False),
    ({"accept": "application/json, text/html;q=0.5"}, False),
    ({"accept": "text/html;q=0"}, False),
    ({"accept": "*/*", "x-requested-with": "XMLHttpRequest"}, False),
    ({"accept": "application/json", "sec-fetch-mode": "navigate"}, True),
    ({"accept": "text/html", "sec-fetch-mode": "cors"}, False),
])
def test_who_wants_a_page(headers: dict[str, str], page: bool) -> None:
    assert wants_page(headers) is page
