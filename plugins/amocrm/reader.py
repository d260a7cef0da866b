"""The amoCRM CRM reader: won deals, per client, for reconciliation.

Built by the hub with the ``[destinations.NAME]`` table of the amoCRM destination and its
context (``hub/sdk/readers.py``), so it talks to the same account, with the same OAuth
token file (a refresh token works once: both share the file and its lock), through the
same 7 requests/s: every request holds ``context.request_slot()`` (``AmoClient``).

Requests (reference §1 (d); Kommo "API filtration",
https://kommo.com/developers/content/api_v4/api-filtration):

1. ``GET /api/v4/leads/pipelines`` once, unless the job names its ``pipelines``: status 142
   (won) exists in every pipeline, and each ``filter[statuses][i]`` needs its
   ``pipeline_id``, so there is one entry per pipeline;
2. ``GET /api/v4/leads?filter[statuses][i][pipeline_id]=P&filter[statuses][i][status_id]=142
   &filter[closed_at][from]=…&filter[closed_at][to]=…&with=contacts&order[id]=asc&limit=250
   &page=N`` until a page has no ``_links.next`` (or the list answers 204, its empty list);
3. per page of deals, the clients not seen yet: ``GET /api/v4/companies?filter[id][]=…`` and
   ``GET /api/v4/contacts?filter[id][]=…``, ``IDS_PER_REQUEST`` ids a request, so a page of
   250 deals costs a few requests, not 250.

Filtering is documented as an alpha feature "available to a limited list of accounts"
(amoCRM "Фильтрация", https://www.amocrm.ru/developers/content/crm_platform/filters-api);
elsewhere the filter is ignored and the list comes back whole (amocrm/amocrm-api-php issue
#71). So every deal is checked here again (won, in a wanted pipeline, ``closed_at`` in
``[since, until)``), and a contact or company list that answers with ids nobody asked for
shows the filter was ignored: those clients are then read one by one
(``GET /api/v4/{contacts|companies}/{id}``), slower but right.

A client is the deal's company when it has one, else its main contact: ``company:123`` /
``contact:456``. A company's phones and e-mails are its own and its main contact's (1C
often keeps the contact person's phone on the counterparty); its tax id is the value of
the company field ``inn_field`` (a field id, or its name; default ``ИНН``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from hub.sdk import Capability, ConnectorConfig, CrmReader, RateLimited, WonDeal
from plugins.amocrm.client import AmoClient
from plugins.amocrm.plugin import AmoCRMConfig

log = logging.getLogger(__name__)
WON_STATUS_ID = 142  # amoCRM's system status "won", in every pipeline (reference §1 (d))
PAGE_LIMIT = 250  # the API's maximum ``limit`` (reference §1, "Pagination")
#: Ids per ``filter[id][]`` request: 100 keep the URL near 3 KB (each id costs ~30
#: encoded characters), well under the 8 KB a proxy commonly allows for a request line.
IDS_PER_REQUEST = 100
#: Pipelines per leads query, for the same reason (~90 characters an entry).
PIPELINES_PER_QUERY = 20
#: A 429 on a read is waited out (``Retry-After``, else a second) this many times before
#: the run fails: reading is safe to repeat, and another integration of the account can
#: spend its shared budget at any time.
RATE_RETRIES = 5
RATE_WAIT_S = 1.0


class AmoCRMReader(CrmReader[AmoCRMConfig]):
    """Won deals (status 142) of an amoCRM account, per client; see the module docstring."""

    Config: ClassVar[type[ConnectorConfig]] = AmoCRMConfig
    description: ClassVar[str] = "amoCRM / Kommo: won deals with their company or contact"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.CRM_READER})

    _client: AmoClient | None = None
    _one_by_one: bool = False  # the account ignores filter[id]: clients are read singly

    def client(self) -> AmoClient:
        if self._client is None:
            cfg = self.config
            self._client = AmoClient(
                cfg, self.context, base_url=cfg.base_url, timeout_s=cfg.timeout_s,
                oauth=cfg.oauth(),
                token_file=self.context.data_dir / "amocrm" / f"{self.name}.json",
                access_token=cfg.access_token.get_secret_value() if cfg.access_token else None,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ------------------------------------------------------------ reading

    def won_deals(
        self, since: datetime, until: datetime, pipelines: Sequence[int] = (),
    ) -> Iterator[list[WonDeal]]:
        wanted = [int(p) for p in pipelines] or self._pipeline_ids()
        clients = _Clients(self)
        for start in range(0, len(wanted), PIPELINES_PER_QUERY):
            group = wanted[start:start + PIPELINES_PER_QUERY]
            for leads in self._lead_pages(group, since, until):
                clients.load(leads)
                yield [clients.deal(lead) for lead in leads]

    def _pipeline_ids(self) -> list[int]:
        answer = self.get("/api/v4/leads/pipelines")
        return [int(p["id"]) for p in _embedded(answer, "pipelines") if isinstance(p.get("id"), int)]

    def _lead_pages(
        self, pipelines: list[int], since: datetime, until: datetime,
    ) -> Iterator[list[dict[str, Any]]]:
        """The won deals of ``pipelines`` closed in ``[since, until)``, a page at a time."""
        # closed_at is whole seconds: since ≤ t ⇔ t ≥ ⌈since⌉. Whether ``to`` is inclusive is
        # not documented; ⌈until⌉ covers both readings and the check below drops t = until.
        params: dict[str, Any] = {
            "filter[closed_at][from]": math.ceil(since.timestamp()),
            "filter[closed_at][to]": math.ceil(until.timestamp()),
            "with": "contacts", "order[id]": "asc", "limit": PAGE_LIMIT,
        }
        for i, pipeline in enumerate(pipelines):
            params[f"filter[statuses][{i}][pipeline_id]"] = pipeline
            params[f"filter[statuses][{i}][status_id]"] = WON_STATUS_ID
        allowed = set(pipelines)
        page, dropped = 1, 0
        while True:
            answer = self.get("/api/v4/leads", {**params, "page": page})
            rows = [lead for lead in _embedded(answer, "leads") if isinstance(lead.get("id"), int)]
            kept = [lead for lead in rows if _won_in(lead, allowed, since, until)]
            dropped += len(rows) - len(kept)
            yield kept
            if not _has_next(answer):
                break
            page += 1
        if dropped:
            log.warning("amoCRM listed %d deals its filter should have left out (filtering "
                        "off on this account?); they were skipped", dropped)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """One GET (None for a 204), a 429 waited out ``RATE_RETRIES`` times."""
        for attempt in range(RATE_RETRIES + 1):
            try:
                return self.client().request("GET", path, params=params)
            except RateLimited as exc:
                if attempt == RATE_RETRIES:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else RATE_WAIT_S
                log.warning("amoCRM answered 429 to a read; waiting %.1f s", wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def entities(self, kind: str, ids: list[int]) -> list[dict[str, Any]]:
        """Contacts or companies by id, ``IDS_PER_REQUEST`` a request (see the module
        docstring for accounts that ignore ``filter[id]``)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start:start + IDS_PER_REQUEST]
            if not self._one_by_one:
                params = {"filter[id][]": chunk, "limit": PAGE_LIMIT}
                rows = _embedded(self.get(f"/api/v4/{kind}", params), kind)
                if all(row.get("id") in chunk for row in rows):
                    found += rows
                    continue
                log.warning("amoCRM ignored filter[id] on %s: reading clients one by one", kind)
                self._one_by_one = True
            for entity_id in chunk:
                answer = self.get(f"/api/v4/{kind}/{entity_id}")
                if isinstance(answer, dict) and answer.get("id") == entity_id:
                    found.append(answer)
        return found


