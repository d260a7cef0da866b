"""The typed objects plugins register: sources (webhooks in) and destinations (leads out).

A connector class is code; a connector is one configured instance of it, named by the
admin in ``plugins.toml`` (``[sources.site_form]``, ``[destinations.amo_main]``). Each
class declares its ``Config`` (pydantic, ``extra="forbid"``, ``SecretStr`` for secrets),
and destinations declare their limits; the engine reads them and special-cases nothing.

Sources are pure: ``verify`` and ``parse`` look only at the request, so they are tested
with real payload files and no I/O. Destinations do their I/O synchronously inside a
worker; the engine decides retries from the ``hub.errors`` they raise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import parse_qsl

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretBytes,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from hub.bodies import clean_items, decode_text, loads_json
from hub.capabilities import (
    LEGACY_FLAGS,
    Capability,
    apply_legacy_flags,
    declares,
    infer_legacy,
    is_sdk_class,
)
from hub.errors import LeadHubError, ParseError
from hub.models import Channel, Lead, Messenger

#: How ``leadhub check`` words an empty secret: ``[sources.x] token: is empty (an unset ${VAR}?)``.
EMPTY_SECRET = "is empty (an unset ${VAR}?)"


def _known_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Moscow)") from None
    return value


#: A setting naming an IANA time zone (``Europe/Moscow``), refused at load when unknown.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class ConnectorConfig(BaseModel):
    """Settings every connector has; a plugin's ``Config`` extends it.

    Every ``SecretStr`` (or ``SecretBytes``) a plugin declares must be non-empty: ``"${TOKEN}"``
    with the variable unset expands to ``""``, and a source would compare against it (an
    open door the admin meant to lock) or a destination sign with it (every delivery failing
    for a day). The check lives here, on every field of every subclass, so no plugin can
    forget it; an optional secret left out (``None``) stays allowed where the plugin
    documents an open source.
    """

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(description="The plugin id (entry-point name) this connector runs.")
    enabled: bool = Field(default=True, description="A disabled source answers 404; a disabled "
                          "destination holds its deliveries as pending.")

    @field_validator("*", mode="after")
    @classmethod
    def _leadhub_secrets_not_empty(cls, value: Any, info: ValidationInfo) -> Any:
        # "*" also covers the fields of every subclass; pydantic reports each failing field
        # with its own key, so ``leadhub check`` names all empty secrets in one run.
        empty = empty_secrets(value)
        if empty:
            inside = "" if empty == [""] else " at " + ", ".join(empty)
            field = cls.model_fields.get(info.field_name or "")
            optional = field is not None and not field.is_required()
            hint = "; to run without it, leave the key out" if optional else ""
            raise PydanticCustomError("empty_secret", EMPTY_SECRET + inside + hint)
        return value


def empty_secrets(value: Any, where: str = "") -> list[str]:
    """Where in ``value`` an empty or blank secret sits: ``[""]`` for ``value`` itself,
    ``["[0]", "['key']", ".field"]`` for items of lists, dicts and nested models."""
    if isinstance(value, SecretStr | SecretBytes):
        return [] if value.get_secret_value().strip() else [where]
    if isinstance(value, BaseModel):
        return [found for name in type(value).model_fields
                for found in empty_secrets(getattr(value, name), f"{where}.{name}")]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in empty_secrets(item, f"{where}[{key!r}]")]
    if isinstance(value, list | tuple | set | frozenset):
        return [found for i, item in enumerate(value) for found in empty_secrets(item, f"{where}[{i}]")]
    return []


class SourceConfig(ConnectorConfig):
    public_url: str | None = Field(
        default=None,
        description="Public address standing for /hooks/{source} behind a proxy (signed URLs).",
    )
    max_body_bytes: int | None = Field(
        default=None, gt=0,
        description="Largest body this source accepts, instead of [hub] max_body_bytes: raise "
        "it for e-mail with attachments (SendGrid posts up to 30 MB, and drops a message it "
        "got a 413 for without retrying).",
    )


class TrackingUtm(BaseModel):
    """UTM tags a call-tracking number stands for."""

    model_config = ConfigDict(extra="forbid")
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None


class CallSourceConfig(SourceConfig):
    """Settings of telephony sources: the numbers that stand for ad campaigns."""

    tracking_numbers: dict[str, TrackingUtm] = Field(
        default_factory=dict,
        description='Tracking number → UTM tags, e.g. {"+74957778899" = {source = "yandex"}}.',
    )


class DestinationConfig(ConnectorConfig):
    rate_limit_per_s: float | None = Field(
        default=None, gt=0, description="Lower the plugin's documented request rate (never raise it)."
    )


def _no_throttle() -> None:
    return None


def _no_slot() -> AbstractContextManager[None]:
    return nullcontext()


@dataclass(frozen=True)
class ConnectorContext:
    """What the hub hands every connector instance.

    ``request_slot()`` is a context manager around one HTTP request to this destination:
    entering waits until the request may leave under the destination's limits (shared by
    every worker process), leaving tells the limiter it was answered, which is what makes
    the limit hold whatever the latency (``hub/engine/limiter.py``). Destinations that set
    ``counts_own_requests`` wrap each request they make in it; for all others the engine
    holds one slot per ``deliver``/``lookup`` call. ``throttle()`` is the same for a caller
    that cannot say when its request is answered.
    """

    name: str
    data_dir: Path
    default_region: str = "RU"
    throttle: Callable[[], None] = _no_throttle
    request_slot: Callable[[], AbstractContextManager[None]] = _no_slot


ConfigT = TypeVar("ConfigT", bound=ConnectorConfig)

#: What a connector class is. A source or a destination is configured by its own table
#: (``[sources.NAME]``, ``[destinations.NAME]``); a reader is built from its plugin's
#: destination table (``hub/sdk/readers.py``).
ConnectorKind = Literal["source", "destination", "crm_reader", "accounting_reader"]

#: Seconds one request may take when a connector's ``Config`` has no ``timeout_s``.
DEFAULT_REQUEST_TIMEOUT_S = 30.0


def config_number(config: BaseModel, key: str) -> float | None:
    """The value of the numeric setting ``key`` when ``config``'s model declares it, else None.

    The one place the core reads a setting that only some plugins' models have
    (``timeout_s``, ``poll_interval_s``, ``rate_limit_per_s``); everything else reads the
    connector's typed properties built on it."""
    if key not in type(config).model_fields:
        return None
    value = getattr(config, key)
    return None if value is None else float(value)


