"""``hub.sdk.sniffing``: the one way sources tell a JSON body from a form.

``webform``, ``tilda`` and the call-tracking sources each wrote these rules out before;
the cases below are what they accepted, so the shared helper keeps their behaviour.
"""

from __future__ import annotations

from urllib.parse import quote_from_bytes

import pytest

from hub.sdk import InboundRequest, ParseError, body_kind, json_object, looks_like_form


def request(content_type: str | None, body: bytes) -> InboundRequest:
    headers = {"content-type": content_type} if content_type is not None else {}
    return InboundRequest("POST", "src", "", (), headers, body)


@pytest.mark.parametrize(("content_type", "body", "kind"), [
    ("application/json", b'{"a": 1}', "json"),
    ("application/json; charset=utf-8", b"[1]", "json"),  # the label decides, not the body
    ("application/vnd.acme+json", b'{"a": 1}', "json"),
    ("text/plain;charset=UTF-8", b'  {"a": 1}', "json"),  # fetch no-cors, sendBeacon
    (None, b'{"a": 1}', "json"),
    ("text/plain", b"a=1", "form"),  # <form enctype="text/plain">: name=value lines
    ("text/plain", b"no fields here", None),
    ("application/x-www-form-urlencoded", b"a=1", "form"),
    ("multipart/form-data; boundary=x", b"--x--", "form"),
    (None, b"name=Ivan&phone=1", "form"),
    (None, b'{"a": "b=c"}', "json"),  # JSON wins when a body could be either
    (None, b"hello", None),
    ("application/xml", b"<a/>", None),
    # PHP's curl labels a JSON string it posts as a form: a JSON object is read as JSON
    ("application/x-www-form-urlencoded", b' {"id": "1", "caller": "7916"}', "json"),
    ("application/x-www-form-urlencoded", b"{x=1", "form"),  # not JSON: still a form
    ("application/x-www-form-urlencoded", b'{"a": 1', "form"),
    ("multipart/form-data; boundary=x", b'{"a": 1}', "form"),  # multipart is never JSON
    ("application/x-www-form-urlencoded", b"{" * 20_000, "form"),  # nesting: no RecursionError
])
def test_body_kind(content_type: str | None, body: bytes, kind: str | None) -> None:
    assert body_kind(request(content_type, body)) == kind


def test_a_form_source_still_reads_an_unlabelled_form_that_starts_with_a_brace() -> None:
    """Tilda's rule: any unlabelled body with a ``=`` is a form, even if JSON would claim it."""
    assert looks_like_form(request(None, b"{x=1"))


def test_json_object_refuses_other_json() -> None:
    assert json_object(request("application/json", b'{"a": 1}')) == {"a": 1}
    with pytest.raises(ParseError, match="expected a JSON object, got list"):
        json_object(request("application/json", b"[1]"))


@pytest.mark.parametrize(("body", "items"), [
    # WHATWG text/plain encoding: one entry per CRLF line, nothing escaped
    (b"name=Ivan Petrov\r\nmessage=a=b & c+d 100%\r\n",
     [("name", "Ivan Petrov"), ("message", "a=b & c+d 100%")]),
    (b"name=Ivan\nphone=+7 916\n", [("name", "Ivan"), ("phone", "+7 916")]),
    # one line with '&': a script's urlencoded form under the wrong label
    (b"name=Ivan+Petrov&phone=%2B7916", [("name", "Ivan Petrov"), ("phone", "+7916")]),
    ("name=Иван\r\n".encode("cp1251"), [("name", "Иван")]),  # undeclared charset: cp1251
])
def test_text_plain_form_items(body: bytes, items: list[tuple[str, str]]) -> None:
    assert request("text/plain", body).form_items() == items


def test_form_bytes_are_the_bytes_sent() -> None:
    koi8 = "Привет".encode("koi8-r")
    urlencoded = request("application/x-www-form-urlencoded",
                         b"a=1&body-mime=" + quote_from_bytes(koi8).encode() + b"&body-mime=2")
    assert urlencoded.form_bytes("body-mime") == koi8  # the first, percent-decoded
    assert urlencoded.form_bytes("missing") is None
    multipart = request("multipart/form-data; boundary=XyZ",
                        b'--XyZ\r\nContent-Disposition: form-data; name="body-mime"\r\n\r\n'
                        + koi8 + b"\r\n--XyZ--\r\n")
    assert multipart.form_bytes("body-mime") == koi8
    assert request("application/json", b'{"body-mime": "x"}').form_bytes("body-mime") is None
