"""``hub.normalize.mail``: real-looking messages to drafts (names in any charset, MIME
bodies, quotes and signatures cut, phones, UTM links, auto-replies)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hub.connectors import LeadDraft
from hub.errors import ParseError
from hub.normalize import normalize_lead
from hub.normalize.mail import (
    MailParts,
    decode_header_text,
    draft_from_message,
    draft_from_parts,
    event_from_parts,
    html_to_text,
    non_lead_reason,
    parse_address,
    parse_message,
    split_reply,
)
from tests.payload_loader import load_meta, payload_names, payload_path


def eml(name: str) -> bytes:
    load_meta("email_raw", name)
    return payload_path("email_raw", name).read_bytes()


def lead(draft: LeadDraft) -> dict[str, Any]:
    return normalize_lead(draft, lead_id="01TEST", source="mail", default_region="RU",
                          received_at=datetime(2026, 11, 24, tzinfo=UTC)).to_json_dict()


def test_payloads_name_their_source() -> None:
    assert {"gmail_reply_utf8", "outlook_cp1251", "koi8r_mailru", "auto_reply", "bounce",
            "site_notification"} <= set(payload_names("email_raw"))


def test_gmail_reply_multipart_alternative_quoted_printable() -> None:
    raw = eml("gmail_reply_utf8")
    assert b"\r\n" in raw and b"=\r\n" in raw  # CRLF and quoted-printable soft line breaks
    parts = parse_message(raw)
    assert parts.message_id == "CAJ8kR2x1y3Z=lead-reply-0001@mail.gmail.com"
    out = lead(draft_from_parts(parts))
    assert out["channel"] == "email"
    assert out["contact"]["name"] == "Иван Петров"
    assert out["contact"]["emails"] == ["ivan.petrov@gmail.com"]  # our sales@ never counts
    # the reply's number and the signature's, not the one in our quoted letter
    assert out["contact"]["phones"] == ["+79161234567", "+79031112233"]
    assert out["message"].startswith("Здравствуйте!\n\nХочу записаться")
    assert "С уважением" not in out["message"] and "Наш телефон" not in out["message"]
    assert out["utm"]["source"] == "yandex" and out["utm"]["campaign"] == "spring"
    assert out["click_ids"]["yclid"] == "7031337"
    assert out["fields"]["subject"] == "Re: Запись на курс аналитика данных"
    assert out["fields"]["mailbox_hash"] == "yandex"
    assert out["fields"]["recipient"] == "sales+yandex@school.example.ru"


def test_outlook_windows_1251_top_posting() -> None:
    out = lead(draft_from_message(eml("outlook_cp1251")))
    assert out["contact"]["name"] == "Смирнова Светлана"
    assert out["contact"]["emails"] == ["s.smirnova@corp.example.ru"]
    assert out["contact"]["phones"] == ["+78125554433"]
    assert "Отправлено:" not in out["message"] and out["message"].endswith("отдела закупок")
    assert out["fields"]["subject"] == "RE: Коммерческое предложение"


def test_koi8r_base64_and_mobile_signoff() -> None:
    out = lead(draft_from_message(eml("koi8r_mailru")))
    assert out["contact"]["name"] == "Пётр Сидоров"
    assert out["contact"]["phones"] == ["+79217654321"]
    assert out["message"] == "Здравствуйте. Сколько стоит обучение? Мой телефон +7 (921) 765-43-21, Пётр."


def test_html_only_notification_from_a_robot_takes_the_person_from_reply_to() -> None:
    out = lead(draft_from_message(eml("site_notification")))
    assert out["contact"]["name"] == "Анна Смирнова"
    assert out["contact"]["emails"] == ["anna.smirnova@example.com"]  # not no-reply@
    assert out["contact"]["phones"] == ["+79261112233"]
    assert "var x" not in out["message"] and "Имя: Анна Смирнова" in out["message"]
    assert out["utm"]["source"] == "vk" and out["utm"]["campaign"] == "promo"


@pytest.mark.parametrize("name", ["auto_reply", "bounce"])
def test_auto_replies_and_bounces_are_not_leads(name: str) -> None:
    event = event_from_parts(parse_message(eml(name)))
    assert event.lead is None and event.reason and event.event_id


def test_bounce_is_recognized_without_auto_submitted() -> None:
    raw = eml("bounce").replace(b"Auto-Submitted: auto-replied\r\n", b"")
    assert "bounce" in (non_lead_reason(parse_message(raw)) or "")
    daemon = MailParts(sender="MAILER-DAEMON@mx.example.ru", text="failed")
    assert non_lead_reason(daemon)


@pytest.mark.parametrize("value, name, address", [
    ("=?koi8-r?B?6dfBziDwxdTSz9c=?= <Ivan@Example.ru>", "Иван Петров", "ivan@example.ru"),
    ("=?windows-1251?B?yOLg7SDP5fLw7uI=?= <a@b.ru>", "Иван Петров", "a@b.ru"),
    ("=?utf-8?q?=D0=98=D0=B2=D0=B0=D0=BD?= <ivan@x.ru>", "Иван", "ivan@x.ru"),
    ('"Петров, Иван" <I@x.ru>', "Петров, Иван", "i@x.ru"),
    ("Петров, Иван <I@x.ru>", "Петров, Иван", "i@x.ru"),  # as providers pass it decoded
    ("ivan@x.ru", None, "ivan@x.ru"),
    ("=?x-unknown?B?AAAA?= <ivan@x.ru>", "=?x-unknown?B?AAAA?=", "ivan@x.ru"),
    ("", None, None),
    ("<<>>", None, None),
])
def test_parse_address(value: str, name: str | None, address: str | None) -> None:
    assert parse_address(value) == (name, address)


def test_decode_header_text_joins_folded_encoded_words() -> None:
    folded = "=?utf-8?b?0JfQsNGP0LLQutCw?=\r\n =?utf-8?b?INGBINGB0LDQudGC0LA=?="
    assert decode_header_text(folded) == "Заявка с сайта"


@pytest.mark.parametrize("text, reply, signature", [
    ("Hi\n\nOn Mon, Nov 23, 2026 at 6:30 PM Sales <sales@x.ru> wrote:\n> old", "Hi", ""),
    ("Hi\n\nOn Mon, Nov 23, 2026 at 6:30 PM Sales <\nsales@x.ru> wrote:\n> old", "Hi", ""),
    ("Привет\n\n23.11.2026, 18:30, \"Продажи\" <sales@x.ru>:\n> старое", "Привет", ""),
    ("Привет\nВ пн, 23 нояб. Иван написал(а):\nстарое", "Привет", ""),
    ("Text\n-----Original Message-----\nFrom: a", "Text", ""),
    ("Text\n-- \nIvan\n+7 916 123-45-67", "Text", "-- \nIvan\n+7 916 123-45-67"),
    ("Text\n\nSent from my iPhone", "Text", "Sent from my iPhone"),
    ("---------- Forwarded message ---------\nFrom: A <a@x.ru>\nDate: today\n\nLead text",
     "---------- Forwarded message ---------\nFrom: A <a@x.ru>\nDate: today\n\nLead text", ""),
    ("", "", ""),
])
def test_split_reply(text: str, reply: str, signature: str) -> None:
    assert split_reply(text) == (reply, signature)


def test_provider_stripped_text_wins_and_its_signature_is_searched() -> None:
    parts = MailParts(sender="Bob <bob@example.com>", text="full body\n> quoted +7 495 000-00-00",
                      stripped_text="Call me", stripped_signature="Bob, +7 916 123-45-67",
                      to=["sales+fb@x.ru"])
    out = lead(draft_from_parts(parts))
    assert out["message"] == "Call me" and out["contact"]["phones"] == ["+79161234567"]
    assert out["fields"]["mailbox_hash"] == "fb"


def test_emails_in_text_and_subject_as_message_when_no_body() -> None:
    parts = MailParts(sender="a@x.ru", subject="Перезвоните", text="",
                      html="<p>пишите на <b>Second@Y.ru</b></p>")
    out = lead(draft_from_parts(parts))
    assert out["contact"]["emails"] == ["a@x.ru", "second@y.ru"]
    assert lead(draft_from_parts(MailParts(sender="a@x.ru", subject="Тема")))["message"] == "Тема"


def test_html_to_text_never_raises_and_drops_blockquotes() -> None:
    text, links = html_to_text('<p>a<a href="https://x.ru/?gclid=1">b</a></p><blockquote>old</blockquote>'
                               "<div>c</div><<<>>&#xffffff;</unclosed")
    assert "old" not in text and text.startswith("ab")
    assert links == ["https://x.ru/?gclid=1"]


@pytest.mark.parametrize("raw", [b"", b"   \r\n", b"\x00\x01 not a message"])
def test_non_messages_are_parse_errors(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse_message(raw)


def test_eight_bit_utf8_headers_and_unknown_body_charset() -> None:
    raw = ("From: Иван <ivan@x.ru>\r\nSubject: Заявка\r\nContent-Type: text/plain; charset=x-unknown\r\n"
           "\r\nТелефон 89161234567\r\n").encode()
    out = lead(draft_from_message(raw))
    assert out["contact"]["name"] == "Иван" and out["fields"]["subject"] == "Заявка"
    assert out["contact"]["phones"] == ["+79161234567"]
