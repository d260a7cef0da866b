"""``whatsapp``: WhatsApp Business Cloud API webhooks (Meta Graph webhooks, field ``messages``).

* Verification: Meta's ``GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``
  is answered with the challenge (``text/plain``) when ``verify_token`` matches, else 403.
* Auth: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, raw body)>``.
* Leads: each ``entry[].changes[].value.messages[]`` item, one event per message with the
  message id (``wamid...``) as its event id. The sender's ``wa_id`` (international digits)
  is both the phone and the WhatsApp messenger id; ``contacts[].profile.name`` the name.
  Users who hide their number behind a WhatsApp username come with a business-scoped user
  id (``user_id``, e.g. ``US.13491208655302741918``) instead: it becomes the messenger id.
  A click-to-WhatsApp ad's ``referral.ctwa_clid`` is the lead's ``ctwa_clid`` click id;
  the ad's ``source_url``, ``source_id``, ``source_type`` and ``headline`` are kept in
  ``fields`` (``referral_*``). ``conversation_key = "wa:<wa_id>"``.
* Not leads: delivery ``statuses[]`` (sent, delivered, read, failed), reactions, system
  messages (number changes), and changes of any other field.

Sources: https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components ,
https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/payload-examples ,
https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import Field, SecretStr

from hub.sdk import (
    Connector,
    HookResponse,
    InboundRequest,
    LeadDraft,
    Messenger,
    ParsedEvent,
    ParseError,
    Source,
    SourceConfig,
    hookimpl,
    meta,
)
from hub.sdk.messengers import as_dict, international, text

NOT_LEAD_TYPES = ("reaction", "system", "request_welcome")
REFERRAL_KEPT = ("source_url", "source_id", "source_type", "headline", "body")


class WhatsAppConfig(SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "whatsapp"``."""

    verify_token: SecretStr = Field(
        description="Any string you choose and enter as the Verify token of the webhook in the "
        "Meta app dashboard (WhatsApp > Configuration); Meta's GET must repeat it.",
    )
    app_secret: SecretStr = Field(
        description="The Meta app's App Secret (App settings > Basic): the key of "
        "X-Hub-Signature-256.",
    )


class WhatsAppSource(Source[WhatsAppConfig]):
    """Messages to a WhatsApp Business number through the Cloud API."""

    Config = WhatsAppConfig
    description = "WhatsApp Business Cloud API webhook: messages are leads, statuses are not."
    retries_non_2xx = True
    kept_headers = ("x-hub-signature-256",)
    methods = ("GET", "POST")

    def handshake(self, request: InboundRequest) -> HookResponse | None:
        return meta.handshake(request, self.config.verify_token)

    def verify(self, request: InboundRequest) -> None:
        meta.verify_signature(request, self.config.app_secret)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        events: list[ParsedEvent] = []
        for change in meta.changes(request, "whatsapp_business_account"):
            field, value = change.get("field"), change["value"]
            if field != "messages":
                events.append(ParsedEvent(reason=f"whatsapp {field} change"))
                continue
            events += _message_events(value)
            events += _status_events(value)
            if not value.get("messages") and not value.get("statuses"):
                events.append(ParsedEvent(reason="whatsapp messages change without messages"))
        return events


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(WhatsAppSource)