class Connector(Generic[ConfigT]):
    """Base of every connector class. ``plugin_id`` is filled in from the entry-point name.

    ``capabilities`` is what the class can do (``hub.capabilities.Capability``), declared
    as data: the engine reads it, and discovery checks that each declared capability's
    methods are implemented. A class that declares none (written before capabilities
    existed) gets the set its overridden methods and old boolean flags stand for.
    """

    kind: ClassVar[ConnectorKind]
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    plugin_id: ClassVar[str] = ""
    description: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: The class (or a plugin class it inherits from) sets ``capabilities`` itself.
    capabilities_declared: ClassVar[bool] = False
    #: ``capabilities`` was inferred from methods, not declared (discovery asks to declare it).
    capabilities_inferred: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declared = declares(cls)
        caps = cls.capabilities
        inferred = False
        if not declared and not is_sdk_class(cls):
            inferred = infer_legacy(cls, caps) != caps
            caps = infer_legacy(cls, caps)
        caps = apply_legacy_flags(cls, caps)
        cls.capabilities = caps
        cls.capabilities_declared = declared and not is_sdk_class(cls)
        cls.capabilities_inferred = inferred
        for flag, cap in LEGACY_FLAGS.items():  # kept as read-only views of the set
            if hasattr(cls, flag):
                setattr(cls, flag, cap in caps)

    def __init__(self, config: ConfigT, context: ConnectorContext) -> None:
        self.config = config
        self.context = context

    @property
    def name(self) -> str:
        return self.context.name

    @property
    def request_timeout_s(self) -> float:
        """How long one request of this connector may take: its ``timeout_s`` setting (HTTP
        connectors have one), else ``DEFAULT_REQUEST_TIMEOUT_S``. The engine sizes the
        lease of a delivery attempt by it."""
        return config_number(self.config, "timeout_s") or DEFAULT_REQUEST_TIMEOUT_S

    def has(self, capability: Capability) -> bool:
        """Whether this connector's class declares ``capability``."""
        return capability in self.capabilities

    def close(self) -> None:
        """Release clients and files; called when the hub stops."""


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class InboundRequest:
    """A webhook as received, before anything is trusted. Header names are lower-case."""

    method: str
    source: str
    path: str  # what follows /hooks/{source}, e.g. "events/call"; "" when nothing does
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes
    url: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def query_dict(self) -> dict[str, str]:
        """Query parameters, the last value of a repeated name winning."""
        return dict(self.query)

    def form_items(self) -> list[tuple[str, str]]:
        """Fields of a urlencoded or multipart body, in order; file parts are skipped.

        Names and values never hold a lone surrogate (``hub/bodies.py``); a body that
        cannot be read is a ``ParseError``."""
        ctype = self.content_type
        if self._urlencoded():
            # Bytes first (latin-1 keeps each one), then each name and value in its charset:
            # a browser percent-encodes a form in its page's charset and never says which,
            # so a windows-1251 page's "Иван" came as %C8%E2%E0%ED and read as U+FFFD x 4.
            declared = _charset_param(self.headers.get("content-type", ""))
            pairs = parse_qsl(self.body.decode("latin-1"), keep_blank_values=True,
                              encoding="latin-1")
            return clean_items([(_form_text(k, declared), _form_text(v, declared))
                                for k, v in pairs])
        if ctype == "text/plain" and b"=" in self.body:
            return clean_items(_text_plain_items(self.body, self.headers.get("content-type", "")))
        if ctype == "multipart/form-data":
            try:
                return clean_items(_multipart_items(self.headers.get("content-type", ""), self.body))
            except RecursionError:  # multipart inside multipart, thousands deep
                raise ParseError("multipart body nested too deep") from None
        raise ParseError(f"expected a form body, got {ctype or 'no content type'}")

    def _urlencoded(self) -> bool:
        """A urlencoded form: so labelled, or unlabelled with a ``name=value`` in it."""
        ctype = self.content_type
        return ctype == "application/x-www-form-urlencoded" or (not ctype and b"=" in self.body)

    def form_bytes(self, name: str) -> bytes | None:
        """The first value of the form field ``name`` as the bytes that were sent (a
        urlencoded value percent-decoded, a multipart part's payload), None when there is
        no such field. For a field that is itself a document in its own encodings (a raw
        e-mail message, whose 8-bit parts each name a charset): ``form_items`` decodes
        every value as text first, and a KOI8-R part's bytes did not survive that."""
        ctype = self.content_type
        if self._urlencoded():
            for key, value in parse_qsl(self.body.decode("latin-1"), keep_blank_values=True,
                                        encoding="latin-1"):
                if key == name:
                    return value.encode("latin-1")
            return None
        if ctype == "multipart/form-data":
            try:
                parts = _multipart_parts(self.headers.get("content-type", ""), self.body)
            except RecursionError:
                raise ParseError("multipart body nested too deep") from None
            return next((raw for key, raw, _charset in parts if key == name), None)
        return None

    def json(self) -> Any:
        """The body as JSON, decoded by ``hub.bodies.loads_json``: nesting bounded, no lone
        surrogates, no ``NaN``/``Infinity``; anything else is a ``ParseError``."""
        return loads_json(self.body)


