"""``FakeAmoCRM``: a strict amoCRM API v4 on loopback (``shared/reference/destinations.md`` §1).

What it enforces like the real API: ``Authorization: Bearer`` (401 problem JSON otherwise),
OAuth refresh with single-use refresh tokens, a request rate over a sliding 1-second window
shared by every client (``429`` with a non-JSON body; only ``/api/`` requests count, and
rejected requests do not), ``leads/complex`` with at most 50 leads, one contact and one
company each and known tracking field codes, its bare-array answer, ``204`` with an empty
body for empty lists, ``page``/``limit`` (≤ 250) with ``_page`` and ``_links.next``,
``application/hal+json`` answers and ``application/problem+json`` errors in the
``validation-errors`` shape.

Finding deals (reference §1 (a2); sources cited where each rule is implemented):
``query=`` searches a deal's name and custom-field values, never its tags; lead custom
fields are listed and created through ``/api/v4/leads/custom_fields``; the documented
filter ``filter[custom_fields_values][<field_id>][]=<value>`` and ``order[created_at|
updated_at|id]=asc|desc`` work on the leads list. Switches for what real accounts do:
``query_mode`` ("on", "ignored", "rejected": ``query`` is documented as "will be deprecated
soon"), ``filter_mode`` ("on", "ignored": filtering is an alpha feature of some accounts,
and elsewhere the filter is silently ignored; "rejected"), and ``block(seconds)``: the
403 an account gets for repeatedly exceeding the request rate.
"""

from __future__ import annotations

import copy
import re
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from hub.testing import FakeServer, RecordedRequest, Response
from plugins.amocrm.testing.account import WON_STATUS_ID, AmoAccount, problem
from plugins.amocrm.testing.writes import (
    HAL,
    add_custom_fields,
    add_leads,
    add_notes,
    complex_leads,
    problem_response,
    validation_error,
)

MAX_LIMIT = 250
TOO_MANY_BODY = "<html><body><h1>429 Too Many Requests</h1></body></html>"
#: The answer of an account blocked for repeatedly exceeding the request rate: HTTP 403
#: (amoCRM error list, kept by clients: "403 — Аккаунт заблокирован, за неоднократное
#: превышение количества запросов в секунду", e.g. dotzero/amocrm-php
#: ``AmoCRM\Exception``; its tests expect that message for a 403 whose body is not JSON).
#: The exact body is not documented: a non-JSON page, like the 429 (reference §1).
BLOCKED_BODY = "<html><body><h1>403 Forbidden</h1></body></html>"
#: Sortable fields of the leads list (amoCRM leads API, ``order``: "created_at, updated_at,
#: id", "asc, desc", https://www.amocrm.ru/developers/content/crm_platform/leads-api).
LEAD_ORDER_FIELDS = ("created_at", "updated_at", "id")
MODES = ("on", "ignored", "rejected")


def parse_filters(query: dict[str, list[str]]) -> dict[str, Any]:
    """``filter[statuses][0][pipeline_id]=1`` → ``{"statuses": {"0": {"pipeline_id": "1"}}}``."""
    out: dict[str, Any] = {}
    for key, values in query.items():
        if not key.startswith("filter["):
            continue
        parts = re.findall(r"\[([^\]]*)\]", key)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = values[-1] if len(values) == 1 else values
    return out