class _Clients:
    """The companies and contacts of the deals read so far, each fetched once."""

    def __init__(self, reader: AmoCRMReader) -> None:
        self.reader = reader
        self.cache: dict[str, dict[int, dict[str, Any] | None]] = {"companies": {}, "contacts": {}}
        inn_field = reader.config.inn_field.strip()
        self.inn_id = int(inn_field) if inn_field.isdigit() else None
        self.inn_name = inn_field.casefold()

    def load(self, leads: list[dict[str, Any]]) -> None:
        for kind, pick in (("companies", _company_id), ("contacts", _main_contact_id)):
            cache = self.cache[kind]
            missing = sorted({i for lead in leads if (i := pick(lead)) is not None} - set(cache))
            if not missing:
                continue
            for entity in self.reader.entities(kind, missing):
                cache[int(entity["id"])] = entity
            for entity_id in missing:
                cache.setdefault(entity_id, None)  # deleted since: known as absent

    def deal(self, lead: dict[str, Any]) -> WonDeal:
        company_id, contact_id = _company_id(lead), _main_contact_id(lead)
        company = self.cache["companies"].get(company_id) if company_id is not None else None
        contact = self.cache["contacts"].get(contact_id) if contact_id is not None else None
        phones, emails = _multitext(company, "PHONE") + _multitext(contact, "PHONE"), \
            _multitext(company, "EMAIL") + _multitext(contact, "EMAIL")
        if company_id is not None:
            key, name, inn = f"company:{company_id}", _name(company), self._inn(company)
        elif contact_id is not None:
            key, name, inn = f"contact:{contact_id}", _name(contact), None
        else:  # a deal with neither: its own client, known by nothing but its sum
            key, name, inn = f"lead:{lead['id']}", None, None
        return WonDeal(
            external_id=str(lead["id"]), client_key=key, amount=float(lead.get("price") or 0),
            date=datetime.fromtimestamp(int(lead["closed_at"]), UTC), name=name, inn=inn,
            phones=tuple(dict.fromkeys(phones)), emails=tuple(dict.fromkeys(emails)),
            title=lead.get("name") or None, pipeline=str(lead.get("pipeline_id")),
            status=str(lead.get("status_id")),
        )

    def _inn(self, company: dict[str, Any] | None) -> str | None:
        for cf in (company or {}).get("custom_fields_values") or []:
            if not isinstance(cf, dict):
                continue
            if (cf.get("field_id") == self.inn_id if self.inn_id is not None
                    else str(cf.get("field_name") or "").strip().casefold() == self.inn_name):
                values = [str(v.get("value")).strip() for v in cf.get("values") or []
                          if isinstance(v, dict) and v.get("value") not in (None, "")]
                return values[0] if values else None
        return None


