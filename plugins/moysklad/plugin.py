"""The ``moysklad`` plugin: a routed lead becomes a counterparty and a customer order in
MoySklad (JSON API 1.2), and bank and cash receipts are read back for reconciliation.

Delivering a batch (reference ``destinations.md`` §4 (a), (b)):

1. the organization (our legal entity) the orders go under, once per process:
   ``GET entity/organization`` (the one named or with the id in ``organization``, else the
   account's only one);
2. per lead, the counterparty it already is: ``GET entity/counterparty?filter=phone~<the
   last 10 digits>`` (a substring match, case-insensitive: ``md/_general.md`` "Оператор
   фильтрации подобие"), then ``filter=email~<address>``; the candidates are checked
   here against the lead's normalized phone or email, since MoySklad keeps a phone as the
   text someone typed. ``phone~`` is a literal substring: the last 10 digits find a phone
   written as digits (``+7916…``, ``8916…``, LeadHub's own E.164), not one typed with
   spaces or dashes (``8 (916) 765-43-21``). A second query per lead for those forms
   would double the cost of every new lead against a budget as low as 11 requests per
   3 s, so such a client is found by e-mail, or gets a counterparty of LeadHub's (never
   two for one lead);
3. one ``POST entity/counterparty`` with the array of those not found, one ``POST
   entity/customerorder`` with the array of orders (a POST takes an array of up to 1000,
   ``md/_general.md`` "Создание и обновление нескольких объектов").

Exactly once: every counterparty and order carries a ``syncId`` derived from the
delivery's idempotency key (``formats.sync_id``); MoySklad answers a resend with the same
``syncId`` with the entity it created the first time. After an uncertain failure (a 5xx,
a timeout) the engine simply sends the lead again: step 2 finds the counterparty if it was
created, and step 3 returns the existing entities. So the destination declares no
``LOOKUP``: the resend is the look-up, and costs no more than one.

Reading payments (``MoySkladPayments``): see its docstring.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from hub.sdk import (
    AccountingReader,
    Capability,
    Connector,
    ConnectorConfig,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    HttpConnectorConfig,
    Lead,
    Limits,
    Payment,
    RetryableError,
    find_emails,
    find_phones,
    hookimpl,
)
from plugins.moysklad.client import MAX_PARALLEL, MsClient
from plugins.moysklad.formats import from_moscow, roubles, sync_id, to_moscow

log = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.moysklad.ru/api/remap/1.2"
#: The lowest documented budget: a user token from 01.12.2026, a draft solution's token
#: from 13.04.2026 (``md/_restrictions.md``).
LOWEST_BUDGET = 11
BATCH_SIZE = 10
TEXT_MAX = 4096  # description is String(4096) on counterparty and customerorder
NAME_MAX = 255


def rate_for(requests_per_3s: int) -> float:
    """Requests per second the hub's limiter may grant for a budget of ``requests_per_3s``.

    The limiter spaces grants by 0.97 / rate, so any 3 s hold at most ⌊3 · rate / 0.97⌋ + 1
    of them; ``0.97 · (budget − 1) / 3`` keeps that at the budget when MoySklad counts over
    a sliding 3 s. Capped at ``MAX_PARALLEL`` per second: the limiter counts a request in
    flight in its one-second window, so a rate of 5 also bounds the parallel requests of all
    workers together at 5 (``md/_restrictions.md``), which a higher rate would not.
    """
    return min(0.97 * max(requests_per_3s - 1, 1) / 3.0, float(MAX_PARALLEL))


class MoySkladConfig(HttpConnectorConfig):
    base_url: str = Field(default=DEFAULT_BASE_URL, description=(
        "The JSON API's address (default https://api.moysklad.ru/api/remap/1.2)."))
    token: SecretStr = Field(description=(
        "An access token (a user's, or a solution's), sent as Authorization: Bearer."))
    organization: str | None = Field(default=None, description=(
        "Your legal entity the customer orders go under: its id or its name exactly as in "
        "MoySklad. Unset: the account's only organization (an account with several must set it)."))
    requests_per_3s: int = Field(default=LOWEST_BUDGET, ge=1, le=45, description=(
        "Your token's request budget per 3 seconds: 45 for a published solution's token; "
        "22, 15 and then 11 for user tokens and login/password (from 12.05, 01.09 and "
        "01.12.2026), 11 for a solution in draft or moderation. Default 11, which is safe "
        "for every token. LeadHub never sends more than 5 a second (5 parallel requests)."))
    tag: str = Field(default="leadhub", description=(
        "Group (tag) put on the counterparties LeadHub creates; empty: none."))


class _MoySkladConnector:
    """What the destination and the reader share: the client, built once."""

    config: MoySkladConfig
    _client: MsClient | None = None

    def client(self) -> MsClient:
        if self._client is None:
            connector: Any = self
            cfg = self.config
            self._client = MsClient(cfg, connector.context, base_url=cfg.base_url,
                                    token=cfg.token.get_secret_value(), timeout_s=cfg.timeout_s)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class MoySkladDestination(_MoySkladConnector, Destination[MoySkladConfig]):
    """A counterparty (found or created) and a customer order per lead; see the module docstring."""

    Config: ClassVar[type[ConnectorConfig]] = MoySkladConfig
    description: ClassVar[str] = "MoySklad: a counterparty and a customer order per lead"
    limits: ClassVar[Limits] = Limits(requests_per_second=rate_for(LOWEST_BUDGET),
                                      batch_size=BATCH_SIZE)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.COUNTS_OWN_REQUESTS})

    _organization: dict[str, Any] | None = None

    def effective_limits(self) -> Limits:
        """The rate the admin's ``requests_per_3s`` allows (see ``rate_for``), lowered by
        ``rate_limit_per_s`` when set."""
        rate = rate_for(self.config.requests_per_3s)
        lowered = self.config.rate_limit_per_s
        if lowered is not None:
            rate = min(rate, lowered)
        return Limits(rate, self.limits.batch_size, self.limits.burst)

    # ------------------------------------------------------------ deliver

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        outcomes = {item.delivery_id: DeliveryOutcome(item.delivery_id) for item in items}
        todo = []
        for item in items:
            if item.duplicate_of_external_id:  # the original's order is there already
                outcomes[item.delivery_id].external_id = item.duplicate_of_external_id
            else:
                todo.append(item)
        if not todo:
            return list(outcomes.values())
        organization = self.organization()
        agents: dict[str, dict[str, Any]] = {}
        creates: list[dict[str, Any]] = []
        first_of: dict[str, str] = {}  # a contact key → the syncId of its new counterparty
        waiting: dict[str, str] = {}  # delivery id → that syncId
        for item in todo:
            found = self.find_counterparty(item.lead)
            if found is not None:
                agents[item.delivery_id] = found["meta"]
                continue
            keys = _contact_keys(item.lead)
            shared = next((first_of[k] for k in keys if k in first_of), None)
            if shared is None:  # two leads of one batch with one phone: one counterparty
                shared = sync_id(item.idempotency_key, "counterparty")
                creates.append(self.counterparty_body(item, shared))
                first_of.update(dict.fromkeys(keys, shared))
            waiting[item.delivery_id] = shared
        if creates:
            made = _by_sync_id(self.client().post("/entity/counterparty", creates))
            for delivery_id, sid in waiting.items():
                if sid not in made:
                    raise RetryableError("MoySklad answered the counterparties without one "
                                         "LeadHub sent", uncertain=True)
                agents[delivery_id] = made[sid]["meta"]
        orders = [self.order_body(item, organization, agents[item.delivery_id]) for item in todo]
        placed = _by_sync_id(self.client().post("/entity/customerorder", orders))
        for item in todo:
            row = placed.get(sync_id(item.idempotency_key, "customerorder"))
            if row is None or not row.get("id"):
                outcomes[item.delivery_id].error = RetryableError(
                    "MoySklad answered the orders without this lead's", uncertain=True)
            else:
                outcomes[item.delivery_id].external_id = str(row["id"])
        return [outcomes[item.delivery_id] for item in items]

    def organization(self) -> dict[str, Any]:
        """The meta of the organization orders go under (see ``organization``)."""
        if self._organization is not None:
            return self._organization
        wanted = self.config.organization
        rows = self.client().get("/entity/organization", {"limit": 100}).get("rows") or []
        if wanted:
            rows = [r for r in rows if wanted in (r.get("id"), r.get("name"))]
        if len(rows) != 1:
            named = f"named {wanted!r}" if wanted else "to choose from"
            raise RetryableError(
                f"MoySklad: {len(rows)} organizations {named}; set organization to the id or "
                "name of the legal entity orders go under")
        self._organization = dict(rows[0]["meta"])
        return self._organization

    def find_counterparty(self, lead: Lead) -> dict[str, Any] | None:
        """The counterparty with the lead's phone (else email), checked exactly here."""
        region = self.context.default_region
        client = self.client()
        for phone in lead.contact.phones[:3]:
            for needle in _phone_needles(phone):
                answer = client.get("/entity/counterparty",
                                    {"filter": f"phone~{needle}", "limit": 100})
                for row in answer.get("rows") or []:
                    if phone in find_phones(str(row.get("phone") or ""), region):
                        return dict(row)
        for email in lead.contact.emails[:3]:
            answer = client.get("/entity/counterparty",
                                {"filter": f"email~{_escape(email)}", "limit": 100})
            for row in answer.get("rows") or []:
                if email in find_emails(str(row.get("email") or "")):
                    return dict(row)
        return None

    def counterparty_body(self, item: DeliveryItem, sid: str) -> dict[str, Any]:
        lead, contact = item.lead, item.lead.contact
        name = (lead.company or contact.name or (contact.phones[:1] or contact.emails[:1]
                                                 or [f"Lead {lead.id}"])[0])
        body: dict[str, Any] = {"name": name[:NAME_MAX], "syncId": sid,
                                "description": f"From LeadHub, lead {lead.id}"}
        if contact.phones:
            body["phone"] = ", ".join(contact.phones)[:NAME_MAX]
        if contact.emails:
            body["email"] = contact.emails[0][:NAME_MAX]
        inn = str(lead.fields.get("inn") or "").strip()
        if inn.isdigit() and len(inn) in (10, 12):
            body["inn"] = inn
        if self.config.tag:
            body["tags"] = [self.config.tag]
        return body

    def order_body(self, item: DeliveryItem, organization: dict[str, Any],
                   agent: dict[str, Any]) -> dict[str, Any]:
        return {"organization": {"meta": organization}, "agent": {"meta": agent},
                "syncId": sync_id(item.idempotency_key, "customerorder"),
                "externalCode": item.lead.id, "description": _describe(item.lead)[:TEXT_MAX]}