class FakeAmoCRM(FakeServer):
    """A fake amoCRM account. ``token`` is a long-lived token; OAuth needs ``client_id``."""

    def __init__(
        self,
        *,
        token: str | None = "long-lived-token",
        rate_limit: float = 7,
        client_id: str | None = None,
        client_secret: str = "secret",
        refresh_token: str | None = None,
        redirect_uri: str = "https://example.org/oauth",
        access_token_ttl: int = 86400,
        duplicate_control: bool = False,
        retry_after: int | None = None,
        pipeline_id: int = 7000001,
        query_mode: str = "on",
        filter_mode: str = "on",
        auto_block_after_429s: int | None = None,
        auto_block_s: float = 900.0,
    ) -> None:
        super().__init__()
        if query_mode not in MODES or filter_mode not in MODES:
            raise ValueError(f"query_mode and filter_mode are one of {MODES}")
        self.query_mode = query_mode
        self.filter_mode = filter_mode
        # Optional: block the account once a client keeps sending over the limit. The docs
        # say only that "suspicious activity" gets requests restricted (Kommo "Limitations",
        # https://developers.kommo.com/docs/limitations) and give no numbers: off by default.
        self.auto_block_after_429s = auto_block_after_429s
        self.auto_block_s = auto_block_s
        self._blocked_until = 0.0
        self._recent_429: deque[float] = deque()
        self._ip_denied = False
        self.count_403 = 0
        self.account = AmoAccount(pipeline_id=pipeline_id)
        self.rate_limit = rate_limit
        self.retry_after = retry_after
        self.duplicate_control = duplicate_control
        self.client_id, self.client_secret, self.redirect_uri = (
            client_id,
            client_secret,
            redirect_uri,
        )
        self.access_token_ttl = access_token_ttl
        self._access: dict[str, float] = {token: float("inf")} if token else {}
        self._refresh: set[str] = {refresh_token} if refresh_token else set()
        self._window: deque[float] = deque()
        self._token_seq = 0
        self.count_429 = 0
        self.oauth_refreshes = 0
        for method, path, handler in (
            ("POST", "/oauth2/access_token", self._oauth),
            ("POST", "/api/v4/leads/complex", self._complex),
            ("GET", "/api/v4/leads", self._list_leads),
            ("POST", "/api/v4/leads", self._add_leads),
            ("GET", "/api/v4/leads/pipelines", self._pipelines),
            ("GET", "/api/v4/leads/custom_fields", self._list_fields),
            ("POST", "/api/v4/leads/custom_fields", self._add_fields),
            ("POST", "/api/v4/leads/notes", self._add_notes),
            ("GET", "/api/v4/leads/{id}/notes", self._lead_notes),
            ("GET", "/api/v4/leads/{id}", self._get_lead),
            ("GET", "/api/v4/contacts", self._list_contacts),
            ("GET", "/api/v4/contacts/{id}", self._get_contact),
            ("GET", "/api/v4/companies", self._list_companies),
            ("GET", "/api/v4/companies/{id}", self._get_company),
        ):
            self.add_route(method, path, handler)

    # ------------------------------------------------------------ helpers for tests

    @property
    def leads(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                self._lead_out(lead, with_contacts=True) for lead in self.account.leads.values()
            ]

    @property
    def contacts(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.account.contacts.values()))

    @property
    def notes(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(list(self.account.notes.values()))

    def leads_by_tag(self, prefix: str = "lh:") -> dict[str, list[int]]:
        """Lead ids per tag starting with ``prefix``. Tags are a visible label only (amoCRM
        cannot find deals by them); LeadHub's markers are counted with ``leads_by_marker``."""
        out: dict[str, list[int]] = {}
        for lead in self.leads:
            for tag in lead["_embedded"]["tags"]:
                if tag["name"].startswith(prefix):
                    out.setdefault(tag["name"], []).append(lead["id"])
        return out

    def leads_by_marker(self, prefix: str = "lh:") -> dict[str, list[int]]:
        """Lead ids per custom-field value starting with ``prefix`` (LeadHub keeps its
        ``lh:<key>`` marker in a text field of the deal): exactly-once tests want one each."""
        out: dict[str, list[int]] = {}
        for lead in self.leads:
            for cf in lead["custom_fields_values"] or []:
                for value in cf["values"]:
                    text = str(value["value"])
                    if text.startswith(prefix):
                        out.setdefault(text, []).append(lead["id"])
        return out

    def lead_fields(self) -> list[dict[str, Any]]:
        """The account's lead custom fields, as ``GET /api/v4/leads/custom_fields`` lists them."""
        with self.lock:
            return [cf.model("leads") for cf in self.account.fields["leads"].values()]

    def block(self, seconds: float) -> None:
        """Answer every API request with 403 "account blocked" for ``seconds``."""
        with self.lock:
            self._blocked_until = time.monotonic() + seconds

    def unblock(self) -> None:
        with self.lock:
            self._blocked_until = 0.0

    def deny_ip(self, denied: bool = True) -> None:
        """Answer 403 "access from your IP is denied" (error code 113, reference §1 and the
        amoCRM error list) until called with False. The body's exact shape is NOT confirmed:
        a problem JSON naming the code is used."""
        with self.lock:
            self._ip_denied = denied

    def contacts_of(self, lead_id: int) -> list[dict[str, Any]]:
        with self.lock:
            ids = self.account.lead_contacts.get(lead_id, [])
            return [copy.deepcopy(self.account.contacts[c]) for c in ids]

    def issue_refresh_token(self) -> str:
        with self.lock:
            self._token_seq += 1
            token = f"rt-{self._token_seq}"
            self._refresh.add(token)
            return token

    def expire_access_tokens(self) -> None:
        """Every OAuth access token now answers 401 (long-lived tokens stay valid)."""
        with self.lock:
            for token, expires in self._access.items():
                if expires != float("inf"):
                    self._access[token] = 0.0

    def add_contact(
        self, name: str, *, phones: Sequence[str] = (), emails: Sequence[str] = (),
    ) -> int:
        """A contact as a manager typed it (phones and emails as written); its id."""
        with self.lock:
            return self.account.create_contact(
                {"name": name, "custom_fields_values": _multitext(phones, emails)})

    def add_company(
        self, name: str, *, inn: str | None = None, phones: Sequence[str] = (),
        emails: Sequence[str] = (), inn_field: str = "ИНН",
    ) -> int:
        """A company, its tax id in the text field named ``inn_field`` (created when the
        account lacks it, as an admin would); its id."""
        with self.lock:
            acc = self.account
            cfv = _multitext(phones, emails)
            if inn:
                fid = next((f.id for f in acc.fields["companies"].values() if f.name == inn_field),
                           None) or acc.add_field("companies", inn_field, "text")
                cfv.append({"field_id": fid, "values": [{"value": inn}]})
            return acc.create_company({"name": name, "custom_fields_values": cfv})

    def add_pipeline(self, name: str) -> int:
        """Another pipeline (with its own 142 won / 143 lost statuses); its id."""
        with self.lock:
            pid = max(self.account.pipelines) + 1
            self.account.add_pipeline(pid, name)
            return pid

    def add_won_deal(
        self,
        name: str = "",
        price: int = 0,
        *,
        phone: str | None = None,
        email: str | None = None,
        contact_name: str | None = None,
        company: str | None = None,
        inn: str | None = None,
        closed_at: datetime | int | None = None,
        pipeline_id: int | None = None,
        status_id: int = WON_STATUS_ID,
        contact_ids: Sequence[int] = (),
        company_id: int | None = None,
    ) -> int:
        """A deal as a manager would have closed it, for reconciliation tests; its id.

        ``contact_ids`` (the first is the main contact) and ``company_id`` link existing
        ones (``add_contact``, ``add_company``): a client with several deals. Otherwise a
        contact is made from ``phone``/``email``/``contact_name`` and a company from
        ``company``/``inn``."""
        closed = int(closed_at.timestamp()) if isinstance(closed_at, datetime) else closed_at
        contacts = list(contact_ids)
        if not contacts and (phone or email or contact_name):
            contacts.append(self.add_contact(contact_name or "", phones=[phone] if phone else (),
                                             emails=[email] if email else ()))
        if company_id is None and (company or inn):
            company_id = self.add_company(company or "", inn=inn)
        with self.lock:
            acc = self.account
            raw = {
                "name": name,
                "price": price,
                "status_id": status_id,
                "pipeline_id": pipeline_id or acc.main_pipeline(),
                "closed_at": closed,
            }
            return acc.create_lead(
                raw, contacts, company_id, created_at=(closed - 86400) if closed else None
            )

    # ------------------------------------------------------------ gatekeeping

    def before_route(self, request: RecordedRequest) -> Response | None:
        if not request.path.startswith("/api/"):
            return None
        now = time.monotonic()
        if now < self._blocked_until:
            self.count_403 += 1
            return Response(403, BLOCKED_BODY, "text/html; charset=utf-8")
        if self._ip_denied:
            self.count_403 += 1
            return Response.json({"title": "Forbidden", "type": "https://httpstatus.es/403",
                                  "status": 403, "error_code": 113,
                                  "detail": "Access to this account from your IP is denied"},
                                 403, "application/problem+json")
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            self._note_429(now)
            return self.fault_response("429")
        self._window.append(now)
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self._access.get(token, 0.0) < time.time():
            return problem_response(401, "Unauthorized", "Unauthorized")
        return None

    def _note_429(self, now: float) -> None:
        if self.auto_block_after_429s is None:
            return
        self._recent_429.append(now)
        while self._recent_429 and self._recent_429[0] <= now - 60.0:
            self._recent_429.popleft()
        if len(self._recent_429) >= self.auto_block_after_429s:
            self._blocked_until = now + self.auto_block_s
            self._recent_429.clear()

    def fault_response(self, kind: str) -> Response:
        if kind == "429":
            self.count_429 += 1
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
            return Response(429, TOO_MANY_BODY, "text/html; charset=utf-8", headers)
        if kind == "400":  # a refused request: the validation-errors problem JSON
            return validation_error([("0", [problem("NotSupportedChoice", "name",
                                                    "injected fault")])])
        return Response(int(kind), f"<html><body><h1>{kind}</h1></body></html>", "text/html")

    # ------------------------------------------------------------ routes

    def _oauth(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        try:
            body = request.json()
        except ValueError:
            body = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        body = body if isinstance(body, dict) else {}
        if (
            self.client_id is None
            or body.get("client_id") != self.client_id
            or body.get("client_secret") != self.client_secret
        ):
            return problem_response(401, "Unauthorized", "Client authentication failed")
        if (
            body.get("grant_type") != "refresh_token"
            or body.get("redirect_uri") != self.redirect_uri
        ):
            return problem_response(400, "Bad Request", "Invalid grant_type or redirect_uri")
        old = body.get("refresh_token")
        if old not in self._refresh:
            return problem_response(400, "Bad Request", "Token has been revoked")
        self._refresh.discard(old)  # single use
        self._token_seq += 1
        access, refresh = f"at-{self._token_seq}", f"rt-{self._token_seq}"
        self._access[access] = time.time() + self.access_token_ttl
        self._refresh.add(refresh)
        self.oauth_refreshes += 1
        return Response.json(
            {
                "token_type": "Bearer",
                "expires_in": self.access_token_ttl,
                "access_token": access,
                "refresh_token": refresh,
            }
        )

    def _complex(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        return complex_leads(self.account, request, self.duplicate_control)

    def _add_leads(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        return add_leads(self.account, request, self._href)

    def _add_notes(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        return add_notes(self.account, request, self._href)

    def _list_leads(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        query = request.q("query")
        if query and self.query_mode == "rejected":
            # NOT confirmed: how the API answers once ``query`` is gone is not documented.
            return validation_error(
                [("0", [problem("NotSupported", "query", "This parameter is not supported.")])])
        if self.query_mode == "ignored":
            query = None  # the list comes back as if no query had been sent
        filters = parse_filters(request.query)
        if filters and self.filter_mode == "rejected":
            # NOT confirmed: accounts without filtering are documented to ignore filters.
            return validation_error(
                [("0", [problem("NotSupported", "filter", "Filtering is not available.")])])
        if self.filter_mode == "ignored":
            # Filtering "is in alpha and available to a limited list of accounts" (amoCRM
            # "Фильтрация", https://www.amocrm.ru/developers/content/crm_platform/filters-api);
            # elsewhere the list comes back unfiltered, with 200 (amocrm/amocrm-api-php issue
            # #71: "возвращаются неотфильтрованные контакты", answered: filtering is enabled
            # on request only).
            filters = {}
        bad = _bad_lead_filters(filters)
        if bad is not None:
            return bad
        order = self._lead_order(request)
        if isinstance(order, Response):
            return order
        with_contacts = "contacts" in (request.q("with") or "").split(",")
        rows = [
            lead
            for lead in self.account.leads.values()
            if (not query or self.account.lead_matches(lead, query)) and lead_passes(lead, filters)
        ]
        if order is not None:
            key, descending = order
            rows.sort(key=lambda lead: (lead[key], lead["id"]), reverse=descending)
        return self._page(request, "leads", [self._lead_out(r, with_contacts) for r in rows])

    @staticmethod
    def _lead_order(request: RecordedRequest) -> tuple[str, bool] | Response | None:
        """``order[<field>]=asc|desc`` (documented fields: ``LEAD_ORDER_FIELDS``). Other
        fields or directions get a 400 here; the real answer to them is NOT confirmed."""
        given = [(k[6:-1], v[-1]) for k, v in request.query.items()
                 if k.startswith("order[") and k.endswith("]")]
        if not given:
            return None
        field, direction = given[0]
        if len(given) > 1 or field not in LEAD_ORDER_FIELDS or direction not in ("asc", "desc"):
            return validation_error([("0", [problem(
                "NotSupportedChoice", "order", "The value you selected is not a valid choice.")])])
        return field, direction == "desc"

    def _list_fields(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        """``GET /api/v4/leads/custom_fields``: "returns up to 50 fields per request" by
        default, ``limit`` ≤ 250, ``page`` (amoCRM "Поля и группы полей",
        https://www.amocrm.ru/developers/content/crm_platform/custom-fields);
        ``_embedded.custom_fields``, ``_links.next`` while more pages follow, 204 past the end."""
        rows = [cf.model("leads") for cf in self.account.fields["leads"].values()]
        for row in rows:
            row["_links"] = {"self": {"href": self._href(
                f"/api/v4/leads/custom_fields/{row['id']}")}}
        return self._page(request, "custom_fields", rows)

    def _add_fields(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        return add_custom_fields(self.account, "leads", request, self._href)

    def _get_lead(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        lead = self.account.leads.get(int(params["id"])) if params["id"].isdigit() else None
        if lead is None:
            return Response(204)
        with_contacts = "contacts" in (request.q("with") or "").split(",")
        return self._hal(self._lead_out(lead, with_contacts))

    def _lead_notes(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        lead_id = int(params["id"]) if params["id"].isdigit() else -1
        wanted = parse_filters(request.query).get("note_type")
        types = (
            set(wanted.values())
            if isinstance(wanted, dict)
            else ({wanted} if isinstance(wanted, str) else set(wanted or ()))
        )
        rows = [
            copy.deepcopy(n)
            for n in self.account.notes.values()
            if n["entity_id"] == lead_id and (not types or n["note_type"] in types)
        ]
        return self._page(request, "notes", rows)

    def _list_contacts(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        query = request.q("query")
        with_leads = "leads" in (request.q("with") or "").split(",")
        wanted = self._id_filter(request)
        rows = []
        for contact in self.account.contacts.values():
            if query and not self.account.contact_matches(contact, query):
                continue
            if wanted is not None and str(contact["id"]) not in wanted:
                continue
            out = copy.deepcopy(contact)
            if with_leads:
                out["_embedded"]["leads"] = [
                    {"id": lid, "_links": {"self": {"href": self._href(f"/api/v4/leads/{lid}")}}}
                    for lid, cs in self.account.lead_contacts.items()
                    if contact["id"] in cs
                ]
            rows.append(out)
        return self._page(request, "contacts", rows)

    def _list_companies(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        """``GET /api/v4/companies``: the same list rules as contacts (``page``, ``limit`` ≤
        250, ``query``, ``filter[id]``; amoCRM "Компании",
        https://www.amocrm.ru/developers/content/crm_platform/companies-api, and
        "Фильтрация": "сделки, контакты, компании и покупатели")."""
        query = (request.q("query") or "").lower()
        wanted = self._id_filter(request)
        rows = [
            self._entity_out("companies", company)
            for company in self.account.companies.values()
            if (wanted is None or str(company["id"]) in wanted)
            and (not query or query in company["name"].lower() or any(
                query in str(v["value"]).lower()
                for cf in company["custom_fields_values"] or [] for v in cf["values"]))
        ]
        return self._page(request, "companies", rows)

    def _get_contact(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        return self._get_entity("contacts", self.account.contacts, params["id"])

    def _get_company(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        return self._get_entity("companies", self.account.companies, params["id"])

    def _get_entity(self, kind: str, table: dict[int, dict[str, Any]], raw_id: str) -> Response:
        """``GET /api/v4/{contacts|companies}/{id}``; an unknown id answers 204 like the
        lists (the leads route does the same)."""
        entity = table.get(int(raw_id)) if raw_id.isdigit() else None
        return Response(204) if entity is None else self._hal(self._entity_out(kind, entity))

    def _entity_out(self, kind: str, entity: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(entity)
        out["_links"] = {"self": {"href": self._href(f"/api/v4/{kind}/{entity['id']}")}}
        return out

    def _id_filter(self, request: RecordedRequest) -> set[str] | None:
        """The ids of ``filter[id]=1``, ``filter[id][]=1&filter[id][]=2`` or
        ``filter[id][0]=1`` ("Множественный" filter, amoCRM "Фильтрация"), or None: no
        such filter, or an account whose filtering is off (``filter_mode``), which lists
        everything, unfiltered (amocrm/amocrm-api-php issue #71)."""
        if self.filter_mode == "ignored":
            return None
        ids = parse_filters(request.query).get("id")
        return None if ids is None else _filter_values(ids)

    def _pipelines(self, request: RecordedRequest, _: dict[str, str]) -> Response:
        pipelines = copy.deepcopy(list(self.account.pipelines.values()))
        return self._hal(
            {
                "_total_items": len(pipelines),
                "_links": {"self": {"href": self._href("/api/v4/leads/pipelines")}},
                "_embedded": {"pipelines": pipelines},
            }
        )

    # ------------------------------------------------------------ shapes

    def _href(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @staticmethod
    def _hal(body: Any) -> Response:
        return Response.json(body, 200, HAL)

    def _page(self, request: RecordedRequest, key: str, rows: list[dict[str, Any]]) -> Response:
        try:
            page = int(request.q("page") or 1)
            limit = int(request.q("limit") or 50)
        except ValueError:
            return validation_error(
                [("0", [problem("InvalidType", "page", "Must be an integer.")])]
            )
        if limit > MAX_LIMIT or limit < 1 or page < 1:
            return validation_error(
                [
                    (
                        "0",
                        [
                            problem(
                                "RangeError", "limit", f"limit must be between 1 and {MAX_LIMIT}."
                            )
                        ],
                    )
                ]
            )
        chunk = rows[(page - 1) * limit : page * limit]
        if not chunk:
            return Response(204)  # the real API: no content, empty body
        params = {k: v[-1] for k, v in request.query.items()}
        links: dict[str, Any] = {"self": {"href": self._link(request.path, params, page)}}
        if page * limit < len(rows):
            links["next"] = {"href": self._link(request.path, params, page + 1)}
        if page > 1:
            links["prev"] = {"href": self._link(request.path, params, page - 1)}
        return self._hal({"_page": page, "_links": links, "_embedded": {key: chunk}})

    def _link(self, path: str, params: dict[str, str], page: int) -> str:
        return self._href(f"{path}?{urlencode({**params, 'page': str(page)})}")

    def _lead_out(self, lead: dict[str, Any], with_contacts: bool) -> dict[str, Any]:
        out = copy.deepcopy(lead)
        out["_links"] = {"self": {"href": f"/api/v4/leads/{lead['id']}"}}
        if with_contacts:
            ids = self.account.lead_contacts.get(lead["id"], [])
            out["_embedded"]["contacts"] = [
                {
                    "id": cid,
                    "is_main": i == 0,
                    "_links": {"self": {"href": f"/api/v4/contacts/{cid}"}},
                }
                for i, cid in enumerate(ids)
            ]
        out["_embedded"]["companies"] = [
            {"id": c["id"], "_links": {"self": {"href": f"/api/v4/companies/{c['id']}"}}}
            for c in lead["_embedded"]["companies"]
        ]
        return out


def lead_passes(lead: dict[str, Any], filters: dict[str, Any]) -> bool:
    statuses = filters.get("statuses")
    if (
        isinstance(statuses, dict)
        and statuses
        and not any(
            str(lead["pipeline_id"]) == str(s.get("pipeline_id"))
            and str(lead["status_id"]) == str(s.get("status_id"))
            for s in statuses.values()
            if isinstance(s, dict)
        )
    ):
        return False
    for key in ("closed_at", "created_at", "updated_at"):
        bounds = filters.get(key)
        if isinstance(bounds, dict):
            value = lead[key]
            if value is None:
                return False
            if "from" in bounds and value < int(bounds["from"]):
                return False
            if "to" in bounds and value > int(bounds["to"]):
                return False
    ids = filters.get("id")
    if ids is not None and str(lead["id"]) not in _filter_values(ids):
        return False
    pipeline = filters.get("pipeline_id")
    if pipeline is not None and str(lead["pipeline_id"]) != str(pipeline):
        return False
    by_field = filters.get("custom_fields_values")
    return not isinstance(by_field, dict) or all(
        _has_value(lead, fid, _filter_values(wanted)) for fid, wanted in by_field.items())


def _filter_values(wanted: Any) -> set[str]:
    """``[<id>]=v``, ``[<id>][]=v`` or ``[<id>][0]=v`` (amocrm-api-php ``LeadsFilter::
    setCustomFieldsValues`` sends ``[<id>][0]``): the values asked for."""
    if isinstance(wanted, dict):
        out: set[str] = set()
        for value in wanted.values():
            out |= {value} if isinstance(value, str) else set(value)
        return out
    return {wanted} if isinstance(wanted, str) else set(wanted)


def _has_value(lead: dict[str, Any], field_id: str, wanted: set[str]) -> bool:
    """A text field's value equal to one asked for. Whether the real filter matches text
    exactly or as a substring is NOT documented; exact matching is the stricter choice for
    a client that must look for an exact marker anyway."""
    return any(str(cf["field_id"]) == field_id and str(v["value"]) in wanted
               for cf in lead["custom_fields_values"] or [] for v in cf["values"])


def _multitext(phones: Sequence[str], emails: Sequence[str]) -> list[dict[str, Any]]:
    """PHONE/EMAIL values as ``custom_fields_values`` (enum WORK), phones first."""
    out = []
    for code, values in (("PHONE", phones), ("EMAIL", emails)):
        if values:
            out.append({"field_code": code,
                        "values": [{"value": v, "enum_code": "WORK"} for v in values]})
    return out


def _bad_lead_filters(filters: dict[str, Any]) -> Response | None:
    """400 for filters the API cannot read. ``filter[statuses]``: "each array object has 2
    mandatory fields: pipeline_id and status_id" (Kommo "API filtration", By statuses,
    https://kommo.com/developers/content/api_v4/api-filtration; reference §1 (d)). Range
    bounds (``[from]``/``[to]``) are Unix seconds. The exact codes of the real 400 are NOT
    documented; the shape is the usual ``validation-errors``."""
    problems = []
    statuses = filters.get("statuses")
    if statuses is not None:
        entries = statuses.values() if isinstance(statuses, dict) else [statuses]
        for i, entry in enumerate(entries):
            if (not isinstance(entry, dict) or not str(entry.get("pipeline_id", "")).isdigit()
                    or not str(entry.get("status_id", "")).isdigit()):
                problems.append(problem("FieldMissing", f"filter.statuses.{i}",
                                        "pipeline_id and status_id are required."))
    for key in ("closed_at", "created_at", "updated_at"):
        bounds = filters.get(key)
        if isinstance(bounds, dict):
            for end in ("from", "to"):
                if end in bounds and not str(bounds[end]).isdigit():
                    problems.append(problem("InvalidType", f"filter.{key}.{end}",
                                            "This value should be of type int."))
    return validation_error([("0", problems)]) if problems else None


__all__ = ["FakeAmoCRM", "parse_filters"]
