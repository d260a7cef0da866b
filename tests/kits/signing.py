"""How each first-party source's provider authenticates a request, for the source kits.

Each signer takes the request built from a payload file and the instance's settings (the
kit also passes wrong ones) and returns it as the provider would send it; the rules are
the ones the plugins verify (and cite).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from hub.connectors import InboundRequest
from plugins.zadarma import SIGNED_FIELDS
from plugins.zadarma import signature as zadarma_signature


def token_query(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """``?token=`` in the webhook URL (webform, tilda, email hooks, call tracking)."""
    query = [(k, v) for k, v in request.query if k != "token"]
    return replace(request, query=(*query, ("token", settings["token"])))


def header(name: str, key: str) -> Any:
    def sign(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
        return replace(request, headers={**request.headers, name: settings[key]})
    return sign


def meta(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """Meta (WhatsApp, Lead Ads): ``X-Hub-Signature-256`` over the body with the app secret;
    the verification GET echoes ``hub.challenge`` for the right ``hub.verify_token``."""
    if request.method == "GET":
        query = [(k, settings["verify_token"] if k == "hub.verify_token" else v)
                 for k, v in request.query]
        return replace(request, query=tuple(query))
    digest = hmac.new(settings["app_secret"].encode(), request.body, hashlib.sha256).hexdigest()
    return replace(request, headers={**request.headers, "x-hub-signature-256": f"sha256={digest}"})


def vk(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """VK puts the secret in the JSON body."""
    data = json.loads(request.body)
    data["secret"] = settings["secret"]
    return replace(request, body=json.dumps(data, ensure_ascii=False).encode())


def vk_unsigned(request: InboundRequest) -> InboundRequest:
    data = json.loads(request.body)
    data.pop("secret", None)
    return replace(request, body=json.dumps(data, ensure_ascii=False).encode())


def mango(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """Mango: ``sign`` = sha256(api key + json + salt), the key as ``vpbx_api_key``."""
    form = dict(parse_qsl(request.body.decode()))
    text = form["json"]
    sign = hashlib.sha256((settings["api_key"] + text + settings["api_salt"]).encode()).hexdigest()
    body = f"vpbx_api_key={quote(settings['api_key'], safe='')}&sign={sign}&json={quote(text, safe='')}"
    return replace(request, body=body.encode())


def mailgun(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """Mailgun: ``signature`` = HMAC-SHA256(signing key, timestamp + token), in the body."""
    stamp = str(int(time.time()))
    body = request.body
    found = re.search(rb'(?:^|&)token=([^&]+)|name="token"\r\n\r\n([^\r]+)', body)
    assert found, "a Mailgun payload carries a token"
    token = (found.group(1) or found.group(2)).decode()
    sig = hmac.new(settings["signing_key"].encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    for name, value in (("timestamp", stamp), ("signature", sig)):
        field = name.encode()
        body, n = re.subn(rb"(^|&)" + field + rb"=[^&]*", rb"\g<1>" + field + b"=" + value.encode(), body)
        if not n:  # multipart
            body, n = re.subn(rb'(name="' + field + rb'"\r\n\r\n)[^\r]*', rb"\g<1>" + value.encode(), body)
        assert n == 1, name
    return replace(request, body=body)


def zadarma(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """Zadarma: ``Signature`` = base64(hex HMAC-SHA1) over the event's signed fields."""
    if request.method == "GET":
        return request
    form = dict(request.form_items())
    names = SIGNED_FIELDS.get(form.get("event", "").strip().upper()) or next(iter(SIGNED_FIELDS.values()))
    sig = zadarma_signature(settings["secret"].encode(), "".join(form.get(n, "") for n in names))
    return replace(request, headers={**request.headers, "signature": sig})


def twilio(request: InboundRequest, settings: dict[str, Any]) -> InboundRequest:
    """Twilio: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + sorted form pairs))."""
    url = settings["public_url"] + (f"/{request.path}" if request.path else "")
    if request.query:
        url += "?" + urlencode(list(request.query))
    params = request.form_items() if request.method == "POST" else []
    data = url + "".join(k + v for k in sorted({k for k, _ in params})
                         for v in sorted(v for kk, v in params if kk == k))
    sig = base64.b64encode(hmac.new(settings["auth_token"].encode(), data.encode(), hashlib.sha1).digest())
    return replace(request, headers={**request.headers, "x-twilio-signature": sig.decode()})