class MoySkladPayments(_MoySkladConnector, AccountingReader[MoySkladConfig]):
    """Customer payments: bank receipts (``paymentin``) and cash receipts (``cashin``).

    ``GET entity/<type>?filter=moment>=<since>;moment<<until>;applicable=true&expand=agent``
    with ``since``/``until`` in Moscow time (MoySklad's date-times carry no zone: three
    hours off at either end otherwise), ``limit=100`` (``expand`` is ignored above 100), paged to
    the end. Only posted documents (``applicable``) of a counterparty; documents in the
    trash are not listed. Refunds and outgoing payments (``paymentout``, ``cashout``) are
    other entities and are not read; a receipt linked in ``operations`` to a purchase
    return (``purchasereturn``, ``md/documents/_payment_in.md``) is a supplier's refund,
    not a customer's payment. Amounts come in kopecks. A row whose agent came
    without its fields (``expand`` not applied) has it read once per counterparty.
    """

    Config: ClassVar[type[ConnectorConfig]] = MoySkladConfig
    KINDS: ClassVar[tuple[tuple[str, str], ...]] = (("paymentin", "bank_receipt"),
                                                    ("cashin", "cash_receipt"))

    def payments(self, since: datetime, until: datetime) -> Iterator[list[Payment]]:
        agents: dict[str, dict[str, Any]] = {}
        filter_ = f"moment>={to_moscow(since)};moment<{to_moscow(until)};applicable=true"
        for entity, kind in self.KINDS:
            params = {"filter": filter_, "expand": "agent", "order": "moment,asc"}
            for rows in self.client().pages(f"/entity/{entity}", params):
                page = [p for row in rows
                        if (p := self._payment(row, kind, agents)) is not None
                        and since <= p.date < until]
                yield page

    def _payment(self, row: dict[str, Any], kind: str,
                 agents: dict[str, dict[str, Any]]) -> Payment | None:
        agent = row.get("agent") or {}
        meta = agent.get("meta") or {}
        if meta.get("type") != "counterparty" or not row.get("applicable"):
            return None  # a transfer from our own organization is no customer's payment
        if any(((op.get("meta") or {}).get("type")) == "purchasereturn"
               for op in row.get("operations") or [] if isinstance(op, dict)):
            return None  # a supplier's refund of a purchase return
        agent_id = str(agent.get("id") or str(meta.get("href", "")).rstrip("/").rsplit("/", 1)[-1])
        if "name" not in agent:
            if agent_id not in agents:
                agents[agent_id] = self.client().get(f"/entity/counterparty/{agent_id}")
            agent = agents[agent_id]
        region = self.context.default_region
        phones = tuple(find_phones(str(agent.get("phone") or ""), region)) or (
            (str(agent["phone"]),) if agent.get("phone") else ())
        return Payment(
            external_id=str(row["id"]), client_key=f"counterparty:{agent_id}",
            amount=roubles(row.get("sum") or 0), date=from_moscow(str(row["moment"])),
            name=agent.get("name"), inn=agent.get("inn") or None, phones=phones,
            emails=tuple(find_emails(str(agent.get("email") or ""))), document_kind=kind,
            number=row.get("name"))


