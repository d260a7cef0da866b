"""``FakeGraph``: a strict Facebook Graph API serving Lead Ads leads, on loopback.

``GET /{version}/{leadgen_id}?access_token=...&fields=...`` answers as the real API does
(https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving):
``{"id", "created_time", "field_data": [{"name", "values": [...]}], ...}`` with only the
requested fields, and errors in Graph's shape
(https://developers.facebook.com/docs/graph-api/guides/error-handling)::

    {"error": {"message": "...", "type": "OAuthException", "code": 190, "fbtrace_id": "..."}}

What it enforces: the API version in the path; an access token (``104`` without one,
``190`` for a wrong one, both HTTP 400 with ``WWW-Authenticate``); ``appsecret_proof``
when constructed with ``app_secret`` (``100``, "Invalid appsecret_proof"); known fields
only (``100`` "Tried accessing nonexisting field"); an unknown lead id is ``100`` with
subcode ``33``. Injected ``500`` faults answer Graph's transient error (``code 2``,
``is_transient``) and ``429`` faults its rate-limit error (``code 4``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from hub.testing.fakeserver import FakeServer, RecordedRequest, Response

LEAD_FIELDS = (
    "id", "created_time", "field_data", "ad_id", "ad_name", "adset_id", "adset_name",
    "campaign_id", "campaign_name", "form_id", "is_organic", "platform", "partner_name",
    "custom_disclaimer_responses", "home_listing", "post", "retailer_item_id", "vehicle",
)
DEFAULT_FIELDS = ("created_time", "id", "field_data")


def graph_error(message: str, code: int, *, kind: str = "OAuthException", status: int = 400,
                subcode: int | None = None, transient: bool = False) -> Response:
    """An error answer in Graph's shape."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    error["fbtrace_id"] = "A" + secrets.token_hex(10)
    headers = {}
    if code in (104, 190):
        headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{message}"'
    return Response(status, {"error": error}, "application/json; charset=UTF-8", headers)


class FakeGraph(FakeServer):
    """Leads by id; ``base_url_versioned`` is what ``facebook_leadads`` takes as ``base_url``."""

    def __init__(self, *, access_token: str = "page-token", app_secret: str | None = None,
                 version: str = "v24.0") -> None:
        super().__init__()
        self.access_token = access_token
        self.app_secret = app_secret
        self.version = version
        self.leads: dict[str, dict[str, Any]] = {}
        self.add_route("GET", f"/{version}/{{object_id}}", self._get_object)

    @property
    def base_url_versioned(self) -> str:
        return f"{self.base_url}/{self.version}"

    def add_lead(self, leadgen_id: str, answers: dict[str, str | list[str]], *,
                 created_time: str = "2026-11-23T18:30:00+0000", **extra: Any) -> dict[str, Any]:
        """Store a lead whose ``field_data`` holds ``answers`` (question key → value(s))."""
        lead = {
            "id": leadgen_id,
            "created_time": created_time,
            "field_data": [
                {"name": name, "values": value if isinstance(value, list) else [value]}
                for name, value in answers.items()
            ],
            **extra,
        }
        with self.lock:
            self.leads[leadgen_id] = lead
        return lead

    def _get_object(self, request: RecordedRequest, params: dict[str, str]) -> Response:
        token = request.q("access_token")
        if not token:
            return graph_error("An access token is required to request this resource.", 104)
        if not hmac.compare_digest(token.encode(), self.access_token.encode()):
            return graph_error("Invalid OAuth access token - Cannot parse access token", 190)
        if self.app_secret is not None:
            proof = hmac.new(self.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest((request.q("appsecret_proof") or "").encode(), proof.encode()):
                return graph_error("Invalid appsecret_proof provided in the API argument", 100,
                                   kind="GraphMethodException")
        object_id = params["object_id"]
        lead = self.leads.get(object_id)
        if lead is None:
            return graph_error(
                f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation. Please "
                "read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
                100, kind="GraphMethodException", subcode=33,
            )
        wanted = [f.strip() for f in (request.q("fields") or "").split(",") if f.strip()]
        for name in wanted:
            if name not in LEAD_FIELDS:
                return graph_error(f"(#100) Tried accessing nonexisting field ({name}) on node type "
                                   "(LeadgenFormResponse)", 100)
        keys = wanted or list(DEFAULT_FIELDS)
        body = {key: lead[key] for key in keys if key in lead}
        body["id"] = lead["id"]
        return Response.json(body, content_type="application/json; charset=UTF-8")

    def fault_response(self, kind: str) -> Response:
        if kind == "429":
            return graph_error("(#4) Application request limit reached", 4, transient=True, status=403)
        if kind.startswith("5"):
            return graph_error("An unexpected error has occurred. Please retry your request later.",
                               2, transient=True, status=int(kind))
        return super().fault_response(kind)
