"""``facebook_leadads``: Facebook / Instagram Lead Ads through the Page ``leadgen`` webhook.

* Verification and signature as every Meta webhook: the ``hub.challenge`` GET (403 on a
  wrong ``verify_token``) and ``X-Hub-Signature-256`` over the raw body with ``app_secret``.
* The webhook only names the lead: ``entry[].changes[]`` with ``field = "leadgen"`` and
  ``value = {leadgen_id, form_id, page_id, ad_id, adgroup_id, created_time}``. Each change is
  one event (event id = ``leadgen_id``) and a draft with ``needs_enrichment``: the worker then
  calls ``enrich``, which reads ``GET {base_url}/{leadgen_id}?fields=...`` with the Page
  access token (and ``appsecret_proof``) and fills in the answers (``field_data``):
  ``full_name``/``first_name``/``last_name``, ``phone_number``, ``email`` (and the
  ``work_`` variants), ``company_name``; other answers are kept in ``fields`` under their
  question keys. ``campaign_name``/``ad_name`` (when ``graph_fields`` asks for them, which
  needs ``ads_read``) become ``utm_campaign``/``utm_content``; ``utm_source`` is
  ``facebook`` or ``instagram`` (the lead's ``platform``).
* Graph errors: network failures, 5xx, transient and rate-limit codes, and token or
  permission errors (an admin can fix those without losing the lead) are retried; a lead
  the API says does not exist (code 100, subcode 33) or any other 4xx goes to quarantine.

Sources: https://developers.facebook.com/docs/graph-api/webhooks/getting-started/webhooks-for-leadgen ,
https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving ,
https://developers.facebook.com/docs/graph-api/guides/error-handling
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import Field, SecretStr

from hub.sdk import (
    Capability,
    Connector,
    ConnectorClient,
    DeliveryError,
    HookResponse,
    HttpSettings,
    InboundRequest,
    Lead,
    LeadDraft,
    ParsedEvent,
    ParseError,
    PermanentError,
    RateLimited,
    RetryableError,
    Source,
    SourceConfig,
    draft_from_fields,
    hookimpl,
    meta,
    normalize_lead,
)
from hub.sdk.messengers import text

DEFAULT_BASE_URL = "https://graph.facebook.com/v24.0"
DEFAULT_FIELDS = "id,created_time,field_data"
WEBHOOK_KEYS = ("leadgen_id", "form_id", "page_id", "ad_id", "adgroup_id", "created_time")
#: Lead Ads' standard question keys that the common alias table does not know.
FIELD_MAP = {"work_email": "email", "work_phone_number": "phone"}
#: Graph error codes worth retrying: temporary failures and rate limits.
TRANSIENT_CODES = {1, 2}
RATE_LIMIT_CODES = {4, 17, 32, 613, *range(80000, 80015)}
#: Token and permission errors: retried, since an admin can fix them without losing the lead.
AUTH_CODES = {10, 102, 104, 190, *range(200, 300)}
PLATFORMS = {"fb": "facebook", "facebook": "facebook", "ig": "instagram", "instagram": "instagram"}


class FacebookLeadAdsConfig(HttpSettings, SourceConfig):
    """Settings of a ``[sources.NAME]`` table with ``plugin = "facebook_leadads"``."""

    verify_token: SecretStr = Field(
        description="Any string you choose and enter as the Verify token when subscribing the "
        "app to the Page's leadgen field (App dashboard > Webhooks); Meta's GET must repeat it.",
    )
    app_secret: SecretStr = Field(
        description="The Meta app's App Secret (App settings > Basic): the key of "
        "X-Hub-Signature-256, also used for appsecret_proof on Graph API calls.",
    )
    access_token: SecretStr = Field(
        description="A long-lived Page access token with leads_retrieval (and pages_manage_ads, "
        "pages_read_engagement) for reading the lead's answers.",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        description="Graph API base URL including the version.",
    )
    timeout_s: float = Field(default=10, gt=0, description="HTTP timeout of Graph API calls, seconds.")
    graph_fields: str = Field(
        default=DEFAULT_FIELDS,
        description="Fields requested for a lead. Add platform (instagram or facebook as "
        "utm_source) and ad_name,campaign_name (UTM content and campaign; these need ads_read "
        "or ads_management) when the token allows.",
    )


class FacebookLeadAdsSource(Source[FacebookLeadAdsConfig]):
    """Lead Ads forms of Facebook Pages (and their Instagram ads)."""

    Config = FacebookLeadAdsConfig
    description = "Facebook Lead Ads: leadgen webhook, answers fetched from the Graph API."
    capabilities = frozenset({Capability.ENRICHMENT})  # the webhook names the lead only
    retries_non_2xx = True
    kept_headers = ("x-hub-signature-256",)
    methods = ("GET", "POST")
    _http: ConnectorClient | None = None

    def handshake(self, request: InboundRequest) -> HookResponse | None:
        return meta.handshake(request, self.config.verify_token)

    def verify(self, request: InboundRequest) -> None:
        meta.verify_signature(request, self.config.app_secret)

    def parse(self, request: InboundRequest) -> list[ParsedEvent]:
        events: list[ParsedEvent] = []
        for change in meta.changes(request, "page"):
            field, value = change.get("field"), change["value"]
            if field != "leadgen":
                events.append(ParsedEvent(reason=f"facebook page {field} change"))
                continue
            leadgen_id = text(value.get("leadgen_id"))
            if leadgen_id is None or not leadgen_id.isdigit():
                raise ParseError("a leadgen change without a numeric leadgen_id")
            draft = LeadDraft(channel="form", needs_enrichment=True)
            for key in WEBHOOK_KEYS:
                if (found := text(value.get(key))) is not None:
                    draft.fields[key] = found
            events.append(ParsedEvent(leadgen_id, lead=draft))
        return events

    def enrich(self, lead: Lead) -> Lead:
        leadgen_id = text(lead.fields.get("leadgen_id"))
        if leadgen_id is None:
            raise PermanentError("the lead has no leadgen_id to fetch")
        data = self._fetch(leadgen_id)
        draft = _draft_from_graph(data)
        for key, value in lead.fields.items():
            draft.fields.setdefault(key, value)
        fresh = normalize_lead(draft, lead_id=lead.id, source=lead.source,
                               received_at=lead.received_at, default_region=self.context.default_region)
        contact = fresh.contact.model_copy(update={
            "name": fresh.contact.name or lead.contact.name,
            "phones": _union(lead.contact.phones, fresh.contact.phones),
            "emails": _union(lead.contact.emails, fresh.contact.emails),
            "messengers": lead.contact.messengers + fresh.contact.messengers,
        })
        return lead.model_copy(update={
            "contact": contact, "company": fresh.company or lead.company,
            "message": fresh.message or lead.message, "product": fresh.product or lead.product,
            "utm": fresh.utm, "click_ids": fresh.click_ids, "fields": fresh.fields,
        })

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> ConnectorClient:
        if self._http is None:
            # base_url and timeout_s from the config; the token travels in the query, and
            # the client masks it (and appsecret_proof) in every error and log line
            self._http = ConnectorClient(self.config, self.context, errors=_graph_error,
                                         headers={"User-Agent": "LeadHub (facebook_leadads)"})
        return self._http

    def _fetch(self, leadgen_id: str) -> dict[str, Any]:
        """The lead's JSON; a failure raises the ``hub.errors`` exception ``_graph_error``
        (for a Graph error body) or the standard mapping says."""
        token = self.config.access_token.get_secret_value()
        proof = hmac.new(self.config.app_secret.get_secret_value().encode(), token.encode(),
                         hashlib.sha256).hexdigest()
        params = {"access_token": token, "appsecret_proof": proof, "fields": self.config.graph_fields}
        response = self._client().get(f"/{leadgen_id}", params=params)
        data = _json_or_none(response)
        if not isinstance(data, dict) or not isinstance(data.get("field_data"), list):
            raise PermanentError(f"Graph API GET /{leadgen_id}: {response.status_code} without "
                                 "field_data (is field_data in graph_fields?)")
        return data


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(FacebookLeadAdsSource)


def _graph_error(response: httpx.Response) -> DeliveryError | None:
    """What a Graph error body (``{"error": {"code", "error_subcode", ...}}``, whatever the
    status) means; None for any other answer, which the standard mapping reads."""
    data = _json_or_none(response)
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    code, subcode = error.get("code"), error.get("error_subcode")
    where = f"Graph API GET {response.request.url.path}: {response.status_code}"
    message = f"{where}, code {code}/{subcode}: {str(error.get('message'))[:300]}"
    if code in RATE_LIMIT_CODES:
        return RateLimited(message)
    if code in TRANSIENT_CODES or error.get("is_transient") is True or response.status_code >= 500:
        return RetryableError(message)
    if code in AUTH_CODES:
        return RetryableError(f"{message} (check access_token and its permissions)")
    return PermanentError(message)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _draft_from_graph(data: dict[str, Any]) -> LeadDraft:
    items: list[tuple[str, str]] = []
    for answer in data["field_data"]:
        if not isinstance(answer, dict) or not isinstance(answer.get("name"), str):
            continue
        values = answer.get("values")
        for value in values if isinstance(values, list) else [values]:
            if (found := text(value)) is not None:
                items.append((answer["name"], found))
    draft = draft_from_fields(items, channel="form", field_map=FIELD_MAP)
    for key in ("created_time", "ad_id", "ad_name", "adset_id", "adset_name", "campaign_id",
                "form_id", "is_organic", "partner_name"):
        if key in data and data[key] is not None:
            draft.fields.setdefault(key, data[key])
    platform = text(data.get("platform"))
    draft.utm["source"] = PLATFORMS.get((platform or "").lower(), platform or "facebook")
    if campaign := text(data.get("campaign_name")):
        draft.utm["campaign"] = campaign
    if ad_name := text(data.get("ad_name")):
        draft.utm["content"] = ad_name
    return draft


def _union(first: list[str], second: list[str]) -> list[str]:
    return first + [item for item in second if item not in first]
