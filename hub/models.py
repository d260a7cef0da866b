"""The normalized lead: exactly the contract's JSON (``shared/CONTRACT.md``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from pydantic_core import PydanticSerializationError

from hub.bodies import clean_text, clean_value

Channel = Literal["form", "email", "messenger", "call"]
MessengerKind = Literal["telegram", "whatsapp", "vk", "viber", "instagram", "max"]
LeadStatus = Literal[
    "received", "routed", "delivered", "partially_delivered", "failed", "duplicate", "unrouted"
]
DeliveryStatus = Literal["pending", "delivered", "failed", "dead"]

UTM_KEYS = ("source", "medium", "campaign", "term", "content")
CLICK_ID_KEYS = ("gclid", "yclid", "fbclid", "ysclid", "ctwa_clid", "_openstat", "roistat")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Messenger(_Model):
    kind: MessengerKind
    id: str
    username: str | None = None


class Contact(_Model):
    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    messengers: list[Messenger] = Field(default_factory=list)

    def has_any(self) -> bool:
        """A lead needs at least one way to reach the person."""
        return bool(self.phones or self.emails or self.messengers)


class Utm(_Model):
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None


class ClickIds(BaseModel):
    """Known click ids; the contract shows gclid, yclid and fbclid always, others when present."""

    gclid: str | None = None
    yclid: str | None = None
    fbclid: str | None = None
    ysclid: str | None = None
    ctwa_clid: str | None = None
    openstat: str | None = Field(default=None, alias="_openstat", serialization_alias="_openstat")
    roistat: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Call(_Model):
    direction: Literal["inbound", "outbound"] = "inbound"
    from_: str | None = Field(default=None, alias="from", serialization_alias="from")
    to: str | None = None
    started_at: datetime | None = None
    duration_s: int = 0
    answered: bool = False
    recording_url: str | None = None
    tracking_number: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Delivery(_Model):
    id: str
    destination: str
    status: DeliveryStatus
    external_id: str | None = None
    attempts: int = 0
    last_error: str | None = None


class Lead(_Model):
    id: str
    source: str
    channel: Channel
    received_at: datetime
    contact: Contact = Field(default_factory=Contact)
    company: str | None = None
    message: str | None = None
    product: str | None = None
    utm: Utm = Field(default_factory=Utm)
    click_ids: ClickIds = Field(default_factory=ClickIds)
    page_url: str | None = None
    referrer: str | None = None
    call: Call | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    duplicate_of: str | None = None
    assigned_to: str | None = None
    status: LeadStatus = "received"
    deliveries: list[Delivery] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_lone_surrogates(self, info: ValidationInfo) -> Lead:
        """Every string of a lead can be encoded as UTF-8: a lone surrogate becomes U+FFFD.

        Request bodies are decoded without them (``hub/bodies.py``), but a store may hold
        leads from before that, and a third-party plugin may decode bytes its own way;
        one such character made every admin page and delivery that touched the lead fail
        (``UnicodeEncodeError``). Built or loaded, a ``Lead`` is clean, so the admin API,
        the JSONL file, webhooks and CRMs all serialize it. The check is one
        ``model_dump_json`` (a few µs); only a lead that fails it is walked and fixed.
        Skipped for JSON text pydantic's own parser read (``from_json``): it refuses a
        lone surrogate, so what it accepts is clean already.
        """
        if info.context is _PARSED_JSON or info.context is CHECKED_WHEN_STORED:
            return self
        try:
            self.model_dump_json()
        except PydanticSerializationError:
            _clean_model(self)
        return self

    @classmethod
    def from_json(cls, text: str | bytes) -> Lead:
        """A lead from JSON text (a stored lead), parsed and validated in one pass; raises
        ``ValidationError`` for text pydantic's parser refuses (a lone surrogate escape,
        ``NaN``): read that with ``json.loads`` and ``model_validate``, which clean it."""
        return cls.model_validate_json(text, context=_PARSED_JSON)

    def stored_json(self, exclude: set[str] | None = None) -> str:
        """The lead's JSON text (aliases applied) for the store: ``model_dump_json``, which
        is also the lone-surrogate check of a lead built with ``CHECKED_WHEN_STORED``; a
        lead that fails it is cleaned in place first, as the validator would have."""
        try:
            return self.model_dump_json(by_alias=True, exclude=exclude)
        except PydanticSerializationError:
            _clean_model(self)
            return self.model_dump_json(by_alias=True, exclude=exclude)

    def to_json_dict(self) -> dict[str, Any]:
        """The contract's JSON shape (aliases such as ``call.from`` applied)."""
        return self.model_dump(mode="json", by_alias=True)


#: The validation context of ``Lead.from_json`` (compared by identity).
_PARSED_JSON: dict[str, Any] = {"parsed_json": True}
#: A validation context (compared by identity) that skips the lone-surrogate check of a
#: new ``Lead``, for a caller whose only use of the lead's text is ``Lead.stored_json``,
#: which makes the same check as it encodes: ingest, whose store JSON was a second
#: ``model_dump_json`` of every lead (together 4 % of the api's CPU under load).
CHECKED_WHEN_STORED: dict[str, Any] = {"checked_when_stored": True}


def _clean_model(model: BaseModel) -> None:
    """Replace lone surrogates in every string of ``model`` and its sub-models, in place."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _clean_model(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            for item in value:
                _clean_model(item)
        elif isinstance(value, str):
            object.__setattr__(model, name, clean_text(value))
        elif isinstance(value, list | dict):
            object.__setattr__(model, name, clean_value(value))