def _won_in(lead: dict[str, Any], pipelines: set[int], since: datetime, until: datetime) -> bool:
    closed = lead.get("closed_at")
    return (lead.get("status_id") == WON_STATUS_ID and lead.get("pipeline_id") in pipelines
            and isinstance(closed, int) and since.timestamp() <= closed < until.timestamp())


def _company_id(lead: dict[str, Any]) -> int | None:
    companies = (lead.get("_embedded") or {}).get("companies") or []
    ids = [c["id"] for c in companies if isinstance(c, dict) and isinstance(c.get("id"), int)]
    return ids[0] if ids else None


def _main_contact_id(lead: dict[str, Any]) -> int | None:
    """The contact marked ``is_main``, else the first linked (``with=contacts``)."""
    contacts = [c for c in (lead.get("_embedded") or {}).get("contacts") or []
                if isinstance(c, dict) and isinstance(c.get("id"), int)]
    main = [c for c in contacts if c.get("is_main")]
    return int((main or contacts)[0]["id"]) if contacts else None


def _multitext(entity: dict[str, Any] | None, code: str) -> list[str]:
    return [str(v["value"]) for cf in (entity or {}).get("custom_fields_values") or []
            if isinstance(cf, dict) and cf.get("field_code") == code
            for v in cf.get("values") or [] if isinstance(v, dict) and v.get("value")]


def _name(entity: dict[str, Any] | None) -> str | None:
    name = str((entity or {}).get("name") or "").strip()
    return name or None


def _embedded(answer: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []  # None: the 204 of an empty list
    rows = (answer.get("_embedded") or {}).get(key) or []
    return [row for row in rows if isinstance(row, dict)]


def _has_next(answer: Any) -> bool:
    return isinstance(answer, dict) and "next" in (answer.get("_links") or {})
