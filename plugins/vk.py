"""``vk``: a VK community's Callback API (messages to the community and VK lead forms).

* Confirmation: VK's first request ``{"type": "confirmation", "group_id": ...}`` is answered
  with ``confirmation_code`` as ``text/plain`` (stored as a non-lead event first).
* Auth: when ``secret`` is set (the community's "Secret key"), the body's ``secret`` must
  equal it, compared in constant time; otherwise 401. A confirmation request without any
  ``secret`` is still answered: the code it returns proves nothing to anyone but VK.
* Event id: ``event_id`` (VK resends an event until it gets ``ok``).
* ``message_new``: a message a person writes to the community. ``object.message`` since
  API 5.103; the message is ``object`` itself in older versions (``from_id``/``text``, or
  ``user_id``/``body`` before 5.80). The VK user id is the messenger contact; VK states no
  name or phone, so phones and emails are read from the text. ``ref``/``ref_source``
  (vk.me links and ads) are kept in ``fields``. ``conversation_key =
  "vk:<group id>:<peer id>:<user id>"``.
* ``lead_forms_new``: a VK lead-ad form (channel ``form``): ``answers[]`` by their standard
  keys (``first_name``, ``last_name``, ``patronymic_name``, ``phone_number``, ``email``),
  custom questions under their question text; form id, name, ad id and lead id in ``fields``.
* Every other event (``message_reply``, ``message_edit``, ``group_join``, ...) is not a lead.

Answer: ``ok`` (``text/plain``) to every accepted event, the code to a confirmation.
Sources: https://dev.vk.com/ru/api/callback/getting-started ,
https://dev.vk.com/ru/api/community-events/json-schema
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field, SecretStr

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
    draft_from_fields,
    expected_secret,
    find_emails,
    find_phones,
    hookimpl,
)
from hub.sdk import (
    same_secret as same,
)
from hub.sdk.messengers import as_dict, text

#: Standard lead-form answer keys and the canonical names they stand for.
FORM_KEYS = {"first_name": "first_name", "last_name": "last_name", "patronymic_name": "middle_name",
             "phone_number": "phone", "email": "email"}
#: Peer ids from this value up are group chats, not a person's dialog with the community.
CHAT_PEER_START = 2_000_000_000


class VKConfig(SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "vk"``."""

    confirmation_code: str = Field(
        description="The string the community's Callback API settings show under "
        "\"String to be returned\" (Строка, которую должен вернуть сервер).",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="The community's Callback API \"Secret key\" (Секретный ключ); when set, "
        "every event must carry it.",
    )


class VKSource(Source[VKConfig]):
    """Messages and lead forms of a VK community."""

    Config = VKConfig
    description = "VK Callback API: community messages and VK lead-ad forms."
    retries_non_2xx = True
    #: The community's secret key: whoever reads it can forge VK events; never stored.
    secret_fields: ClassVar[tuple[str, ...]] = ("secret",)

    def verify(self, request: InboundRequest) -> None:
        secret = self.config.secret
        if secret is None:
            return
        given = _envelope_or_none(request) or {}
        value = given.get("secret")
        if value is None and given.get("type") == "confirmation":
            return  # answering with the code reveals nothing; VK may not sign this one
        expected = expected_secret(secret, "secret")  # never compare against ""
        if not isinstance(value, str) or not same(value, expected):
            raise AuthError("missing or wrong secret")

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        envelope = request.json()
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            raise ParseError("expected a VK Callback API event with a type")
        kind = envelope["type"]
        event_id = text(envelope.get("event_id"))
        if kind == "confirmation":
            return [ParsedEvent(None, reason="vk confirmation request")]
        obj = envelope.get("object")
        group_id = text(envelope.get("group_id")) or ""
        if kind == "message_new":
            if not isinstance(obj, dict):
                raise ParseError("message_new without an object")
            return [self._message(event_id, obj, group_id)]
        if kind == "lead_forms_new":
            if not isinstance(obj, dict):
                raise ParseError("lead_forms_new without an object")
            return [ParsedEvent(event_id, lead=_lead_form(obj))]
        return [ParsedEvent(event_id, reason=f"vk {kind}")]

    def respond_quarantined(self, request: InboundRequest, reason: str) -> HookResponse:
        """VK resends every event not answered with the literal ``ok``, quarantined ones too."""
        return HookResponse(200, "ok", media_type="text/plain")

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        envelope = _envelope_or_none(request)
        if envelope and envelope.get("type") == "confirmation":
            return HookResponse(200, self.config.confirmation_code, media_type="text/plain")
        return HookResponse(200, "ok", media_type="text/plain")

    def _message(self, event_id: str | None, obj: dict[str, Any], group_id: str) -> ParsedEvent:
        message = as_dict(obj.get("message")) or obj
        from_id = message.get("from_id", message.get("user_id"))
        if isinstance(from_id, bool) or not isinstance(from_id, int | str) or not str(from_id).strip():
            raise ParseError("a VK message without from_id")
        sender = str(from_id).strip()
        if sender.startswith("-"):
            return ParsedEvent(event_id, reason="vk message from a community")
        if message.get("out") in (1, True):
            return ParsedEvent(event_id, reason="vk outgoing message")
        peer = text(message.get("peer_id")) or sender
        if peer.isdigit() and int(peer) >= CHAT_PEER_START:
            return ParsedEvent(event_id, reason="vk message in a group chat")
        words = message.get("text", message.get("body"))
        words = words if isinstance(words, str) else None
        draft = LeadDraft(
            channel="messenger",
            messengers=[Messenger(kind="vk", id=sender)],
            message=words,
            conversation_key=f"vk:{group_id}:{peer}:{sender}",
        )
        if words:
            draft.phones = find_phones(words, self.context.default_region)
            draft.emails = find_emails(words)
        for key in ("ref", "ref_source"):
            if value := text(message.get(key)):
                draft.fields[f"vk_{key}"] = value
        if not words and message.get("attachments"):
            draft.fields["message_type"] = "attachments"
        return ParsedEvent(event_id, lead=draft)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(VKSource)


def _envelope_or_none(request: InboundRequest) -> dict[str, Any] | None:
    try:
        data = request.json()
    except ParseError:
        return None
    return data if isinstance(data, dict) else None


def _answer_text(answer: Any) -> str | None:
    """An answer: a string, or for multiple-choice questions a list of strings or options."""
    if isinstance(answer, list):
        parts = [_answer_text(a) for a in answer]
        return ", ".join(p for p in parts if p) or None
    if isinstance(answer, dict):
        return text(answer.get("value", answer.get("answer")))
    return text(answer)


def _lead_form(obj: dict[str, Any]) -> LeadDraft:
    answers = obj.get("answers")
    if not isinstance(answers, list):
        raise ParseError("lead_forms_new without answers[]")
    items: list[tuple[str, str]] = []
    field_map: dict[str, str] = {}
    for answer in answers:
        if not isinstance(answer, dict):
            continue
        key, value = text(answer.get("key")) or "", _answer_text(answer.get("answer"))
        if value is None:
            continue
        if key in FORM_KEYS:
            field_map[key] = FORM_KEYS[key]
            items.append((key, value))
        else:
            items.append((text(answer.get("question")) or key or "answer", value))
    draft = draft_from_fields(items, channel="form", field_map=field_map)
    if user := text(obj.get("user_id")):
        draft.messengers.append(Messenger(kind="vk", id=user))
    for key in ("lead_id", "form_id", "form_name", "ad_id", "group_id"):
        if value := text(obj.get(key)):
            draft.fields[f"vk_{key}"] = value
    return draft
