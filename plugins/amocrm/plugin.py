"""The ``amocrm`` destination: leads become deals with a contact, via ``leads/complex``.

Requests per ``deliver`` call (at most 2):
- one ``POST /api/v4/leads/complex`` for all new leads of the batch (≤ 50);
- one ``POST /api/v4/leads/notes`` when the batch has duplicates (a note on the deal each
  repeats) or new leads with a comment (message, page, messengers, call…) and no
  ``comment_field_id`` to hold it.
``lookup`` costs one ``GET``, and ``lookup_many`` one per interrupted batch, when
amoCRM's ``query`` works; a look-up is given up sooner than a write
(``lookup_timeout``: it changes nothing). OAuth adds ``POST /oauth2/access_token`` once a day and a resend
after a 401; the first use adds finding (or creating) the marker fields (``fields``). Every
request takes a slot from the hub's shared limiter first (``counts_own_requests``), so
however a call is made up, amoCRM sees at most 7 requests/s.

Exactly once: amoCRM has no idempotency key, and it cannot find a deal by tag (``query``
"searches the entity's filled fields", the name and field values; there is no filter by
tag: reference §1 (a2), amocrm/amocrm-api-php issue #474). So every deal carries
``lh:<idempotency key>`` in the text field "LeadHub key" (or the admin's own field,
``marker_field_id``), and ``lha:<attempt id>`` in "LeadHub attempt" (``attempt_field_id``).
Two fields rather than one holding both: each value is then the whole value of its field,
so it can be matched exactly, by a client and by amoCRM's field filter alike. After an
uncertain failure the engine calls ``lookup``/``lookup_many``, which look for the marker
in three ways, each checked client-side for the exact field value:

1. ``GET /api/v4/leads?query=<marker>``: one request. ``query`` is documented as "will be
   deprecated soon"; when amoCRM rejects it (400) or ignores it (rows that do not even
   contain the marker come back), it is not used again for ``REPROBE_S``;
2. ``filter[custom_fields_values][<field id>][0]=<marker>&order[created_at]=desc``:
   filtering is an alpha feature some accounts lack, and those ignore the filter and list
   everything (amocrm-api-php issue #71). Rows without the marker show that: the answer is
   then read as the first page of step 3;
3. the newest deals (``order[created_at]=desc``, 250 a page, ``SCAN_PAGES`` pages): a deal
   an uncertain attempt created is recent, but one older than the newest 500 deals is not
   found this way.

Tags are a visible label only (``tag``). A 400 creates nothing: the invalid leads of a
batch die, the others are retried without them; a 400 on a stored marker field id (the
field was deleted) makes the destination find or create the field again and resend once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from hub.sdk import (
    Capability,
    Connector,
    ConnectorConfig,
    DeliveryError,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
    PermanentError,
    RetryableError,
    hookimpl,
)
from plugins.amocrm.client import AmoClient, AmoValidationError, OAuthSettings
from plugins.amocrm.fields import ATTEMPT_FIELD, KEY_FIELD, FieldFile, MarkerFields, resolve
from plugins.amocrm.mapping import (
    MARKER_PREFIX,
    attempt_marker,
    complex_lead,
    duplicate_note_text,
    marker,
    new_deal_note_text,
)

log = logging.getLogger(__name__)
OAUTH_KEYS = ("client_id", "client_secret", "refresh_token", "redirect_uri")
REPROBE_S = 3600.0  # a refused query or filter is tried again after this long
SCAN_PAGES = 2  # newest deals read when neither query nor filter works (250 a page)
LEADS = "/api/v4/leads"


def _given(value: str | SecretStr | None) -> bool:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return bool(text)


class AmoCRMConfig(DestinationConfig):
    base_url: str = Field(description="The account address, e.g. https://example.amocrm.ru.")
    access_token: SecretStr | None = Field(
        default=None, description="A long-lived token from the integration's settings.")
    client_id: str | None = Field(default=None, description="OAuth: the integration id.")
    client_secret: SecretStr | None = Field(default=None, description="OAuth: its secret key.")
    refresh_token: SecretStr | None = Field(
        default=None, description="OAuth: the first refresh token; rotations are kept under "
        "data_dir/amocrm/<connector>.json because each works once.")
    redirect_uri: str | None = Field(default=None, description="OAuth: the integration's "
                                     "redirect URI, exactly as registered.")
    pipeline_id: int | None = Field(default=None, description="Pipeline for new deals "
                                    "(default: the account's main pipeline).")
    status_id: int | None = Field(default=None, description="Stage for new deals "
                                  "(default: the pipeline's first stage).")
    inn_field: str = Field(default="ИНН", description="Name or id of the company field holding "
                           "the tax id (INN); an id also fills it on new companies.")
    timeout_s: float = Field(default=10, gt=0, description="HTTP timeout in seconds.")
    tag: str = Field(default="leadhub", description="Tag on every deal LeadHub creates "
                     "(empty: none); a visible label only, LeadHub never finds deals by it.")
    comment_field_id: int | None = Field(
        default=None, description="Id of a text(area) deal field for the lead's message, page "
        "and extra fields; unset, they go into a note (a second request).")
    marker_field_id: int | None = Field(
        default=None, description="Id of your own text deal field for the lh:<key> marker "
        "LeadHub finds deals by; unset, LeadHub finds or creates the field \"LeadHub key\".")
    attempt_field_id: int | None = Field(
        default=None, description="Id of your own text deal field for the lha:<attempt> "
        "marker (one look-up per interrupted batch); unset, LeadHub finds or creates the "
        "field \"LeadHub attempt\".")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (e.g. https://example.amocrm.ru)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Self:
        oauth = [key for key in OAUTH_KEYS if _given(getattr(self, key))]
        if _given(self.access_token):
            if oauth:
                raise ValueError("give either access_token (long-lived token) or the OAuth "
                                 f"settings {', '.join(OAUTH_KEYS)}, not both")
        elif len(oauth) != len(OAUTH_KEYS):
            missing = [key for key in OAUTH_KEYS if key not in oauth]
            raise ValueError("set access_token (a long-lived token), or all of "
                             f"{', '.join(OAUTH_KEYS)} for OAuth; missing: {', '.join(missing)}")
        return self

    def oauth(self) -> OAuthSettings | None:
        if _given(self.access_token):
            return None
        assert self.client_id and self.client_secret and self.refresh_token and self.redirect_uri
        return OAuthSettings(self.client_id, self.client_secret.get_secret_value(),
                             self.refresh_token.get_secret_value(), self.redirect_uri)


class AmoCRMDestination(Destination[AmoCRMConfig]):
    """Deals in amoCRM: one ``leads/complex`` call per batch of up to 50 leads."""

    Config: ClassVar[type[ConnectorConfig]] = AmoCRMConfig
    description: ClassVar[str] = "amoCRM / Kommo: a deal with its contact per lead"
    limits: ClassVar[Limits] = Limits(requests_per_second=7, batch_size=50)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LOOKUP, Capability.BATCH_LOOKUP,  # by the key fields on the deal
        Capability.ANNOTATES_DUPLICATES,  # a note on the original's deal
        Capability.COUNTS_OWN_REQUESTS,  # a batch costs several requests
    })

    _client: AmoClient | None = None
    _fields: MarkerFields | None = None
    _refused: dict[str, float] | None = None  # "query"/"filter" → not used until then

    def client(self) -> AmoClient:
        if self._client is None:
            cfg = self.config
            token_file = self.context.data_dir / "amocrm" / f"{self.name}.json"
            self._client = AmoClient(
                cfg, self.context, base_url=cfg.base_url, timeout_s=cfg.timeout_s,
                oauth=cfg.oauth(), token_file=token_file,
                access_token=cfg.access_token.get_secret_value() if cfg.access_token else None,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------ marker fields

    def marker_fields(self, *, stale: MarkerFields | None = None) -> MarkerFields:
        """The ids of the fields holding the markers; see ``fields``. ``stale``: ids the API
        has rejected, to be found (or created) again."""
        if self._fields is not None and stale is None:
            return self._fields
        cfg = self.config
        wanted = [name for name, override in ((KEY_FIELD, cfg.marker_field_id),
                                              (ATTEMPT_FIELD, cfg.attempt_field_id))
                  if override is None]
        ids: dict[str, int] = {}
        if wanted:
            file = FieldFile(self.context.data_dir / "amocrm" / f"{self.name}.fields.json",
                             cfg.base_url)
            old = {KEY_FIELD: stale.key, ATTEMPT_FIELD: stale.attempt} if stale else None
            ids = resolve(self.client(), file, wanted, stale=old)
        self._fields = MarkerFields(key=cfg.marker_field_id or ids[KEY_FIELD],
                                    attempt=cfg.attempt_field_id or ids[ATTEMPT_FIELD])
        return self._fields

    # ------------------------------------------------------------ deliver

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        """Create deals for new leads and notes for duplicates; see the module docstring.

        Items with ``uncertain=True`` must have been looked up by the engine first.
        """
        outcomes = {item.delivery_id: DeliveryOutcome(item.delivery_id) for item in items}
        new = [item for item in items if not item.duplicate_of_external_id]
        notes: list[tuple[DeliveryItem, int, str]] = []
        if new:
            for item, deal_id in self._create_deals(new, outcomes):
                text = None if self.config.comment_field_id else new_deal_note_text(item)
                if text:
                    notes.append((item, deal_id, text))
        for item in items:
            original = item.duplicate_of_external_id
            if not original:
                continue
            if not original.isdigit():
                outcomes[item.delivery_id].error = PermanentError(
                    f"duplicate_of_external_id {original!r} is not an amoCRM deal id")
                continue
            notes.append((item, int(original), duplicate_note_text(item)))
        if notes:
            self._add_notes(notes, outcomes, only_notes=not new)
        return [outcomes[item.delivery_id] for item in items]

    def _create_deals(
        self, items: list[DeliveryItem], outcomes: dict[str, DeliveryOutcome],
    ) -> list[tuple[DeliveryItem, int]]:
        fields = self.marker_fields()
        body = self._complex_body(items, fields)
        client = self.client()
        try:
            answer = client.request("POST", "/api/v4/leads/complex", json_body=body)
        except AmoValidationError as exc:
            if not self._rejects_marker_field(exc, body, fields):
                _spread_validation(exc, items, outcomes)
                return []
            # Our stored field is gone (deleted by an admin?): find or create it again and
            # resend; a 400 created nothing.
            log.warning("amoCRM rejected a LeadHub marker field; finding it again: %s", exc)
            body = self._complex_body(items, self.marker_fields(stale=fields))
            try:
                answer = client.request("POST", "/api/v4/leads/complex", json_body=body)
            except AmoValidationError as again:
                _spread_validation(again, items, outcomes)
                return []
        created: list[tuple[DeliveryItem, int]] = []
        by_request = _by_request_id(answer)
        for i, item in enumerate(items):
            row = by_request.get(str(i))
            if row is None or not isinstance(row.get("id"), int):
                outcomes[item.delivery_id].error = RetryableError(
                    "amoCRM answered leads/complex without this lead", uncertain=True)
                continue
            outcomes[item.delivery_id].external_id = str(row["id"])
            created.append((item, row["id"]))
        return created

    def _complex_body(self, items: list[DeliveryItem], fields: MarkerFields) -> list[Any]:
        cfg = self.config
        inn_field_id = int(cfg.inn_field) if cfg.inn_field.isdigit() else None
        return [complex_lead(item, str(i), tag=cfg.tag, pipeline_id=cfg.pipeline_id,
                             status_id=cfg.status_id, comment_field_id=cfg.comment_field_id,
                             inn_field_id=inn_field_id, key_field_id=fields.key,
                             attempt_field_id=fields.attempt)
                for i, item in enumerate(items)]

    def _rejects_marker_field(
        self, exc: AmoValidationError, body: list[Any], fields: MarkerFields,
    ) -> bool:
        """Whether the 400 names, at ``custom_fields_values.<n>.field_id``, a field LeadHub
        found or created itself (an admin's own field id is the admin's to fix)."""
        ours = set()
        if self.config.marker_field_id is None:
            ours.add(fields.key)
        if self.config.attempt_field_id is None:
            ours.add(fields.attempt)
        for rid, errors in exc.by_request_id().items():
            if not rid.isdigit() or int(rid) >= len(body):
                continue
            values = body[int(rid)].get("custom_fields_values") or []
            for error in errors:
                path = str(error.get("path", "")).split(".")
                if (len(path) == 3 and path[0] == "custom_fields_values" and path[1].isdigit()
                        and path[2] == "field_id" and int(path[1]) < len(values)
                        and values[int(path[1])].get("field_id") in ours):
                    return True
        return False

    def _add_notes(
        self, notes: list[tuple[DeliveryItem, int, str]], outcomes: dict[str, DeliveryOutcome],
        *, only_notes: bool,
    ) -> None:
        body = [{"entity_id": deal_id, "note_type": "common", "params": {"text": text},
                 "request_id": str(i)} for i, (_, deal_id, text) in enumerate(notes)]
        # Only notes for duplicates decide an outcome; a new deal's comment note is extra.
        primary = [(i, item, deal_id) for i, (item, deal_id, _) in enumerate(notes)
                   if item.duplicate_of_external_id]
        try:
            self.client().request("POST", "/api/v4/leads/notes", json_body=body)
        except AmoValidationError as exc:
            failed = exc.by_request_id()
            for i, item, _ in primary:
                errors = failed.get(str(i))
                outcomes[item.delivery_id].error = (
                    PermanentError(f"amoCRM rejected the note: {errors}") if errors else
                    RetryableError("the notes request was rejected for another note"))
            _log_lost_comments(notes, exc)
            return
        except DeliveryError as exc:
            if only_notes:
                raise
            for _, item, _ in primary:
                outcomes[item.delivery_id].error = exc
            _log_lost_comments(notes, exc)
            return
        for _, item, deal_id in primary:
            outcomes[item.delivery_id].external_id = str(deal_id)

    # ------------------------------------------------------------ lookup

    def lookup(self, item: DeliveryItem) -> str | None:
        """The deal an earlier attempt created (by the marker in its "LeadHub key" field), or
        the deal a duplicate's note was written on (by the marker in the note); None when
        there is none."""
        mark = marker(item)
        client = self.client()
        original = item.duplicate_of_external_id
        if original:
            if not original.isdigit():
                return None
            answer = client.find(f"/api/v4/leads/{original}/notes",
                                 {"filter[note_type]": "common", "limit": 250})
            notes = _embedded(answer, "notes")
            found = any(mark in str((n.get("params") or {}).get("text", "")) for n in notes)
            return original if found else None
        ids = [lead["id"] for lead in self._find(mark, attempt=False)]
        return str(min(ids)) if ids else None

    def lookup_many(self, items: list[DeliveryItem]) -> dict[str, str]:
        """One ``GET`` per interrupted batch (normally): its deals share ``lha:<attempt>`` in
        the attempt field (≤ 50 deals, one page) and are matched back to items by their
        ``lh:<key>``. An item no attempt ever sent cannot be there; a duplicate's note is
        looked up one by one."""
        found: dict[str, str] = {}
        by_attempt: dict[str, list[DeliveryItem]] = {}
        for item in items:
            if item.duplicate_of_external_id:
                ext = self.lookup(item)
                if ext:
                    found[item.delivery_id] = ext
            elif item.previous_attempt_id:
                by_attempt.setdefault(item.previous_attempt_id, []).append(item)
        for attempt, group in by_attempt.items():
            deal_of: dict[str, int] = {}
            for lead in self._find(attempt_marker(attempt), attempt=True):
                for value in _field_values(lead):
                    if value.startswith(MARKER_PREFIX):
                        deal_of[value] = min(lead["id"], deal_of.get(value, lead["id"]))
            for item in group:
                if marker(item) in deal_of:
                    found[item.delivery_id] = str(deal_of[marker(item)])
        return found

    # ------------------------------------------------------------ finding deals by marker

    def _find(self, mark: str, *, attempt: bool) -> list[dict[str, Any]]:
        """Deals with a field whose value is exactly ``mark``; see the module docstring."""
        client = self.client()
        if self._usable("query"):
            try:
                answer = client.find(LEADS, {"query": mark, "limit": 250})
            except AmoValidationError as exc:
                self._refuse("query", f"rejected: {exc}")
            else:
                rows = _leads(answer)
                if all(_mentions(lead, mark) for lead in rows):
                    return [lead for lead in rows if _carries(lead, mark)]
                self._refuse("query", "ignored (deals without the marker came back)")
        matches: list[dict[str, Any]] = []
        first_page = 1
        if self._usable("filter"):
            fields = self.marker_fields()
            field_id = fields.attempt if attempt else fields.key
            params: dict[str, Any] = {f"filter[custom_fields_values][{field_id}][0]": mark,
                                      "order[created_at]": "desc", "limit": 250}
            try:
                answer = client.find(LEADS, params)
            except AmoValidationError as exc:
                self._refuse("filter", f"rejected: {exc}")
            else:
                rows = _leads(answer)
                if all(_carries(lead, mark) for lead in rows):
                    return rows
                # Ignored: these are the newest deals, the first page of the scan below.
                self._refuse("filter", "ignored (deals without the marker came back)")
                matches = [lead for lead in rows if _carries(lead, mark)]
                if not _has_next(answer):
                    return matches
                first_page = 2
        for page in range(first_page, SCAN_PAGES + 1):
            answer = client.find(LEADS, {"order[created_at]": "desc", "limit": 250, "page": page})
            matches += [lead for lead in _leads(answer) if _carries(lead, mark)]
            if not _has_next(answer):
                break
        return matches

    def _usable(self, way: str) -> bool:
        until = (self._refused or {}).get(way)
        return until is None or time.monotonic() >= until

    def _refuse(self, way: str, why: str) -> None:
        log.warning("amoCRM %s %s: finding deals without it for %.0f s", way, why, REPROBE_S)
        self._refused = {**(self._refused or {}), way: time.monotonic() + REPROBE_S}


def _leads(answer: Any) -> list[dict[str, Any]]:
    return [lead for lead in _embedded(answer, "leads") if isinstance(lead.get("id"), int)]


def _has_next(answer: Any) -> bool:
    return isinstance(answer, dict) and "next" in (answer.get("_links") or {})


def _field_values(lead: dict[str, Any]) -> list[str]:
    return [str(v.get("value")) for cf in lead.get("custom_fields_values") or []
            if isinstance(cf, dict) for v in cf.get("values") or [] if isinstance(v, dict)]


def _carries(lead: dict[str, Any], mark: str) -> bool:
    """The exact marker as the value of a field (``query`` matches more than that)."""
    return mark in _field_values(lead)


def _mentions(lead: dict[str, Any], mark: str) -> bool:
    """Whether a ``query`` could have matched the deal at all: its id, or the marker inside
    its name or a field value. A deal that fails this shows the query was ignored."""
    needle = mark.lower()
    texts = [str(lead.get("name") or ""), *_field_values(lead)]
    return str(lead["id"]) == mark or any(needle in text.lower() for text in texts)


def _embedded(answer: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    rows = (answer.get("_embedded") or {}).get(key) or []
    return [row for row in rows if isinstance(row, dict)]


def _by_request_id(answer: Any) -> dict[str, dict[str, Any]]:
    """Rows of the bare array ``leads/complex`` answers, by the request_id we sent."""
    out: dict[str, dict[str, Any]] = {}
    for row in answer if isinstance(answer, list) else []:
        if isinstance(row, dict):
            for rid in row.get("request_id") or []:
                out[str(rid)] = row
    return out


def _spread_validation(
    exc: AmoValidationError, items: list[DeliveryItem], outcomes: dict[str, DeliveryOutcome],
) -> None:
    """A 400 creates nothing: the invalid leads are dead, the others go again without them."""
    failed = exc.by_request_id()
    for i, item in enumerate(items):
        errors = failed.get(str(i))
        outcomes[item.delivery_id].error = (
            PermanentError(f"amoCRM rejected the lead: {errors}") if errors
            else RetryableError("leads/complex was rejected for another lead of the batch"))


def _log_lost_comments(notes: list[tuple[DeliveryItem, int, str]], exc: Exception) -> None:
    for item, deal_id, _ in notes:
        if not item.duplicate_of_external_id:
            log.warning("amoCRM deal %s created, its comment note failed: %s", deal_id, exc)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    from plugins.amocrm.reader import AmoCRMReader  # it imports this module's config

    register(AmoCRMDestination)
    register(AmoCRMReader)  # reads won deals for [reconcile.*] crm = "<this destination>"
