"""``FakeAmoCRM``: a strict amoCRM API v4 on loopback (``shared/reference/destinations.md`` §1).

What it enforces like the real API: ``Authorization: Bearer`` (401 problem JSON otherwise),
OAuth refresh with single-use refresh tokens, a request rate over a sliding 1-second window
shared by every client (``429`` with a non-JSON body; only ``/api/`` requests count, and
rejected requests do not), ``leads/complex`` with at most 50 leads, one contact and one
company each and known tracking field codes, its bare-array answer, ``204`` with an empty
body for empty lists, ``page``/``limit`` (≤ 250) with ``_page`` and ``_links.next``,
``application/hal+json`` answers and ``application/problem+json`` errors in the
``validation-errors`` shape.
"""

from __future__ import annotations

import copy
import re
import time
from collections import deque
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from hub.testing.amocrm_account import WON_STATUS_ID, AmoAccount, problem
from hub.testing.amocrm_writes import (
    HAL,
    add_leads,
    add_notes,
    complex_leads,
    problem_response,
    validation_error,
)
from hub.testing.fakeserver import FakeServer, RecordedRequest, Response

MAX_LIMIT = 250
TOO_MANY_BODY = "<html><body><h1>429 Too Many Requests</h1></body></html>"


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
    ) -> None:
        super().__init__()
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
            ("POST", "/api/v4/leads/notes", self._add_notes),
            ("GET", "/api/v4/leads/{id}/notes", self._lead_notes),
            ("GET", "/api/v4/leads/{id}", self._get_lead),
            ("GET", "/api/v4/contacts", self._list_contacts),
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
        """Lead ids per tag starting with ``prefix``: exactly-once tests want one id each."""
        out: dict[str, list[int]] = {}
        for lead in self.leads:
            for tag in lead["_embedded"]["tags"]:
                if tag["name"].startswith(prefix):
                    out.setdefault(tag["name"], []).append(lead["id"])
        return out

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

    def add_won_deal(
        self,
        name: str,
        price: int,
        *,
        phone: str | None = None,
        email: str | None = None,
        contact_name: str | None = None,
        company: str | None = None,
        inn: str | None = None,
        closed_at: datetime | int | None = None,
        pipeline_id: int | None = None,
        status_id: int = WON_STATUS_ID,
    ) -> int:
        """A deal as a manager would have closed it, for reconciliation tests; its id."""
        closed = int(closed_at.timestamp()) if isinstance(closed_at, datetime) else closed_at
        with self.lock:
            acc = self.account
            cfv: list[dict[str, Any]] = []
            for code, value in (("PHONE", phone), ("EMAIL", email)):
                if value:
                    cfv.append(
                        {"field_code": code, "values": [{"value": value, "enum_code": "WORK"}]}
                    )
            contacts = []
            if cfv or contact_name:
                contacts.append(
                    acc.create_contact({"name": contact_name or "", "custom_fields_values": cfv})
                )
            company_id = None
            if company or inn:
                inn_field = next(f.id for f in acc.fields["companies"].values() if f.name == "ИНН")
                company_cfv = [{"field_id": inn_field, "values": [{"value": inn}]}] if inn else []
                company_id = acc.create_company(
                    {"name": company or "", "custom_fields_values": company_cfv}
                )
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
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.rate_limit:
            return self.fault_response("429")
        self._window.append(now)
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self._access.get(token, 0.0) < time.time():
            return problem_response(401, "Unauthorized", "Unauthorized")
        return None

    def fault_response(self, kind: str) -> Response:
        if kind == "429":
            self.count_429 += 1
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after else {}
            return Response(429, TOO_MANY_BODY, "text/html; charset=utf-8", headers)
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
        filters = parse_filters(request.query)
        with_contacts = "contacts" in (request.q("with") or "").split(",")
        rows = [
            lead
            for lead in self.account.leads.values()
            if (not query or self.account.lead_matches(lead, query)) and lead_passes(lead, filters)
        ]
        return self._page(request, "leads", [self._lead_out(r, with_contacts) for r in rows])

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
        rows = []
        for contact in self.account.contacts.values():
            if query and not self.account.contact_matches(contact, query):
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
    if ids is not None:
        wanted = (
            set(ids.values())
            if isinstance(ids, dict)
            else {ids}
            if isinstance(ids, str)
            else set(ids)
        )
        if str(lead["id"]) not in wanted:
            return False
    pipeline = filters.get("pipeline_id")
    return pipeline is None or str(lead["pipeline_id"]) == str(pipeline)


__all__ = ["FakeAmoCRM", "parse_filters"]
