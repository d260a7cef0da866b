"""Settings of a 1C connector: one ``[destinations.NAME]`` table, read by the destination
and by the accounting reader built from it (``hub/sdk/readers.py``)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from hub.sdk import HttpConnectorConfig, TimeZoneName

#: Where a customer order lives, by configuration, tried in this order against ``$metadata``:
#: УНФ / УТ 10 / КА 1 (``ЗаказПокупателя``), УТ 11 / КА 2 / ERP (``ЗаказКлиента``); БП 3.0 has
#: no customer order, its nearest document is the customer invoice (``СчетНаОплатуПокупателю``,
#: reference §3 (e)).
ORDER_CANDIDATES = ("Document_ЗаказПокупателя", "Document_ЗаказКлиента",
                    "Document_СчетНаОплатуПокупателю")


class OneCConfig(HttpConnectorConfig):
    base_url: str = Field(
        examples=["https://1c.example.ru/trade/odata/standard.odata"],
        description="The infobase's standard OData address, ending in /odata/standard.odata "
                    "(e.g. https://1c.example.ru/buh/odata/standard.odata).")
    username: str = Field(description="The infobase user LeadHub signs in as (HTTP Basic); "
                          "its roles decide what it may read and write.")
    password: SecretStr = Field(description="That user's password.")
    timezone: TimeZoneName = Field(
        default="Europe/Moscow",
        description="The infobase's time zone: 1C dates carry none, they are the base's "
                    "local time (reference §3).")
    date_filter_mode: Literal["auto", "server", "client"] = Field(
        default="auto",
        description="How payments are limited to the dates read: 'server' ($filter on Date), "
                    "'client' (LeadHub skips rows outside the dates; for bases whose Date "
                    "filters fail), 'auto' (server, switching to client when a Date filter "
                    "fails and the same request without it works).")
    page_size: int = Field(default=500, ge=1, le=5000,
                           description="Rows per OData request ($top) when reading.")
    bank_receipts: str = Field(
        default="Document_ПоступлениеНаРасчетныйСчет",
        description="Entity set of bank receipts read as payments; empty: none.")
    cash_receipts: str = Field(
        default="Document_ПриходныйКассовыйОрдер",
        description="Entity set of cash receipts read as payments; empty: none.")
    customer_payment_kinds: list[str] = Field(
        default_factory=lambda: ["ОплатаПокупателя"], min_length=1,
        description="Values of ВидОперации that are a customer's payment; refunds "
                    "(ВозвратОтПоставщика...) and other operations are not payments.")
    counterparties: str = Field(default="Catalog_Контрагенты",
                                description="Entity set of counterparties.")
    order_entity: str = Field(
        default="auto",
        description="Entity set of the customer order created per lead; 'auto' takes the "
                    "first published of " + ", ".join(ORDER_CANDIDATES) + ".")
    organization_key: str | None = Field(
        default=None, description="GUID of your organization (Организация_Key) set on new "
                                  "orders; most configurations need it to post them.")
    post_orders: bool = Field(default=False,
                              description="Post each new order (POST …/Post()).")
    reuse_counterparties: bool = Field(
        default=True, description="Reuse a counterparty found by the lead's INN, else by "
                                  "its phone, instead of creating one.")
    phone_kind_key: str | None = Field(
        default=None, description="GUID of the contact-information kind for phones "
                                  "(Вид_Key, e.g. ТелефонКонтрагента) on new counterparties.")
    email_kind_key: str | None = Field(
        default=None, description="GUID of the contact-information kind for emails "
                                  "(Вид_Key, e.g. EmailКонтрагента) on new counterparties.")

    @field_validator("base_url")
    @classmethod
    def _odata_root(cls, value: str) -> str:
        if not value.rstrip("/").endswith("/odata/standard.odata"):
            raise ValueError("must be the infobase's OData root, ending in /odata/standard.odata")
        return value

    @field_validator("organization_key", "phone_kind_key", "email_kind_key")
    @classmethod
    def _guid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError("must be a GUID such as 3f2a8a8e-0000-11e9-8000-001dd8b72a55") from None