def _charset_param(content_type: str) -> str | None:
    """The ``charset=`` of a Content-Type header, when it names one."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"'):
            return value.strip().strip('"')
    return None


def _form_text(latin: str, declared: str | None) -> str:
    """A urlencoded name or value (its bytes as latin-1 text) decoded (``decode_text``)."""
    return latin if latin.isascii() else decode_text(latin.encode("latin-1"), declared)


def _text_plain_items(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """An HTML form posted with ``enctype="text/plain"``: one ``name=value`` per line,
    CRLF-terminated, nothing escaped (WHATWG HTML, "text/plain encoding algorithm"). A
    single line with no line break is read as urlencoded instead: that is how scripts
    mislabel a urlencoded form, and a one-field text/plain form reads the same either way
    but for ``+`` and ``%``."""
    text = decode_text(body, _charset_param(content_type))
    lines = text.splitlines()
    if len(lines) <= 1 and "&" in text:
        pairs = parse_qsl(text.strip(), keep_blank_values=True)
        return [(k, v) for k, v in pairs]
    return [(name, value) for name, sep, value in (line.partition("=") for line in lines) if sep]


def _multipart_items(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """Parse multipart/form-data with the standard library (RFC 7578); files are dropped."""
    items: list[tuple[str, str]] = []
    for name, raw, charset in _multipart_parts(content_type, body):
        try:
            items.append((name, raw.decode(charset, errors="replace")))
        except LookupError:  # a charset Python does not know: read it as UTF-8
            items.append((name, raw.decode("utf-8", errors="replace")))
    return items


def _multipart_parts(content_type: str, body: bytes) -> list[tuple[str, bytes, str]]:
    """(name, payload bytes, charset) of each field of a multipart/form-data body; files
    are dropped."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ParseError("multipart body without a valid boundary")
    parts: list[tuple[str, bytes, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        parts.append((name, payload if isinstance(payload, bytes) else b"",
                      part.get_content_charset() or "utf-8"))
    return parts


@dataclass
class CallInfo:
    """Call details as a provider states them; the core merges events of one call.

    All events with the same ``call_id`` (per source) become ONE lead, in any order:
    each event's non-None values fill in the lead's ``call`` block (an event with a lower
    ``seq`` than one already applied never overwrites it; ``answered`` stays true once
    true; ``duration_s`` keeps the largest). The first event that names the caller
    creates the lead; events that arrive before it are kept and applied when it does.
    ``tracking_number`` (or ``to_number``) found in the source's ``tracking_numbers``
    gives the lead its UTM tags.
    """

    call_id: str
    direction: Literal["inbound", "outbound"] | None = None  # None: this event does not say
    from_number: str | None = None
    to_number: str | None = None
    started_at: datetime | None = None
    duration_s: int | None = None
    answered: bool | None = None
    recording_url: str | None = None
    tracking_number: str | None = None
    seq: int | None = None


@dataclass
class LeadDraft:
    """What a source read from a payload, before the core normalizes it.

    Values are as written by the provider: the core turns phones into E.164, checks
    emails, and finds UTM tags and click ids in ``fields``, ``page_url``, ``referrer``
    and ``cookies`` (in that order of precedence), so no plugin repeats that work.
    """

    channel: Channel
    name: str | None = None
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    messengers: list[Messenger] = field(default_factory=list)
    company: str | None = None
    message: str | None = None
    product: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    utm: dict[str, str] = field(default_factory=dict)
    click_ids: dict[str, str] = field(default_factory=dict)
    page_url: str | None = None
    referrer: str | None = None
    cookies: str | None = None
    call: CallInfo | None = None
    #: A messenger chat: later messages with the same key within ``dedup_window_minutes``
    #: extend one lead (message appended, a shared phone filled in) instead of making new ones.
    conversation_key: str | None = None
    #: The payload only names the lead (Facebook's ``leadgen_id``): the worker calls
    #: ``Source.enrich`` (I/O allowed) before routing, and only then checks the contact.
    needs_enrichment: bool = False


@dataclass
class HookResponse:
    """The answer a provider expects."""

    status_code: int = 200
    body: bytes | str | dict[str, Any] | None = None
    media_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ParsedEvent:
    """One provider event in a request: a lead, or an event that is not one (a ping, a status)."""

    event_id: str | None = None  # the provider's event id: a retry with the same id is not new
    lead: LeadDraft | None = None  # None: stored, answered 200, no lead
    reason: str | None = None  # why it is not a lead, for the record


@dataclass(frozen=True)
class Nonce:
    """What ``Source.nonce`` returns: the nonce, how long the provider's signature over it
    stays acceptable, and a digest of what the signature does not cover."""

    value: str
    ttl_s: float  # at least the signature's tolerance (age plus clock skew)
    content: str  # equal for the provider's retries of one delivery, different for a replay


@dataclass
class Accepted:
    """What the core did with a request, handed to ``Source.respond``."""

    lead_ids: list[str]
    duplicate_event: bool = False


class Source(Connector[ConfigT]):
    """A door leads come through: ``POST /hooks/{name}[/{path}]``."""

    kind: ClassVar[ConnectorKind] = "source"
    Config: ClassVar[type[ConnectorConfig]] = SourceConfig
    #: Providers that retry a non-2xx answer for hours get 200 even for quarantined bodies.
    retries_non_2xx: ClassVar[bool] = False
    #: HTTP methods the provider uses (GET for verification handshakes).
    methods: ClassVar[tuple[str, ...]] = ("POST",)
    #: Body fields where the provider sends a secret (Mango's ``vpbx_api_key``, VK's
    #: ``secret``): top-level members of a JSON object or fields of a form. The core stores
    #: ``[redacted]`` in their place (``hub/redaction.py``); ``verify`` and ``parse`` see the
    #: request as received, and reprocessing from quarantine parses the redacted body.
    secret_fields: ClassVar[tuple[str, ...]] = ()
    #: The provider's own headers worth keeping with the raw request (its signature, its
    #: delivery id), lower case. The core keeps the generic ones itself (content type, user
    #: agent, the Standard Webhooks headers: ``hub.engine.ingest.KEPT_HEADERS``); others
    #: are dropped.
    kept_headers: ClassVar[tuple[str, ...]] = ()
    #: Headers that carry a secret (a shared token): kept as ``***``, to show they came.
    secret_headers: ClassVar[tuple[str, ...]] = ()

    def body_limit(self, default: int) -> int:
        """The largest body (or polled message) this source takes: its own
        ``max_body_bytes`` setting, else ``default`` (``[hub] max_body_bytes``)."""
        own = getattr(self.config, "max_body_bytes", None)
        return own if isinstance(own, int) and own > 0 else default

    def handshake(self, request: InboundRequest) -> HookResponse | None:
        """Answer a provider's verification request (e.g. Meta's GET) before anything is stored."""
        return None

    def verify(self, request: InboundRequest) -> None:
        """Raise ``AuthError`` unless the request is authentic. Compare in constant time."""

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        """Turn an authentic request into events. Pure; raise ``ParseError`` for garbage."""
        raise NotImplementedError

    def nonce(self, request: InboundRequest) -> Nonce | None:
        """The one-time value of a verified request whose signature does not cover its body
        (Mailgun signs only ``timestamp + token``), else None (the default: the signature
        covers the body, or there is none). The core refuses the same nonce with a
        different ``Nonce.content`` (a replay: 401, nothing stored) and lets the same
        content through (the provider's own retry, deduplicated as usual)."""
        return None

    def enrich(self, lead: Lead) -> Lead:
        """Fetch what the webhook only pointed at (runs in a worker; I/O allowed).

        Called for leads whose draft had ``needs_enrichment``; raise ``RetryableError`` to be
        called again later, ``PermanentError`` to send the request to quarantine.
        """
        return lead

    def respond_quarantined(self, request: InboundRequest, reason: str) -> HookResponse:
        """The answer to an authentic request that went to quarantine (it is stored either way).

        The default is the contract's: ``422`` with the reason, or ``200`` for providers that
        retry non-2xx answers for hours (``retries_non_2xx``). Override it for a provider
        that has its own "do not retry" answer (Mailgun's 406, VK's literal ``ok``).
        """
        if self.retries_non_2xx:
            return HookResponse(200, {"status": "quarantined", "reason": reason})
        return HookResponse(
            422, {"error": {"code": "unprocessable", "message": reason, "field": None}}
        )

    def respond(self, request: InboundRequest, accepted: Accepted) -> HookResponse:
        """The success answer; the default is the contract's ``{"id", "status": "accepted"}``."""
        if not accepted.lead_ids:
            return HookResponse(200, {"status": "ok"})
        return HookResponse(200, {"id": accepted.lead_ids[0], "status": "accepted"})


# ---------------------------------------------------------------- polling sources


class PollingSourceConfig(SourceConfig):
    """Settings of sources the hub polls (a mailbox) instead of sources that call it."""

    poll_interval_s: float = Field(
        default=60.0, ge=1.0,
        description="Seconds between two polls; after failures the wait doubles, up to 15 minutes.",
    )


@dataclass(frozen=True)
class PolledMessage:
    """One item a polling source took from its provider and has not acknowledged yet."""

    #: Stable across fetches, restarts and crashes: fetched again before ``ack`` (a crash
    #: after the commit), it is the same event and the core yields no second lead.
    event_id: str
    body: bytes  # stored as the raw request and handed to ``parse``
    content_type: str = "application/octet-stream"
    ref: str = ""  # what ``ack`` needs to find it again (an IMAP UID)


class PollError(LeadHubError):
    """A poll failed (cannot connect, login refused, folder missing): logged with this text,
    kept as the source's poll state, and tried again later with a growing wait."""


#: Seconds between two polls when a polling source's ``Config`` has no ``poll_interval_s``.
DEFAULT_POLL_INTERVAL_S = 60.0


class PollingSource(Source[ConfigT]):
    """A source the scheduler polls every ``poll_interval_s`` (in a worker; I/O allowed).

    One poll job: ``poll`` (a batch, oldest first) → the core commits each message as a raw
    request (``method="POLL"``, body and content type from the message) through the same
    ``parse`` → normalize → store path as webhooks → ``ack`` those messages → ``poll``
    again until nothing new is left → ``finish_poll``. ``ack`` runs only after the commit,
    so a crash between the two fetches a message again; its ``event_id`` makes that a
    retry, not a second lead. Raise ``PollError`` with a message the admin can act on.
    It takes no webhooks: ``/hooks/{name}`` answers 405.
    """

    Config: ClassVar[type[ConnectorConfig]] = PollingSourceConfig
    methods: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.POLLING})

    @property
    def poll_interval_s(self) -> float:
        """Seconds between two polls: the ``poll_interval_s`` setting, else 60."""
        return config_number(self.config, "poll_interval_s") or DEFAULT_POLL_INTERVAL_S

    def poll(self, limit: int, max_bytes: int) -> list[PolledMessage]:
        """Up to ``limit`` messages not acknowledged yet, oldest first; a body may be cut
        at ``max_bytes``. Called again after each ``ack`` within one poll job."""
        raise NotImplementedError

    def ack(self, messages: list[PolledMessage]) -> None:
        """Mark messages as taken (after the core committed them) so ``poll`` skips them."""
        raise NotImplementedError

    def finish_poll(self) -> None:
        """End of a poll job, failed or not: log out, close connections."""


