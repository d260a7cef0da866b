"""The ``businessru`` plugin: Business.Ru (Class365) takes leads and gives back payments.

Destination: each lead becomes a customer order (``customerorders``) of a partner
(``partners``), exactly once. Business.Ru has no idempotency key, so every step can be
repeated and finds what an earlier attempt did before creating anything:

1. the partner: by the lead's INN (``partners?inn=``), phones and emails
   (``partnercontactinfo?contact_info_type_id=1|4&contact_info=``, exact match as
   Business.Ru filters); else a partner this lead's attempts created, found by its name
   and the ``lh:<marker>`` in its ``description`` (a partner created by an uncertain POST
   has no contacts yet, so the phone finds nothing); else a new partner;
2. its phones and emails, only those it lacks (``partnercontactinfo?partner_id=``);
3. the order: ``customerorders?number=LH-<marker>``, else a new order with that number.
   ``lookup`` is step 3 alone (``Capability.LOOKUP``). ``<marker>`` is 16 hex digits of
   the sha-256 of the delivery's idempotency key.

A write whose answer is lost (timeout, 5xx, or a signature that fails: the SDK's
``auth:1``) is uncertain: the engine calls ``lookup`` and, if nothing is there, delivers
again through the same steps. Every request takes a slot of the hub's limiter
(``COUNTS_OWN_REQUESTS``): a new lead costs up to 8.

Reader (``payments``): bank receipts (``paymentin``, "Платежное поручение входящее":
``payment_type`` 2 = done, 1 = planned) and cash receipts (``cashin``) dated in
``[since, until)``, not deleted, not unposted (``held`` false), whose operation
(``paymentinoperations``/``cashinoperations``) is a customer's payment: by default the
operations whose name mentions a buyer ("покупател"), or the ids the admin lists. A
supplier's refund is money in but no sale, and is left out. Dates are filtered on the
server as ``date[from]``/``date[to]`` in ``dd.mm.YYYY HH:MM`` of the account's time zone
(minute precision, so one minute wider) and exactly on the client; pages of
``page_size`` (≤ 250) ordered by id until a short page. Each new partner costs one
``partners?id=…&extend=partnercontactinfo`` (cached for the run) for its name, INN, phones
and emails.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, field_validator

from hub.sdk import (
    AccountingReader,
    Capability,
    Connector,
    ConnectorConfig,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    HttpConnectorConfig,
    Limits,
    Payment,
    RetryableError,
    TimeZoneName,
    hookimpl,
)
from plugins.businessru.client import BruClient

log = logging.getLogger(__name__)
PHONE, EMAIL = 1, 4  # contact_info_type_id (reference §5 [obs]; a public roistat integration)
NUMBER_PREFIX = "LH-"
CUSTOMER_WORD = "покупател"  # "Оплата от покупателя"
DOCUMENTS = (("paymentin", "bank_receipt"), ("cashin", "cash_receipt"))


class BusinessRuConfig(HttpConnectorConfig):
    base_url: str = Field(description="The account's address, https://{account}.business.ru "
                          "(older accounts: https://{account}.class365.ru).")
    app_id: str = Field(examples=["538821"], description="The integration's id (digits), from Business.Ru's "
                        "integration settings.")
    secret: SecretStr = Field(description="The integration's secret key (32 characters).")
    timezone: TimeZoneName = Field(default="Europe/Moscow", description="The account's time zone: "
                          "Business.Ru's dates and dd.mm.YYYY filters are in it.")
    page_size: int = Field(default=250, ge=1, le=250, description="Records per page the reader "
                           "asks for (Business.Ru allows at most 250).")
    organization_id: int | None = Field(default=None, description="Your organization for new "
                                        "customer orders (default: the account's).")
    responsible_employee_id: int | None = Field(default=None, description="Employee responsible "
                                                "for new orders (default: the lead's assignee "
                                                "when it is a number, else the account's).")
    status_id: int | None = Field(default=None, description="Status of new orders "
                                  "(customerorderstatus id; default: the account's first).")
    payment_operation_ids: list[int] = Field(
        default_factory=list, description="paymentinoperations ids that are customers' "
        "payments (default: those whose name mentions a buyer, \"покупател\").")
    cash_operation_ids: list[int] = Field(
        default_factory=list, description="cashinoperations ids that are customers' payments "
        "(default: as for payment_operation_ids).")
    limit_wait_s: float = Field(default=30.0, ge=0, le=600, description="How long the reader "
                                "waits after Business.Ru's 503 \"over the limit\" answer, "
                                "unless it says Retry-After (the SDK's sleepy mode waits 30 s).")
    limit_waits: int = Field(default=5, ge=0, le=100, description="How many 503s in a row the "
                             "reader waits out before failing the run.")

    @field_validator("app_id")
    @classmethod
    def _digits(cls, value: str) -> str:
        if not value.strip().isdigit():
            raise ValueError("must be the integration's numeric id")
        return value.strip()

    def client(self, context: ConnectorContext, *, reader: bool = False) -> BruClient:
        # One token per account and app, shared by the hub's processes (the SDK's cache key).
        key = hashlib.md5(f"{self.base_url}{self.app_id}".encode()).hexdigest()
        return BruClient(self, context, base_url=self.base_url, app_id=self.app_id,
                         secret=self.secret.get_secret_value(), timeout_s=self.timeout_s,
                         wait_on_limit=reader, limit_wait_s=self.limit_wait_s,
                         limit_waits=self.limit_waits,
                         token_file=context.data_dir / "businessru" / f"{key}.token")


def marker(item: DeliveryItem) -> str:
    return hashlib.sha256(item.idempotency_key.encode()).hexdigest()[:16]


def order_number(item: DeliveryItem) -> str:
    return NUMBER_PREFIX + marker(item)


def _rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    result = body.get("result")
    return [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []


def _new_id(body: dict[str, Any]) -> str:
    result = body.get("result")
    if isinstance(result, dict) and result.get("id") not in (None, ""):
        return str(result["id"])
    raise ValueError("Business.Ru answered a POST without result.id")


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _falsy(value: Any) -> bool:
    return value in (False, 0, "0", "false", "False")


class BusinessRuDestination(Destination[BusinessRuConfig]):
    """Customer orders in Business.Ru, each with its partner; see the module docstring."""

    Config: ClassVar[type[ConnectorConfig]] = BusinessRuConfig
    description: ClassVar[str] = "Business.Ru (Class365): a customer order with its partner per lead"
    # No documented request rate ([verify]); 503 answers "over the limit". 3/s is modest,
    # and an admin lowers it with rate_limit_per_s.
    # batch_size: leads per deliver call, sent one after another (no batch endpoint).
    limits: ClassVar[Limits] = Limits(requests_per_second=3, batch_size=2)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LOOKUP,  # customerorders?number=LH-<marker>
        Capability.COUNTS_OWN_REQUESTS,  # a lead costs several requests
    })

    _client: BruClient | None = None

    def client(self) -> BruClient:
        if self._client is None:
            self._client = self.config.client(self.context)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        outcomes = []
        for item in items:
            outcome = DeliveryOutcome(item.delivery_id)
            writes = self.client().writes
            try:
                outcome.external_id = self._deliver_one(item)
            except RetryableError as exc:
                # After a partner or contact was written, the next attempt must search for
                # it first (by its marker) even if this failure itself was certain.
                if self.client().writes > writes:
                    exc.uncertain = True
                outcome.error = exc
            except Exception as exc:  # an item's failure is its own; the engine maps it
                outcome.error = exc
            outcomes.append(outcome)
        return outcomes

    def lookup(self, item: DeliveryItem) -> str | None:
        found = _rows(self.client().request("GET", "customerorders", {"number": order_number(item)}))
        return str(found[0]["id"]) if found else None

    def _deliver_one(self, item: DeliveryItem) -> str:
        partner, created = self._partner(item)
        self._add_contacts(item, partner, fresh=created)
        if item.uncertain:  # only an earlier attempt can have made the order
            existing = self.lookup(item)
            if existing:
                return existing
        lead, cfg = item.lead, self.config
        order: dict[str, Any] = {"partner_id": partner, "number": order_number(item),
                                 "name": (lead.product or lead.message or "LeadHub lead")[:250],
                                 "comment": _comment(item)}
        responsible = cfg.responsible_employee_id
        if responsible is None and lead.assigned_to and lead.assigned_to.isdigit():
            responsible = int(lead.assigned_to)
        for key, value in (("organization_id", cfg.organization_id), ("status_id", cfg.status_id),
                           ("responsible_employee_id", responsible)):
            if value is not None:
                order[key] = value
        return _new_id(self.client().request("POST", "customerorders", order))

    def _partner(self, item: DeliveryItem) -> tuple[str, bool]:
        """The partner's id, and whether this call created it."""
        client, lead = self.client(), item.lead
        inn = str(lead.fields.get("inn") or "").strip()
        if inn:
            found = _rows(client.request("GET", "partners", {"inn": inn}))
            if found:
                return str(found[0]["id"]), False
        for kind, values in ((PHONE, lead.contact.phones), (EMAIL, lead.contact.emails)):
            for value in values:
                found = _rows(client.request("GET", "partnercontactinfo", {
                    "contact_info_type_id": kind, "contact_info": value}))
                if found:
                    return str(found[0]["partner_id"]), False
        name = _partner_name(item)
        mark = "lh:" + marker(item)
        if item.uncertain:  # an earlier attempt's partner, perhaps still without contacts
            mine = _rows(client.request("GET", "partners", {
                "name": name, "order_by": {"id": "DESC"}, "limit": 50}))
            for row in mine:
                if mark in str(row.get("description") or ""):
                    return str(row["id"]), False
        partner: dict[str, Any] = {"name": name, "description": f"LeadHub {mark}"}
        if inn:
            partner["inn"] = inn
        return _new_id(client.request("POST", "partners", partner)), True

    def _add_contacts(self, item: DeliveryItem, partner: str, *, fresh: bool) -> None:
        """The lead's phones and emails the partner lacks (``fresh``: it has none yet)."""
        client, contact = self.client(), item.lead.contact
        if not contact.phones and not contact.emails:
            return
        have: set[tuple[str, str]] = set()
        if not fresh:
            have = {(str(r.get("contact_info_type_id")), str(r.get("contact_info")))
                    for r in _rows(client.request("GET", "partnercontactinfo", {"partner_id": partner}))}
        for kind, values in ((PHONE, contact.phones), (EMAIL, contact.emails)):
            for value in values:
                if (str(kind), value) not in have:
                    client.request("POST", "partnercontactinfo", {
                        "partner_id": partner, "contact_info_type_id": kind, "contact_info": value})


