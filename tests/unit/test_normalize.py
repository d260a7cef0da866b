"""Normalization: phones, emails, field aliases, UTM tags and click ids, masking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.connectors import CallInfo, LeadDraft
from hub.models import Messenger
from hub.normalize import normalize_lead
from hub.normalize.emails import find_emails, normalize_email
from hub.normalize.fields import canonical_name, draft_from_fields, field_key
from hub.normalize.masking import mask_email, mask_phone, mask_text
from hub.normalize.phones import find_phones, normalize_phone
from hub.normalize.utm import cookie_pairs, extract_marks, tilda_utm_pairs
from tests.payload_loader import load_request

NOW = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)


def lead_of(draft: LeadDraft, region: str = "RU"):
    return normalize_lead(draft, lead_id="01TEST", source="site_form", received_at=NOW,
                          default_region=region)


# ---------------------------------------------------------------- phones


@pytest.mark.parametrize("raw", [
    "8 (916) 123-45-67", "+7 (916) 123-45-67", "+7 916 123 45 67", "79161234567",
    "89161234567", "9161234567", "8-916-123-45-67", "tel:+7-916-123-45-67",
    " +7(916)1234567 ", "+8 916 123-45-67",
])
def test_russian_mobile_in_every_spelling(raw: str) -> None:
    assert normalize_phone(raw, "RU") == "+79161234567"


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("8 800 555-35-35", "RU", "+78005553535"),
    ("+7 (495) 123-45-67", "RU", "+74951234567"),
    ("+1 212 555 1234", "RU", "+12125551234"),
    ("(212) 555-1234", "US", "+12125551234"),
    ("030 12345678", "de", "+493012345678"),
    ("+375 29 123-45-67", "RU", "+375291234567"),
])
def test_other_numbers(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "123", "123-45-67", "11111111111", "не звонить", "+7 916 123", "8" * 300, "+0 000",
])
def test_not_a_valid_number(raw: str) -> None:
    assert normalize_phone(raw, "RU") is None


def test_nul_in_a_phone_is_dropped() -> None:
    assert normalize_phone("8 (916) 123-45-67\x00", "RU") == "+79161234567"


def test_find_phones_in_text() -> None:
    text = "Звоните: 8 (916) 123-45-67 или +7 495 123 45 67; ещё раз 89161234567. Заказ 12345."
    assert find_phones(text, "RU") == ["+79161234567", "+74951234567"]
    assert find_phones("", "RU") == []


# ---------------------------------------------------------------- emails


@pytest.mark.parametrize(("raw", "expected"), [
    ("Ivan@Example.RU", "ivan@example.ru"),
    ("  ivan.petrov@example.ru ", "ivan.petrov@example.ru"),
    ("mailto:Ivan@example.ru?subject=hi", "ivan@example.ru"),
    ("Иван Петров <Ivan@Example.ru>", "ivan@example.ru"),
    ("Иван@Пример.РФ", "иван@пример.рф"),
])
def test_valid_emails_are_lower_cased(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", ["", "ivan", "ivan@", "@example.ru", "ivan@localhost",
                                 "ivan..p@example.ru", "ivan@example.ru\x00", "a" * 400 + "@x.ru"])
def test_invalid_emails(raw: str) -> None:
    assert normalize_email(raw) is None


def test_find_emails_in_text() -> None:
    text = "Пишите на Ivan@Example.ru, или ivan@example.ru. А ещё: anna@почта.рф!"
    assert find_emails(text) == ["ivan@example.ru", "anna@почта.рф"]


# ---------------------------------------------------------------- field aliases


@pytest.mark.parametrize(("name", "canonical"), [
    ("Name", "name"), ("FIO", "name"), ("Ваше имя", "name"), ("Фамилия", "last_name"),
    ("Phone", "phone"), ("tel", "phone"), ("Телефон", "phone"), ("phone[]", "phone"),
    ("phone_2", "phone"), ("Email", "email"), ("E-mail", "email"), ("Почта", "email"),
    ("Comments", "message"), ("Вопрос", "message"), ("Компания", "company"),
    ("Товар", "product"), ("pageurl", "page_url"), ("Referer", "referrer"),
    ("COOKIES", "cookies"), ("UTM_Source", "utm_source"), ("GCLID", "gclid"),
    ("_openstat", "_openstat"), ("roistat_visit", "roistat"), ("formid", None),
    ("msclkid", None), ("name2", None),
])
def test_builtin_aliases(name: str, canonical: str | None) -> None:
    assert canonical_name(name) == canonical


def test_field_key_folds_case_spaces_and_yo() -> None:
    assert field_key(" Ваш-Телефон[] ") == "ваш_телефон"
    assert field_key("Ёлка") == "елка"


def test_draft_from_fields_reads_everything_and_keeps_the_rest() -> None:
    draft = draft_from_fields([
        ("first_name", "Иван"), ("last_name", "Петров"), ("Телефон", "8 916 123-45-67"),
        ("phone2", "+7 495 123-45-67"), ("Email", "ivan@example.ru"), ("Вопрос", "Цена?"),
        ("comment", "второе сообщение"), ("utm_source", "yandex"), ("utm_term", " "),
        ("yclid", "123"), ("services[]", "a"), ("services[]", "b"), ("formid", "form1"),
        ("csrfmiddlewaretoken", "x"), ("g-recaptcha-response", "y"), ("submit", "Отправить"),
        ("empty", ""),
    ])
    assert draft.name == "Иван Петров"
    assert draft.phones == ["8 916 123-45-67", "+7 495 123-45-67"]
    assert draft.emails == ["ivan@example.ru"]
    assert draft.message == "Цена?"
    assert draft.utm == {"source": "yandex"}
    assert draft.click_ids == {"yclid": "123"}
    assert draft.fields == {"comment": "второе сообщение", "services[]": ["a", "b"],
                            "formid": "form1"}


def test_full_name_wins_over_parts_which_are_kept() -> None:
    draft = draft_from_fields([("Имя", "Анна"), ("name", "Анна Смирнова"), ("Фамилия", "С.")])
    assert draft.name == "Анна"  # first non-empty name-like field: "Имя" is the name alias
    assert draft.fields == {"name": "Анна Смирнова", "Фамилия": "С."}


def test_field_map_takes_precedence() -> None:
    draft = draft_from_fields(
        [("your-number", "89161234567"), ("text", "не сообщение, а адрес"), ("Q1", "Курс")],
        field_map={"Your Number": "phone", "q1": "product", "text": "company"},
    )
    assert draft.phones == ["89161234567"]
    assert draft.product == "Курс"
    assert draft.company == "не сообщение, а адрес"
    assert draft.message is None


# ---------------------------------------------------------------- UTM and click ids


def test_utm_precedence_is_per_key() -> None:
    marks = extract_marks(
        fields={"utm_source": "fields", "utm_term": ""},
        page_url="https://x.ru/?utm_source=url&utm_medium=url&utm_term=url",
        referrer="https://ref.ru/?utm_medium=ref&utm_campaign=ref",
        cookies="utm_campaign=cookie; utm_content=cookie",
    )
    assert marks.utm == {"source": "fields", "medium": "url", "term": "url",
                         "campaign": "ref", "content": "cookie"}
    assert marks.used_fields == {"utm_source", "utm_term"}


def test_explicit_draft_utm_beats_fields() -> None:
    marks = extract_marks(fields={"UTM_SOURCE": "form"}, explicit_utm={"source": "tracking"})
    assert marks.utm == {"source": "tracking"}


def test_tilda_utm_cookie() -> None:
    value = ("utm_source%3Dyandex%7C%7C%7Cutm_medium%3Dcpc%7C%7C%7C"
             "utm_campaign%3D%25D0%25B2%7C%7C%7Cutm_term%3D")
    assert tilda_utm_pairs(value) == [("utm_source", "yandex"), ("utm_medium", "cpc"),
                                      ("utm_campaign", "в"), ("utm_term", "")]


def test_cookie_click_ids() -> None:
    pairs = cookie_pairs("a=1; _gcl_aw=GCL.1732380000.Cj0KCQiA; _fbc=fb.1.1732380000000.IwAR2; "
                         "roistat_visit=4242; _gcl_aw_bad=x; _fbc_bad=fb.1")
    assert dict(pairs) == {"roistat_visit": "4242", "gclid": "Cj0KCQiA", "fbclid": "IwAR2"}


def test_click_ids_from_every_place() -> None:
    marks = extract_marks(
        fields={"_openstat": "os1", "msclkid": "unknown"},
        page_url="https://x.ru/?yclid=111&gclid=from-url",
        referrer="https://y.ru/?ysclid=abc&ctwa_clid=wa",
        cookies="_gcl_aw=GCL.1.from-cookie; roistat_visit=77",
    )
    assert marks.click_ids == {"_openstat": "os1", "yclid": "111", "gclid": "from-url",
                               "ysclid": "abc", "ctwa_clid": "wa", "roistat": "77"}
    assert marks.used_fields == {"_openstat"}  # msclkid is unknown: it stays in fields


def test_broken_urls_have_no_tags() -> None:
    marks = extract_marks(fields={}, page_url="http://[broken?utm_source=x", referrer="?")
    assert marks.utm == {}


def test_tilda_payload_double_encoded_cookies_end_in_the_lead() -> None:
    request = load_request("webform", "tilda_cookies")
    lead = lead_of(draft_from_fields(request.form_items()))
    assert lead.utm.model_dump() == {"source": "yandex", "medium": "cpc", "campaign": "весна",
                                     "term": None, "content": None}
    assert lead.click_ids.gclid == "Cj0KCQiA5abcDEF"
    assert lead.click_ids.fbclid == "IwAR2xyz"
    assert lead.contact.name == "Мария"
    assert lead.contact.phones == ["+79162223344"]
    assert lead.message == "Хочу на курс"
    assert lead.fields == {"tranid": "1234567:8901234567", "formid": "form512345678"}


# ---------------------------------------------------------------- normalize_lead


def test_normalize_lead_builds_the_contract_lead() -> None:
    draft = LeadDraft(
        channel="form", name="  Иван \n  Петров ", phones=["8 (916) 123-45-67", "+79161234567",
                                                            "не скажу"],
        emails=["Ivan@Example.RU", "ivan@example.ru", "ivan(at)example.ru"],
        messengers=[Messenger(kind="telegram", id="1"), Messenger(kind="telegram", id="1")],
        message="\r\n Перезвоните\r\nпосле 18:00  ", company=" ", product="Курс",
        fields={"utm_source": "yandex", "formid": "form123", "nul\x00": "a\x00b"},
        utm={"medium": "cpc", "id": "42"}, page_url=" https://example.ru/?yclid=5 ",
    )
    lead = lead_of(draft)
    data = lead.to_json_dict()
    assert data["contact"] == {
        "name": "Иван Петров", "phones": ["+79161234567"], "emails": ["ivan@example.ru"],
        "messengers": [{"kind": "telegram", "id": "1", "username": None}],
    }
    assert data["message"] == "Перезвоните\nпосле 18:00"
    assert data["company"] is None
    assert data["utm"]["source"] == "yandex" and data["utm"]["medium"] == "cpc"
    assert data["click_ids"]["yclid"] == "5"
    assert data["page_url"] == "https://example.ru/?yclid=5"
    assert data["fields"] == {"formid": "form123", "nul": "ab", "phone_raw": "не скажу",
                              "email_raw": "ivan(at)example.ru", "utm_id": "42"}
    assert data["status"] == "received" and data["call"] is None


def test_several_numbers_in_one_field_are_all_read() -> None:
    lead = lead_of(LeadDraft(channel="form", phones=["8 916 123-45-67, 8 (495) 123-45-67"]))
    assert lead.contact.phones == ["+79161234567", "+74951234567"]
    assert "phone_raw" not in lead.fields


def test_call_block_and_caller_join_the_contact() -> None:
    call = CallInfo(call_id="c1", from_number="8 916 123-45-67", to_number="+7 495 777-88-99",
                    tracking_number="74957778899", duration_s=65, recording_url=" https://r/1 ")
    lead = lead_of(LeadDraft(channel="call", call=call))
    assert lead.contact.phones == ["+79161234567"]
    assert lead.call is not None
    assert lead.to_json_dict()["call"] == {
        "direction": "inbound", "from": "+79161234567", "to": "+74957778899",
        "started_at": None, "duration_s": 65, "answered": True, "recording_url": "https://r/1",
        "tracking_number": "+74957778899",
    }


def test_unanswered_call_from_hidden_number() -> None:
    call = CallInfo(call_id="c2", from_number="anonymous", answered=False, duration_s=12)
    lead = lead_of(LeadDraft(channel="call", call=call))
    assert lead.contact.phones == []
    assert lead.call is not None and lead.call.from_ is None
    assert lead.call.duration_s == 0 and lead.call.answered is False
    assert lead.fields == {"call_from_raw": "anonymous"}


def test_outbound_call_contact_is_the_callee() -> None:
    call = CallInfo(call_id="c3", direction="outbound", from_number="+74957778899",
                    to_number="89161234567")
    assert lead_of(LeadDraft(channel="call", call=call)).contact.phones == ["+79161234567"]


# ---------------------------------------------------------------- masking


def test_masking() -> None:
    assert mask_phone("+79161234567") == "+7916***4567"
    assert mask_phone("1234567") == "12***67"
    assert mask_phone("12") == "***"
    assert mask_email("ivan@example.ru") == "i***@example.ru"
    assert mask_email("not an email") == "***"
    dates = "заказ от 2026-11-23 18:30 и 23.11.2026"
    text = f"Иван, 8 (916) 123-45-67, Ivan@Example.ru, {dates}"
    assert mask_text(text) == f"Иван, 8916***4567, I***@Example.ru, {dates}"


def test_huge_and_odd_input_is_kept_not_fatal() -> None:
    big = "8 916 123-45-67 " * 50_000
    odd = "\x00\u202eИв\u0430н\u0301 \ufeff"
    lead = lead_of(LeadDraft(channel="form", name=odd, phones=[big, odd], emails=[big],
                             message=odd + big))
    assert lead.contact.phones == [] and lead.contact.emails == []
    assert lead.fields["phone_raw"][0] == big.strip()  # kept as written, whitespace collapsed
    assert lead.contact.name is not None and "\x00" not in lead.contact.name