# ---------------------------------------------------------------- destinations


@dataclass(frozen=True)
class Limits:
    """A destination's documented limits; the engine enforces them across all workers.

    ``requests_per_second=None`` means the destination has no fixed rate (a receiver
    that says when it is overloaded, with 429 or 5xx, instead of documenting a limit):
    no rate slot is taken for it, and an admin's ``rate_limit_per_s`` becomes its rate.
    """

    requests_per_second: float | None = 10.0
    batch_size: int = 1  # leads per request where the API has a batch endpoint
    burst: int = 1  # requests that may go at once before the rate applies


@dataclass
class DeliveryItem:
    """One lead to deliver to one destination."""

    delivery_id: str
    idempotency_key: str  # stable across retries, replays and crashes
    lead: Lead
    uncertain: bool = False  # a previous attempt may have reached the destination
    duplicate_of_external_id: str | None = None  # the original's id there, for a note
    #: this attempt's id, shared by the batch: a destination that can, marks its records with
    #: it, so one look-up finds everything an interrupted batch created
    attempt_id: str = ""
    previous_attempt_id: str | None = None  # the attempt that may have landed (uncertain)


@dataclass
class DeliveryOutcome:
    """The result for one item of a batch: an external id, or the error it met."""

    delivery_id: str
    external_id: str | None = None
    error: Exception | None = None