def _partner_name(item: DeliveryItem) -> str:
    lead = item.lead
    name = lead.company or lead.contact.name or (lead.contact.phones or lead.contact.emails or ["LeadHub"])[0]
    return name.strip()[:250] or "LeadHub"


def _comment(item: DeliveryItem) -> str:
    lead = item.lead
    lines = [f"LeadHub lead {lead.id} from {lead.source}"]
    if lead.message:
        lines.append(lead.message)
    if lead.page_url:
        lines.append(lead.page_url)
    return "\n".join(lines)[:2000]


class BusinessRuPayments(AccountingReader[BusinessRuConfig]):
    """Customers' bank and cash receipts; see the module docstring."""

    Config = BusinessRuConfig
    _client: BruClient | None = None

    def client(self) -> BruClient:
        if self._client is None:
            self._client = self.config.client(self.context, reader=True)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def payments(self, since: datetime, until: datetime) -> Iterator[list[Payment]]:
        zone = ZoneInfo(self.config.timezone)
        partners: dict[str, dict[str, Any]] = {}
        for model, kind in DOCUMENTS:
            operations = self._customer_operations(model)
            if not operations:
                log.warning("Business.Ru: no %soperations is a customer's payment; %s skipped",
                            model, model)
                continue
            for rows in self._pages(model, since, until, zone):
                wanted = [r for r in rows if _counts(r, model, operations, since, until, zone)]
                for pid in {str(r["partner_id"]) for r in wanted} - set(partners):
                    partners[pid] = self._partner(pid)
                yield [_payment(r, kind, partners[str(r["partner_id"])], zone) for r in wanted]

    def _customer_operations(self, model: str) -> set[str]:
        given = (self.config.payment_operation_ids if model == "paymentin"
                 else self.config.cash_operation_ids)
        if given:
            return {str(i) for i in given}
        rows = _rows(self.client().request("GET", f"{model}operations", {}))
        return {str(r["id"]) for r in rows if CUSTOMER_WORD in str(r.get("name", "")).lower()}

    def _pages(self, model: str, since: datetime, until: datetime,
               zone: ZoneInfo) -> Iterator[list[dict[str, Any]]]:
        size = self.config.page_size
        params: dict[str, Any] = {
            "date": {"from": _minute(since, zone), "to": _minute(until, zone, later=True)},
            "order_by": {"id": "ASC"}, "limit": size}
        if model == "paymentin":
            params["payment_type"] = 2  # done, not planned
        page = 1
        while True:
            rows = _rows(self.client().request("GET", model, {**params, "page": page}))
            yield rows
            if len(rows) < size:
                return
            page += 1

    def _partner(self, pid: str) -> dict[str, Any]:
        found = _rows(self.client().request("GET", "partners", {"id": pid, "extend": "partnercontactinfo"}))
        return found[0] if found else {"id": pid}


