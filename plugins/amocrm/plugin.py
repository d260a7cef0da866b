"""The ``amocrm`` destination: leads become deals with a contact, via ``leads/complex``.

Requests per ``deliver`` call (at most 2):
- one ``POST /api/v4/leads/complex`` for all new leads of the batch (≤ 50);
- one ``POST /api/v4/leads/notes`` when the batch has duplicates (a note on the deal each
  repeats) or new leads with a comment (message, page, messengers, call…) and no
  ``comment_field_id`` to hold it.
``lookup`` costs one ``GET``. OAuth adds ``POST /oauth2/access_token`` once a day and a
resend after a 401. Every request takes a slot from the hub's shared limiter first
(``counts_own_requests``), so however a call is made up, amoCRM sees at most 7 requests/s.

Exactly once: every deal carries the tag ``lh:<idempotency key>`` (and, with
``marker_field_id``, the same text in a field); after an uncertain failure the engine
calls ``lookup``, which finds it with ``GET /api/v4/leads?query=``. A 400 creates nothing:
the invalid leads of a batch die, the others are retried without them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from hub import hookimpl
from hub.connectors import (
    Connector,
    ConnectorConfig,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    Limits,
)
from hub.errors import DeliveryError, PermanentError, RetryableError
from plugins.amocrm.client import AmoClient, AmoValidationError, OAuthSettings
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
                     "(empty: none; the lh:<key> marker tag is always set).")
    comment_field_id: int | None = Field(
        default=None, description="Id of a text(area) deal field for the lead's message, page "
        "and extra fields; unset, they go into a note (a second request).")
    marker_field_id: int | None = Field(
        default=None, description="Id of a text deal field that also receives the lh:<key> "
        "marker LeadHub finds deals by (the tag always does; a field is searched for sure).")

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
    annotates_duplicates: ClassVar[bool] = True
    counts_own_requests: ClassVar[bool] = True

    _client: AmoClient | None = None

    def client(self) -> AmoClient:
        if self._client is None:
            cfg = self.config
            token_file = self.context.data_dir / "amocrm" / f"{self.name}.json"
            self._client = AmoClient(
                cfg.base_url, cfg.timeout_s, oauth=cfg.oauth(), token_file=token_file,
                access_token=cfg.access_token.get_secret_value() if cfg.access_token else None,
                throttle=self.context.throttle,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

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
        cfg = self.config
        inn_field_id = int(cfg.inn_field) if cfg.inn_field.isdigit() else None
        body = [complex_lead(item, str(i), tag=cfg.tag, pipeline_id=cfg.pipeline_id,
                             status_id=cfg.status_id, comment_field_id=cfg.comment_field_id,
                             inn_field_id=inn_field_id, marker_field_id=cfg.marker_field_id)
                for i, item in enumerate(items)]
        try:
            answer = self.client().request("POST", "/api/v4/leads/complex", json_body=body)
        except AmoValidationError as exc:
            _spread_validation(exc, items, outcomes)
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
        """The deal an earlier attempt created (by its marker tag), or the deal a duplicate's
        note was written on (by the marker in the note); None when there is none."""
        mark = marker(item)
        client = self.client()
        original = item.duplicate_of_external_id
        if original:
            if not original.isdigit():
                return None
            answer = client.request("GET", f"/api/v4/leads/{original}/notes",
                                    params={"filter[note_type]": "common", "limit": 250})
            notes = _embedded(answer, "notes")
            found = any(mark in str((n.get("params") or {}).get("text", "")) for n in notes)
            return original if found else None
        answer = client.request("GET", "/api/v4/leads", params={"query": mark, "limit": 250})
        ids = [lead["id"] for lead in _embedded(answer, "leads") if _carries(lead, mark)]
        return str(min(ids)) if ids else None

    def lookup_many(self, items: list[DeliveryItem]) -> dict[str, str]:
        """One ``GET`` per interrupted batch: its deals share the tag ``lha:<attempt>``
        (≤ 50 deals, one page), matched back to items by their ``lh:<key>`` tags. An item
        no attempt ever sent cannot be there; a duplicate's note is looked up one by one."""
        found: dict[str, str] = {}
        by_attempt: dict[str, list[DeliveryItem]] = {}
        for item in items:
            if item.duplicate_of_external_id:
                ext = self.lookup(item)
                if ext:
                    found[item.delivery_id] = ext
            elif item.previous_attempt_id:
                by_attempt.setdefault(item.previous_attempt_id, []).append(item)
        client = self.client()
        for attempt, group in by_attempt.items():
            mark = attempt_marker(attempt)
            answer = client.request("GET", "/api/v4/leads", params={"query": mark, "limit": 250})
            deal_of: dict[str, int] = {}
            for lead in _embedded(answer, "leads"):
                if mark not in _tag_names(lead):
                    continue
                for name in _tag_names(lead):
                    if name.startswith(MARKER_PREFIX) and isinstance(lead.get("id"), int):
                        deal_of[name] = min(lead["id"], deal_of.get(name, lead["id"]))
            for item in group:
                if marker(item) in deal_of:
                    found[item.delivery_id] = str(deal_of[marker(item)])
        return found


def _tag_names(lead: dict[str, Any]) -> list[str]:
    tags = (lead.get("_embedded") or {}).get("tags") or []
    return [str(t.get("name")) for t in tags if isinstance(t, dict)]


def _embedded(answer: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    rows = (answer.get("_embedded") or {}).get(key) or []
    return [row for row in rows if isinstance(row, dict)]


def _carries(lead: dict[str, Any], mark: str) -> bool:
    """``query=`` matches substrings anywhere: insist on the exact marker, tag or field."""
    tags = (lead.get("_embedded") or {}).get("tags") or []
    if any(isinstance(t, dict) and t.get("name") == mark for t in tags):
        return True
    return any(isinstance(v, dict) and v.get("value") == mark
               for cf in lead.get("custom_fields_values") or [] for v in cf.get("values") or [])


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
    register(AmoCRMDestination)