class Destination(Connector[ConfigT]):
    """Where leads go: a CRM, an accounting system, a file, a webhook."""

    kind: ClassVar[ConnectorKind] = "destination"
    Config: ClassVar[type[ConnectorConfig]] = DestinationConfig
    limits: ClassVar[Limits] = Limits()
    #: ``Capability.ANNOTATES_DUPLICATES in capabilities``, kept for plugins that read or set
    #: it (setting it in a class body adds or removes the capability).
    annotates_duplicates: ClassVar[bool] = False
    #: ``Capability.COUNTS_OWN_REQUESTS in capabilities``, kept the same way.
    counts_own_requests: ClassVar[bool] = False

    def effective_limits(self) -> Limits:
        """The plugin's limits, lowered by ``rate_limit_per_s`` when the admin set it."""
        lowered = config_number(self.config, "rate_limit_per_s")
        rate = self.limits.requests_per_second
        if lowered is None or (rate is not None and lowered >= rate):
            return self.limits
        return Limits(lowered, self.limits.batch_size, self.limits.burst)

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        """Deliver a batch (at most ``limits.batch_size`` items) in as few requests as the API allows.

        Return one outcome per item; raise a ``DeliveryError`` when the whole request failed.
        The engine calls ``lookup`` first for items whose earlier attempt may have reached
        the destination, so ``deliver`` only sees items that are not there yet. An item with
        ``duplicate_of_external_id`` is a duplicate: annotate that record, create nothing.
        """
        raise NotImplementedError

    def lookup(self, item: DeliveryItem) -> str | None:
        """Find the lead at the destination by what we stored there; its external id, or None."""
        return None

    def lookup_many(self, items: list[DeliveryItem]) -> dict[str, str] | None:
        """Look up many uncertain items at once (external id by delivery id, found ones only).

        Return None when the destination has no cheaper way than ``lookup`` per item (the
        default); the engine then calls ``lookup`` for each. One uncertain batch of 50 would
        otherwise cost 50 requests of a rate-limited API.
        """
        return None

    def send_report(self, report: dict[str, Any], key: str) -> None:
        """Deliver a reconcile run's report (``Capability.REPORTS``; a job's ``notify``):
        ``key`` (the run's id) lets the receiver drop a repeat. Raise ``hub.errors``."""
        raise NotImplementedError

    def erase(self, lead_ids: list[str]) -> bool:
        """Remove what this destination holds of these leads, where the hub can (a file it
        wrote); True when done. Called when a person is erased (``leadhub erase``). The
        default, False, says it cannot: the erasure lists the copies (destination and
        external id) for the admin to remove there, as a CRM keeps its own records."""
        return False