def _minute(moment: datetime, zone: ZoneInfo, *, later: bool = False) -> str:
    local = moment.astimezone(zone).replace(second=0, microsecond=0)
    if later:
        local += timedelta(minutes=1)
    return local.strftime("%d.%m.%Y %H:%M")


def parse_date(text: str, zone: ZoneInfo) -> datetime:
    """Business.Ru's ``dd.mm.YYYY HH:MM:SS`` (or ISO ``YYYY-MM-DD HH:MM:SS``) in ``zone``."""
    text = text.strip()
    for form in ("%d.%m.%Y %H:%M:%S.%f", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y",
                 "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=zone)
        except ValueError:
            continue
    raise ValueError(f"Business.Ru date {text!r} in no known format")


def _counts(row: dict[str, Any], model: str, operations: set[str], since: datetime,
            until: datetime, zone: ZoneInfo) -> bool:
    if _truthy(row.get("deleted")) or _falsy(row.get("held")) or not row.get("partner_id"):
        return False
    if model == "paymentin" and str(row.get("payment_type")) != "2":
        return False
    if str(row.get("operation_id")) not in operations:
        return False
    return since <= parse_date(str(row.get("date") or ""), zone) < until


def _payment(row: dict[str, Any], kind: str, partner: dict[str, Any], zone: ZoneInfo) -> Payment:
    contacts = partner.get("partnercontactinfo") or []
    def values(type_id: int) -> tuple[str, ...]:
        return tuple(str(c["contact_info"]) for c in contacts
                     if isinstance(c, dict) and str(c.get("contact_info_type_id")) == str(type_id)
                     and c.get("contact_info"))
    return Payment(
        external_id=f"{kind}:{row['id']}", client_key=str(row["partner_id"]),
        amount=float(str(row.get("sum") or 0).replace(",", ".")),
        date=parse_date(str(row["date"]), zone),
        name=str(partner.get("name") or "") or None, inn=str(partner.get("inn") or "") or None,
        phones=values(PHONE), emails=values(EMAIL), document_kind=kind,
        number=str(row.get("number") or "") or None)




@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(BusinessRuDestination)
    register(BusinessRuPayments)
