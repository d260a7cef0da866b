"""``telegram``: a Telegram bot's webhook (Bot API ``setWebhook``), one ``Update`` per request.

* Auth: when ``secret_token`` is set (pass the same value to ``setWebhook``), every request
  must carry it in ``X-Telegram-Bot-Api-Secret-Token``; compared in constant time.
* Event id: ``update_id`` — Telegram redelivers an unconfirmed update with the same id.
* Leads: a message (or a Telegram Business message) a person writes to the bot in a
  private chat. Name from ``from.first_name``/``last_name``, the Telegram user id and
  ``@username`` as the messenger contact, the text (or caption) as the message, phones and
  emails the text contains, and ``conversation_key = "tg:<chat id>"`` so that later messages
  of the chat within the dedup window extend the same lead.
* A contact shared with the "share my phone number" button (``message.contact`` whose
  ``user_id`` is the sender) gives the lead its phone. A contact card of someone else is
  kept in ``fields["shared_contact"]``, not taken as the sender's number.
* Deep links ``t.me/<bot>?start=<payload>`` arrive as ``/start <payload>``: the payload is
  kept in ``fields["start_payload"]``. Telegram allows only ``A-Za-z0-9_-`` there and
  recommends base64url for anything else, so a payload that is base64url of a query
  string (``utm_source=vk&utm_campaign=spring``) or of a JSON object gives its UTM tags
  and click ids.
* Not leads (stored, answered 200): edits, channel posts, button presses
  (``callback_query``), membership changes, messages in groups, messages from bots, and
  every other update kind.

Answer: ``200`` with an empty body (a JSON body would be read as a Bot API call).
Sources: https://core.telegram.org/bots/api#update , https://core.telegram.org/bots/api#setwebhook ,
https://core.telegram.org/bots/features#deep-linking
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import Field, SecretStr, field_validator

from hub.sdk import (
    Accepted,
    AuthError,
    Connector,
    HookResponse,
    InboundRequest,
    LeadDraft,
    Messenger,
    ParsedEvent,
    ParseError,
    Source,
    SourceConfig,
    classify_mark,
    find_emails,
    find_phones,
    hookimpl,
    loads_json,
)
from hub.sdk import (
    same_secret as same,
)
from hub.sdk.messengers import international, text

SECRET_HEADER = "x-telegram-bot-api-secret-token"
_SECRET_CHARS = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_START = re.compile(r"^/start(?:@\w+)?(?:\s+(?P<payload>\S+))?\s*$", re.DOTALL)
#: Message kinds that carry what a person sent, for ``fields["message_type"]`` when there is no text.
_CONTENT_KINDS = (
    "photo", "video", "voice", "video_note", "audio", "document", "sticker", "animation",
    "location", "venue", "contact", "poll", "dice", "story",
)


class TelegramConfig(SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "telegram"``."""

    secret_token: SecretStr | None = Field(
        default=None,
        description="The secret_token given to setWebhook (1-256 of A-Z a-z 0-9 _ -); every "
        "request must then carry it in X-Telegram-Bot-Api-Secret-Token. Strongly recommended.",
    )

    @field_validator("secret_token")
    @classmethod
    def _telegram_charset(cls, value: SecretStr | None) -> SecretStr | None:
        # an empty value never gets here: ConnectorConfig refuses it as an unset ${VAR}
        if value is not None and not _SECRET_CHARS.match(value.get_secret_value()):
            raise ValueError("Telegram accepts 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value


class TelegramSource(Source[TelegramConfig]):
    """Messages to a Telegram bot."""

    Config = TelegramConfig
    description = "Telegram bot webhook: private messages, shared phone numbers, /start deep links."
    retries_non_2xx = True
    secret_headers = ("x-telegram-bot-api-secret-token",)

    def verify(self, request: InboundRequest) -> None:
        secret = self.config.secret_token
        if secret is None:
            return
        given = request.headers.get(SECRET_HEADER, "")
        if not given or not same(given, secret.get_secret_value()):
            raise AuthError("missing or wrong X-Telegram-Bot-Api-Secret-Token")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        update = request.json()
        if not isinstance(update, dict):
            raise ParseError("expected a Telegram Update object")
        update_id = update.get("update_id")
        if isinstance(update_id, bool) or not isinstance(update_id, int):
            raise ParseError("a Telegram Update needs an integer update_id")
        event_id = str(update_id)
        kinds = [key for key in update if key != "update_id"]
        if not kinds:
            raise ParseError("the Update holds no event")
        kind = kinds[0]
        message = update.get(kind)
        if kind not in ("message", "business_message"):
            return [ParsedEvent(event_id, reason=f"telegram {kind}")]
        if not isinstance(message, dict):
            raise ParseError(f"{kind} is not an object")
        why_not = _not_a_lead(message)
        if why_not:
            return [ParsedEvent(event_id, reason=why_not)]
        return [ParsedEvent(event_id, lead=self._draft(message, kind))]

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        return HookResponse(200, b"")

    def respond_quarantined(self, request: InboundRequest, reason: str) -> HookResponse:
        """200 with an empty body, as for any update: Telegram reads a webhook answer's body
        as a Bot API call (core.telegram.org/bots/api, "Making requests when getting
        updates"), and retries anything but a 2xx. The update is stored either way."""
        return HookResponse(200, b"")

    def _draft(self, message: dict[str, Any], kind: str) -> LeadDraft:
        sender: dict[str, Any] = message["from"]
        chat: dict[str, Any] = message["chat"]
        user_id = text(sender.get("id")) or ""
        draft = LeadDraft(
            channel="messenger",
            name=" ".join(p for p in (text(sender.get("first_name")), text(sender.get("last_name"))) if p)
            or None,
            messengers=[Messenger(kind="telegram", id=user_id, username=text(sender.get("username")))],
            conversation_key=f"tg:{text(chat.get('id'))}",
        )
        if kind == "business_message" and (conn := text(message.get("business_connection_id"))):
            draft.fields["business_connection_id"] = conn
        words = message.get("text")
        words = words if isinstance(words, str) else message.get("caption")
        words = words if isinstance(words, str) else None
        start = _START.match(words) if words else None
        if start:
            payload = start.group("payload")
            if payload:
                draft.fields["start_payload"] = payload
                _read_start_payload(payload, draft)
        elif words:
            draft.message = words
            self._contacts_in_text(words, message, draft)
        else:
            found = next((k for k in _CONTENT_KINDS if k in message), None)
            if found:
                draft.fields["message_type"] = found
        contact = message.get("contact")
        if isinstance(contact, dict) and (phone := text(contact.get("phone_number"))):
            if text(contact.get("user_id")) == user_id:
                draft.phones.append(international(phone))
            else:
                draft.fields["shared_contact"] = {
                    k: contact[k] for k in ("phone_number", "first_name", "last_name", "user_id")
                    if k in contact
                }
        return draft

    def _contacts_in_text(self, words: str, message: dict[str, Any], draft: LeadDraft) -> None:
        """Phones and emails Telegram marked as entities, then those the text plainly holds."""
        entities = message.get("entities") or message.get("caption_entities") or []
        for entity in entities if isinstance(entities, list) else []:
            if isinstance(entity, dict) and entity.get("type") in ("phone_number", "email"):
                value = _entity_text(words, entity)
                if value:
                    (draft.phones if entity["type"] == "phone_number" else draft.emails).append(value)
        region = self.context.default_region
        draft.phones += [p for p in find_phones(words, region) if p not in draft.phones]
        draft.emails += [e for e in find_emails(words) if e not in draft.emails]


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(TelegramSource)


def _not_a_lead(message: dict[str, Any]) -> str | None:
    sender, chat = message.get("from"), message.get("chat")
    if not isinstance(chat, dict) or chat.get("id") is None:
        return "telegram message without a chat"
    if chat.get("type") != "private":
        return f"telegram message in a {chat.get('type') or 'unknown'} chat"
    if not isinstance(sender, dict) or text(sender.get("id")) is None:
        return "telegram message without a sender"
    if sender.get("is_bot") is True:
        return "telegram message from a bot"
    return None


def _entity_text(words: str, entity: dict[str, Any]) -> str | None:
    """The entity's text: Telegram counts ``offset`` and ``length`` in UTF-16 code units."""
    offset, length = entity.get("offset"), entity.get("length")
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length <= 0:
        return None
    units = words.encode("utf-16-le", "surrogatepass")
    piece = units[offset * 2:(offset + length) * 2]
    return piece.decode("utf-16-le", "replace").strip() or None


def _read_start_payload(payload: str, draft: LeadDraft) -> None:
    """UTM tags and click ids from a base64url payload holding a query string or JSON object."""
    try:
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return
    pairs: list[tuple[str, Any]]
    stripped = decoded.strip()
    if stripped.startswith("{"):
        try:
            data = loads_json(stripped)
        except ParseError:
            return
        pairs = list(data.items()) if isinstance(data, dict) else []
    elif "=" in stripped:
        pairs = parse_qsl(stripped.lstrip("?"), keep_blank_values=False)
    else:
        return
    for key, value in pairs:
        kind_key = classify_mark(str(key))
        if kind_key is None or not isinstance(value, str) or not value.strip():
            continue
        kind, name = kind_key
        target = draft.utm if kind == "utm" else draft.click_ids
        target.setdefault(name, value.strip())