def _by_sync_id(answer: Any) -> dict[str, dict[str, Any]]:
    rows = answer if isinstance(answer, list) else [answer]
    return {str(r["syncId"]): r for r in rows if isinstance(r, dict) and r.get("syncId")}


def _phone_needles(phone: str) -> list[str]:
    """What ``phone~`` looks for: the last 10 digits (the reference's ``phone~9991234567``)."""
    digits = re.sub(r"\D", "", phone)
    return [digits[-10:]] if len(digits) >= 7 else []


def _contact_keys(lead: Lead) -> list[str]:
    return [*lead.contact.phones, *lead.contact.emails]


def _escape(value: str) -> str:
    """A ``;`` inside a filter value is written ``\\;`` (``md/_general.md``, filter)."""
    return value.replace(";", "\\;")


def _describe(lead: Lead) -> str:
    lines = [f"LeadHub lead {lead.id} from {lead.source} ({lead.channel})"]
    if lead.contact.name:
        lines.append(f"Contact: {lead.contact.name}")
    for label, value in (("Product", lead.product), ("Message", lead.message),
                         ("Page", lead.page_url)):
        if value:
            lines.append(f"{label}: {value}")
    utm = {k: v for k, v in lead.utm.model_dump().items() if v}
    if utm:
        lines.append("UTM: " + ", ".join(f"{k}={v}" for k, v in utm.items()))
    return "\n".join(lines)


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(MoySkladDestination)
    register(MoySkladPayments)
