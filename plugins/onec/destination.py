"""The ``onec`` destination: a lead becomes a counterparty (with its phones and emails) and
a customer order in 1C, exactly once.

Requests per lead: a ``GET`` for the counterparty by INN, one by phone (when the lead has
them and ``reuse_counterparties`` is on), a ``POST`` of the counterparty with its contact
information inline (when none was found), a ``POST`` of the order, and ``…/Post()`` when
``post_orders``; the first use adds ``GET $metadata``. Every request holds a slot of the
hub's limiter (``COUNTS_OWN_REQUESTS``); 1C itself has no rate limit (reference §3), so the
destination declares none, and ``rate_limit_per_s`` is how an admin spares a small server.

Exactly once: OData has no idempotency key (reference §3, "Idempotency: none"). Every order
carries ``[lh:<idempotency key>]`` and ``[lha:<attempt id>]`` in its ``Комментарий``, and so
does every counterparty LeadHub creates. After an uncertain failure the engine calls
``lookup`` (one ``GET`` with ``substringof('[lh:…]', Комментарий)``) or ``lookup_many`` (one
``GET`` per interrupted batch, by ``[lha:…]``); each row is checked on the client for the
exact marker (the brackets keep ``…:onec`` from matching ``…:onec2``). An order not found
is created again; its counterparty, if the lost attempt created one, is found by its
marker first, so a retry creates neither twice. ``substringof`` is how 1C clients search
text ([obs]: a public 1C OData client's tests send ``substringof('Partner',Description) eq
true``; the platform maps it to ``ПОДОБНО``, which also works on unlimited-length strings,
where ``eq`` does not).

Reusing counterparties: by the lead's INN (``fields.inn``; ``ИНН eq '…'``, exact), else by
phone: 1C cannot normalize a phone inside a filter, so the filter asks for the common
spellings of the number (``+79161234567``, ``89161234567``, ``+7 916 123-45-67``,
``8 (916) 123-45-67``…) in ``НомерТелефона`` and ``Представление``, and each hit is
normalized on the client. A number written some other way in 1C is not found, and a new
counterparty is created; emails are not used to reuse (1C stores them in any case, and a
shared mailbox is a weaker identity than a phone).
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from hub.sdk import (
    Capability,
    ConnectorConfig,
    DeliveryError,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    Lead,
    Limits,
    PermanentError,
    RateLimited,
    RetryableError,
    mask_phone,
)
from plugins.onec.config import ORDER_CANDIDATES, OneCConfig
from plugins.onec.contacts import (
    CONTACTS,
    EMAIL,
    PHONE,
    contact_set,
    phone_presentation,
    phone_spellings,
    same_phone,
)
from plugins.onec.odata import ODataClient, Rejected, ServerFailed, any_of, text

log = logging.getLogger(__name__)
COMMENT_CANDIDATES = ("Комментарий", "ДополнительнаяИнформация")
MARKER = re.compile(r"\[lh:([^\]]+)\]")
COMMENT_CHARS = 2000
#: Seconds past one request's timeout a batch may go on starting leads (see ``deliver``).
BATCH_SLACK_S = 5.0


def marker(item: DeliveryItem) -> str:
    return f"[lh:{item.idempotency_key}]"


def attempt_marker(attempt_id: str) -> str:
    return f"[lha:{attempt_id}]"


def contains(mark: str, prop: str) -> str:
    return f"substringof({text(mark)},{prop}) eq true"


class Plan:
    """Entity and attribute names for this infobase, read from ``$metadata`` once."""

    def __init__(self, api: ODataClient, config: OneCConfig) -> None:
        meta = api.metadata()
        self.counterparties = config.counterparties
        api.require(self.counterparties)
        if config.order_entity == "auto":
            order = next((c for c in ORDER_CANDIDATES if meta.published(c)), None)
            if order is None:
                raise PermanentError("1C publishes none of " + ", ".join(ORDER_CANDIDATES)
                                     + " over OData: publish one or set order_entity")
        else:
            order = config.order_entity
            api.require(order)
        self.order = order
        self.order_comment = meta.pick(order, COMMENT_CANDIDATES)
        if self.order_comment is None or not meta.has(order, "Контрагент_Key"):
            raise PermanentError(f"{order} has no Контрагент_Key or no Комментарий (LeadHub "
                                 "keeps its marker there): choose another order_entity")
        self.order_date = meta.has(order, "Date")
        self.order_organization = meta.has(order, "Организация_Key")
        cp = self.counterparties
        self.cp_comment = meta.pick(cp, COMMENT_CANDIDATES)
        self.cp_full_name = meta.pick(cp, ("НаименованиеПолное",))
        self.cp_inn = meta.pick(cp, ("ИНН",))
        self.cp_kind = meta.pick(cp, ("ЮридическоеФизическоеЛицо",))
        self.cp_contacts = meta.has(cp, CONTACTS)
        self.contacts = contact_set(cp)
        self.contacts_published = meta.published(self.contacts)
        self.c_phone = meta.pick(self.contacts, ("НомерТелефона",)) if self.contacts_published else None
        self.c_email = meta.pick(self.contacts, ("АдресЭП",)) if self.contacts_published else None
        self.c_kind = meta.has(self.contacts, "Вид_Key") if self.contacts_published else False


class OneCDestination(Destination[OneCConfig]):
    """1C:Enterprise over its standard OData: a counterparty and a customer order per lead."""

    Config: ClassVar[type[ConnectorConfig]] = OneCConfig
    description: ClassVar[str] = ("1C:Enterprise (standard OData): a counterparty with its "
                                  "contacts and a customer order per lead; paid clients for "
                                  "reconciliation")
    limits: ClassVar[Limits] = Limits(requests_per_second=None, batch_size=5)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({
        Capability.LOOKUP, Capability.BATCH_LOOKUP,  # by the markers in Комментарий
        Capability.COUNTS_OWN_REQUESTS,  # several requests per lead
    })

    _api: ODataClient | None = None
    _plan: Plan | None = None

    def api(self) -> ODataClient:
        if self._api is None:
            self._api = ODataClient(self.config, self.context)
        return self._api

    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = Plan(self.api(), self.config)
        return self._plan

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # ------------------------------------------------------------ deliver

    def deliver(self, items: list[DeliveryItem]) -> list[DeliveryOutcome]:
        """One lead after the other, within ``request_timeout_s + BATCH_SLACK_S``.

        A failure 1C answered (400, 5xx) or a request left unanswered (uncertain) fails its
        lead only: the next may go. A failure every lead would meet (401, 403, 404, cannot
        connect, a rate limit) stops the batch, and so does the time budget: the engine
        leases a batch for twice the timeout plus 10 s, and a lead started after that
        could be sent again by another worker while this one still works on it. The leads
        not started fail as "not sent" (certain), and go again on the next drain.
        """
        outcomes: list[DeliveryOutcome] = []
        stop: DeliveryError | None = None
        deadline = time.monotonic() + self.request_timeout_s + BATCH_SLACK_S
        for item in items:
            out = DeliveryOutcome(item.delivery_id)
            outcomes.append(out)
            if stop is None and time.monotonic() > deadline:
                stop = RetryableError("the batch ran out of time", uncertain=False)
            if stop is not None:
                out.error = (stop if isinstance(stop, PermanentError)
                             else RetryableError(f"not sent: {stop}", uncertain=False))
                continue
            if item.duplicate_of_external_id:  # not ANNOTATES_DUPLICATES: nothing to write
                out.external_id = item.duplicate_of_external_id
                continue
            try:
                out.external_id = self._deliver_one(item)
            except DeliveryError as exc:
                out.error = exc
                if not _own(exc):
                    stop = exc
        return outcomes

    def _deliver_one(self, item: DeliveryItem) -> str:
        plan, api = self.plan(), self.api()
        counterparty = None
        if item.uncertain and plan.cp_comment:
            counterparty = self._find_marked(plan.counterparties, plan.cp_comment, marker(item))
        if counterparty is None and self.config.reuse_counterparties:
            counterparty = self._find_by_inn(item.lead) or self._find_by_phone(item.lead)
        if counterparty is None:
            counterparty = api.create(plan.counterparties, self._counterparty(item))["Ref_Key"]
        order = api.create(plan.order, self._order(item, str(counterparty)))
        ref = str(order["Ref_Key"])
        if self.config.post_orders:
            try:
                api.post_document(plan.order, ref)
            except DeliveryError as exc:  # the order exists: delivered, posting is 1C's to fix
                log.warning("1C order %s created but not posted: %s", ref, exc)
        return ref

    # ------------------------------------------------------------ finding counterparties

    def _find_marked(self, entity: str, prop: str, mark: str) -> str | None:
        rows = self.api().rows(entity, filter=contains(mark, prop), select=["Ref_Key", prop],
                               orderby="Ref_Key", top=10)
        found = [r["Ref_Key"] for r in rows if mark in str(r.get(prop) or "")]
        return str(found[0]) if found else None

    def _find_by_inn(self, lead: Lead) -> str | None:
        inn = _inn(lead)
        plan = self.plan()
        if inn is None or plan.cp_inn is None:
            return None
        rows = self.api().rows(plan.counterparties, select=["Ref_Key"], orderby="Ref_Key", top=1,
                               filter=f"{plan.cp_inn} eq {text(inn)} and DeletionMark eq false")
        return str(rows[0]["Ref_Key"]) if rows else None

    def _find_by_phone(self, lead: Lead) -> str | None:
        plan = self.plan()
        if not plan.contacts_published:
            return None
        region = self.context.default_region
        for phone in lead.contact.phones[:2]:
            spellings = phone_spellings(phone)
            clauses = [f"Представление eq {text(s)}" for s in spellings]
            if plan.c_phone:
                clauses += [f"{plan.c_phone} eq {text(s)}" for s in spellings]
            select = ["Ref_Key", "Тип", "Представление", *([plan.c_phone] if plan.c_phone else [])]
            rows = self.api().rows(plan.contacts, select=select, orderby="Ref_Key", top=50,
                                   filter=f"Тип eq {text(PHONE)} and {any_of(clauses)}")
            refs = sorted({str(r["Ref_Key"]) for r in rows
                           if any(same_phone(str(r.get(k) or ""), phone, region)
                                  for k in ("Представление", plan.c_phone or "") if k)})
            if not refs:
                continue
            alive = self.api().by_keys(plan.counterparties, refs, select=["Ref_Key"],
                                       extra="DeletionMark eq false")
            if alive:
                log.info("1C: reusing counterparty %s for phone %s", alive[0]["Ref_Key"],
                         mask_phone(phone))
                return str(alive[0]["Ref_Key"])
        return None

    # ------------------------------------------------------------ bodies

    def _counterparty(self, item: DeliveryItem) -> dict[str, Any]:
        plan, lead, cfg = self.plan(), item.lead, self.config
        name = _name(lead)
        body: dict[str, Any] = {"Description": name[:100]}
        if plan.cp_full_name:
            body[plan.cp_full_name] = lead.company or name
        inn = _inn(lead)
        if plan.cp_inn and inn:
            body[plan.cp_inn] = inn
        if plan.cp_kind:
            legal = bool(lead.company) or (inn is not None and len(inn) == 10)
            body[plan.cp_kind] = "ЮридическоеЛицо" if legal else "ФизическоеЛицо"
        if plan.cp_comment:
            body[plan.cp_comment] = _order_comment(item).split("\n", 1)[0]
        rows: list[dict[str, Any]] = []
        for phone in lead.contact.phones:
            row = {"Тип": PHONE, "Представление": phone_presentation(phone)}
            if plan.c_phone:
                row[plan.c_phone] = phone
            if plan.c_kind and cfg.phone_kind_key:
                row["Вид_Key"] = cfg.phone_kind_key
            rows.append(row)
        for email in lead.contact.emails:
            row = {"Тип": EMAIL, "Представление": email}
            if plan.c_email:
                row[plan.c_email] = email
            if plan.c_kind and cfg.email_kind_key:
                row["Вид_Key"] = cfg.email_kind_key
            rows.append(row)
        if rows and plan.cp_contacts:
            body[CONTACTS] = [{"LineNumber": str(n), **row} for n, row in enumerate(rows, 1)]
        return body

    def _order(self, item: DeliveryItem, counterparty: str) -> dict[str, Any]:
        plan, cfg = self.plan(), self.config
        assert plan.order_comment is not None
        body: dict[str, Any] = {"Контрагент_Key": counterparty,
                                plan.order_comment: _order_comment(item)}
        if plan.order_date:
            local = datetime.now(ZoneInfo(cfg.timezone)).replace(tzinfo=None, microsecond=0)
            body["Date"] = local.isoformat()
        if plan.order_organization and cfg.organization_key:
            body["Организация_Key"] = cfg.organization_key
        return body

    # ------------------------------------------------------------ lookup

    def lookup(self, item: DeliveryItem) -> str | None:
        """The order an earlier attempt created, by ``[lh:<key>]`` in its comment."""
        if item.duplicate_of_external_id:
            return item.duplicate_of_external_id
        plan = self.plan()
        assert plan.order_comment is not None
        return self._find_marked(plan.order, plan.order_comment, marker(item))

    def lookup_many(self, items: list[DeliveryItem]) -> dict[str, str]:
        """One ``GET`` per interrupted attempt (its orders share ``[lha:<attempt>]``),
        matched back to items by ``[lh:<key>]``; items without an attempt one by one."""
        plan = self.plan()
        comment = plan.order_comment
        assert comment is not None
        found: dict[str, str] = {}
        by_attempt: dict[str, list[DeliveryItem]] = {}
        for item in items:
            if item.previous_attempt_id and not item.duplicate_of_external_id:
                by_attempt.setdefault(item.previous_attempt_id, []).append(item)
            else:
                ext = self.lookup(item)
                if ext:
                    found[item.delivery_id] = ext
        for attempt, group in by_attempt.items():
            mark = attempt_marker(attempt)
            order_of: dict[str, str] = {}
            skip = 0
            while True:
                rows = self.api().rows(plan.order, filter=contains(mark, comment),
                                       select=["Ref_Key", comment], orderby="Ref_Key",
                                       top=100, skip=skip)
                for row in rows:
                    note = str(row.get(comment) or "")
                    if mark in note:
                        for key in MARKER.findall(note):
                            order_of.setdefault(key, str(row["Ref_Key"]))
                if len(rows) < 100:
                    break
                skip += 100
            for item in group:
                if item.idempotency_key in order_of:
                    found[item.delivery_id] = order_of[item.idempotency_key]
        return found


def _own(error: DeliveryError) -> bool:
    """Whether ``error`` is this lead's alone: 1C answered (a 400, a 5xx), or the request
    went unanswered (it may have landed: the lead is looked up before it goes again)."""
    if isinstance(error, Rejected | ServerFailed):
        return True
    return isinstance(error, RetryableError) and error.uncertain and not isinstance(error, RateLimited)


def _inn(lead: Lead) -> str | None:
    raw = lead.fields.get("inn")
    inn = re.sub(r"\D", "", str(raw)) if isinstance(raw, str | int) else ""
    return inn if len(inn) in (10, 12) else None


def _name(lead: Lead) -> str:
    for value in (lead.company, lead.contact.name):
        if value and value.strip():
            return value.strip()
    if lead.contact.phones:
        return phone_presentation(lead.contact.phones[0])
    if lead.contact.emails:
        return lead.contact.emails[0]
    return f"Лид {lead.id}"


def _order_comment(item: DeliveryItem) -> str:
    lead = item.lead
    head = f"LeadHub {marker(item)}"
    if item.attempt_id:
        head += f" {attempt_marker(item.attempt_id)}"
    lines = [head, f"Источник: {lead.source} ({lead.channel})"]
    if lead.contact.name:
        lines.append(f"Контакт: {lead.contact.name}")
    if lead.product:
        lines.append(f"Продукт: {lead.product}")
    if lead.message:
        lines.append(f"Сообщение: {lead.message}")
    utm = ", ".join(f"{k}={v}" for k, v in lead.utm.model_dump().items() if v)
    if utm:
        lines.append(f"UTM: {utm}")
    if lead.page_url:
        lines.append(f"Страница: {lead.page_url}")
    return "\n".join(lines)[:COMMENT_CHARS]

