"""Properties of normalization that must hold for any input a visitor can type."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus, urlencode

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.connectors import CallInfo, InboundRequest, LeadDraft
from hub.models import UTM_KEYS, Messenger
from hub.normalize import normalize_lead
from hub.normalize.emails import find_emails, normalize_email
from hub.normalize.fields import draft_from_fields
from hub.normalize.masking import mask_text
from hub.normalize.phones import find_phones, normalize_phone
from hub.normalize.utm import clean_value

NOW = datetime(2026, 11, 23, tzinfo=UTC)
REGIONS = st.sampled_from(["RU", "US", "DE", "KZ", "BY", "GB", "", "zz"])
# Anything at all, NULs, lone surrogates and combining marks included.
ANY_TEXT = st.text(st.characters(codec=None), max_size=300)
PHONE_LIKE = st.text(st.sampled_from("0123456789+()- .8"), max_size=30)
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def strings_in(value: object) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def normalize(draft: LeadDraft, region: str = "RU"):
    return normalize_lead(draft, lead_id="01P", source="s", received_at=NOW, default_region=region)


@SETTINGS
@given(st.one_of(ANY_TEXT, PHONE_LIKE), REGIONS)
def test_phone_never_raises_and_e164_is_stable(raw: str, region: str) -> None:
    e164 = normalize_phone(raw, region)
    if e164 is not None:
        assert e164.startswith("+") and e164[1:].isdigit()
        assert normalize_phone(e164, region) == e164
        assert normalize_phone(e164, "US") == e164  # E.164 needs no region


@SETTINGS
@given(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)), st.data())
def test_example_numbers_of_every_region_round_trip(region: str, data: st.DataObject) -> None:
    number = phonenumbers.example_number(region)
    if number is None:
        return
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    written = data.draw(st.sampled_from([national, e164, e164[1:] if region == "RU" else e164]))
    assert normalize_phone(written, region) == e164
    assert normalize_phone(e164, region) == e164


@SETTINGS
@given(ANY_TEXT)
def test_emails_and_text_search_never_raise(text: str) -> None:
    email = normalize_email(text)
    if email is not None:
        assert email == email.lower() and normalize_email(email) == email
    for found in find_emails(text):
        assert normalize_email(found) == found
    find_phones(text, "RU")
    mask_text(text)


@SETTINGS
@given(
    name=ANY_TEXT, phones=st.lists(st.one_of(ANY_TEXT, PHONE_LIKE), max_size=3),
    emails=st.lists(ANY_TEXT, max_size=3), message=ANY_TEXT, fields=st.dictionaries(
        ANY_TEXT, st.one_of(ANY_TEXT, st.lists(ANY_TEXT, max_size=2)), max_size=4),
    url=ANY_TEXT, cookies=ANY_TEXT, call_from=st.one_of(st.none(), ANY_TEXT, PHONE_LIKE),
    region=REGIONS,
)
def test_normalize_lead_never_raises(
    name: str, phones: list[str], emails: list[str], message: str, fields: dict[str, object],
    url: str, cookies: str, call_from: str | None, region: str,
) -> None:
    draft = LeadDraft(
        channel="form", name=name, phones=phones, emails=emails, message=message,
        company=name, product=message, fields=dict(fields), page_url=url, referrer=url,
        cookies=cookies, utm={"source": name}, click_ids={"gclid": message},
        call=CallInfo(call_id="c", from_number=call_from, to_number=name),
        messengers=[Messenger(kind="telegram", id=name or "1", username=message)],
    )
    lead = normalize(draft, region)
    data = lead.to_json_dict()
    assert not any("\x00" in text for text in strings_in(data))  # PostgreSQL refuses NUL
    assert len(lead.contact.phones) == len(set(lead.contact.phones))
    for phone in lead.contact.phones:
        assert normalize_phone(phone, region) == phone


@SETTINGS
@given(st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=8),
       st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=3))
def test_any_form_items_make_a_draft(
    items: list[tuple[str, str]], field_map: dict[str, str]
) -> None:
    normalize(draft_from_fields(items, field_map=field_map))


@SETTINGS
@given(st.binary(max_size=500), st.sampled_from([
    "application/x-www-form-urlencoded", "", "multipart/form-data; boundary=xyz"]))
def test_form_bodies_of_any_bytes(body: bytes, content_type: str) -> None:
    request = InboundRequest("POST", "s", "", (), {"content-type": content_type}, body)
    try:
        items = request.form_items()
    except Exception as exc:  # only the documented refusal is allowed
        assert type(exc).__name__ == "ParseError"
        return
    normalize(draft_from_fields(items))


# Tag values a URL can carry: printable text, which must come back exactly (trimmed).
TAG_VALUE = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1,
                    max_size=40).filter(lambda v: clean_value(v) is not None)
PLACES = st.sampled_from(["fields", "form", "page_url", "referrer", "cookie", "tilda"])


def draft_with_tag(key: str, value: str, place: str) -> LeadDraft:
    """A draft carrying ``utm_<key>=value`` in one place, as that place encodes it."""
    name = f"utm_{key}"
    query = urlencode({name: value})
    if place == "fields":
        return LeadDraft(channel="form", fields={name: value})
    if place == "form":
        return draft_from_fields([(name.upper(), value)])
    if place == "page_url":
        return LeadDraft(channel="form", page_url=f"https://example.ru/p?{query}")
    if place == "referrer":
        return LeadDraft(channel="form", referrer=f"https://ref.example/?a=1&{query}")
    if place == "cookie":
        return LeadDraft(channel="form", cookies=f"a=b; {name}={quote(value, safe='')}; c=d")
    inner = f"utm_medium=x|||{name}={quote_plus(value)}"  # Tilda: values as in the page query
    return LeadDraft(channel="form", cookies=f"_ym_uid=1; TILDAUTM={quote(inner, safe='')}")


@SETTINGS
@given(st.sampled_from([k for k in UTM_KEYS if k != "medium"]), TAG_VALUE, PLACES)
def test_utm_survives_from_every_place(key: str, value: str, place: str) -> None:
    lead = normalize(draft_with_tag(key, value, place))
    assert getattr(lead.utm, key) == clean_value(value)
    assert f"utm_{key}" not in lead.fields


@SETTINGS
@given(TAG_VALUE, TAG_VALUE, st.sampled_from(["page_url", "referrer", "cookie", "tilda"]))
def test_fields_win_over_later_places(first: str, later: str, place: str) -> None:
    draft = draft_with_tag("campaign", later, place)
    draft.fields["utm_campaign"] = first
    assert normalize(draft).utm.campaign == clean_value(first)