def _list(value: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = value.get(key)
    if items is None:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ParseError(f"value.{key} is not a list of objects")
    return items


def _status_events(value: dict[str, Any]) -> list[ParsedEvent]:
    out = []
    for status in _list(value, "statuses"):
        state = text(status.get("status")) or "unknown"
        ident = text(status.get("id"))
        out.append(ParsedEvent(f"status:{ident}:{state}" if ident else None,
                               reason=f"whatsapp message status {state}"))
    return out


def _message_events(value: dict[str, Any]) -> list[ParsedEvent]:
    contacts = _list(value, "contacts")
    business = as_dict(value.get("metadata"))
    out = []
    for message in _list(value, "messages"):
        ident = text(message.get("id"))
        kind = text(message.get("type")) or "unknown"
        if kind in NOT_LEAD_TYPES:
            out.append(ParsedEvent(ident, reason=f"whatsapp {kind} message"))
            continue
        wa_id, user_id = text(message.get("from")), text(message.get("from_user_id"))
        contact = _sender(contacts, wa_id, user_id)
        wa_id = wa_id or text(contact.get("wa_id"))
        user_id = user_id or text(contact.get("user_id"))
        if not wa_id and not user_id:
            raise ParseError("a WhatsApp message without its sender (from / from_user_id)")
        out.append(ParsedEvent(ident, lead=_draft(message, kind, contact, wa_id, user_id, business)))
    return out


def _sender(contacts: list[dict[str, Any]], wa_id: str | None, user_id: str | None) -> dict[str, Any]:
    for contact in contacts:
        if (wa_id and text(contact.get("wa_id")) == wa_id) or (
            user_id and text(contact.get("user_id")) == user_id
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _draft(message: dict[str, Any], kind: str, contact: dict[str, Any], wa_id: str | None,
           user_id: str | None, business: dict[str, Any]) -> LeadDraft:
    profile = as_dict(contact.get("profile"))
    ident = wa_id or user_id or ""
    draft = LeadDraft(
        channel="messenger",
        name=text(profile.get("name")),
        phones=[international(wa_id)] if wa_id else [],
        messengers=[Messenger(kind="whatsapp", id=ident, username=text(profile.get("username")))],
        message=_message_text(message, kind),
        conversation_key=f"wa:{ident}",
    )
    if user_id:
        draft.fields["whatsapp_user_id"] = user_id
    if kind != "text":
        draft.fields["message_type"] = kind
    if number := text(business.get("display_phone_number")):
        draft.fields["business_number"] = number
    referral = message.get("referral")
    if isinstance(referral, dict):
        if clid := text(referral.get("ctwa_clid")):
            draft.click_ids["ctwa_clid"] = clid
        for key in REFERRAL_KEPT:
            if value := text(referral.get(key)):
                draft.fields[f"referral_{key}"] = value
    shared = message.get("contacts")
    if kind == "contacts" and isinstance(shared, list):
        _shared_cards(shared, wa_id, draft)
    return draft


def _message_text(message: dict[str, Any], kind: str) -> str | None:
    """What the person wrote or chose, for every message type that has words."""
    body = as_dict(message.get(kind))
    if kind == "text":
        return text(body.get("body"))
    if kind in ("image", "video", "document", "audio", "sticker"):
        return text(body.get("caption"))
    if kind == "button":
        return text(body.get("text"))
    if kind == "interactive":
        for reply in ("button_reply", "list_reply"):
            chosen = body.get(reply)
            if isinstance(chosen, dict):
                parts = (text(chosen.get("title")), text(chosen.get("description")))
                return " — ".join(t for t in parts if t) or None
        nfm = body.get("nfm_reply")
        return text(nfm.get("response_json")) if isinstance(nfm, dict) else None
    if kind == "location":
        place = [text(body.get(k)) for k in ("name", "address")]
        coords = [text(body.get(k)) for k in ("latitude", "longitude")]
        if all(coords):
            place.append(f"{coords[0]},{coords[1]}")
        return ", ".join(p for p in place if p) or None
    if kind == "order":
        return text(body.get("text"))
    return None


def _shared_cards(cards: list[Any], wa_id: str | None, draft: LeadDraft) -> None:
    """A card of the sender's own number adds its phones and emails; others are kept as written."""
    kept = []
    for card in cards:
        if not isinstance(card, dict):
            continue
        phones = [p for p in card.get("phones") or [] if isinstance(p, dict)]
        own = wa_id is not None and any(text(p.get("wa_id")) == wa_id for p in phones)
        if own:
            draft.phones += [n for p in phones if (n := text(p.get("phone")))]
            draft.emails += [e for m in card.get("emails") or []
                             if isinstance(m, dict) and (e := text(m.get("email")))]
        else:
            kept.append(card)
    if kept:
        draft.fields["shared_contacts"] = kept
