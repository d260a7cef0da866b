"""The LeadHub connector SDK: the one module a plugin imports (``from hub.sdk import ...``).

Everything a source or destination needs is here: ``hookimpl``; the connector base
classes and config bases; the request, event and delivery types; the lead models; the
``hub.errors`` hierarchy; token, HMAC and Standard Webhooks auth; the normalization and
body-decoding helpers. Topic helpers whose names would clash live in the public
submodules listed in ``__all__`` (``hub.sdk.telephony``, ``hub.sdk.messengers``,
``hub.sdk.meta``, ``hub.sdk.auth``, ``hub.sdk.sniffing``); ``hub.testing`` is the second
public module, for tests only.

Stability promise: a name in ``__all__`` (of this module and of those submodules) keeps
its meaning, and its signature keeps accepting what it accepted, until the next major
version; new names and new optional arguments may come in any release. Anything else
under ``hub`` is the core's own and changes without notice; ``tests/unit/test_sdk_surface.py``
fails when a first-party plugin imports it.
"""

from __future__ import annotations

from hub import hookimpl
from hub.bodies import MAX_DEPTH, clean_items, clean_text, clean_value, loads_json
from hub.connectors import (
    EMPTY_SECRET,
    Accepted,
    CallInfo,
    CallSourceConfig,
    Connector,
    ConnectorConfig,
    ConnectorContext,
    DeliveryItem,
    DeliveryOutcome,
    Destination,
    DestinationConfig,
    HookResponse,
    InboundRequest,
    LeadDraft,
    Limits,
    Nonce,
    ParsedEvent,
    PolledMessage,
    PollError,
    PollingSource,
    PollingSourceConfig,
    Source,
    SourceConfig,
    TimeZoneName,
    TrackingUtm,
)
from hub.errors import (
    AuthError,
    ConfigError,
    DeliveryError,
    DestinationPaused,
    LeadHubError,
    ParseError,
    PermanentError,
    RateLimited,
    RetryableError,
)
from hub.models import (
    CLICK_ID_KEYS,
    UTM_KEYS,
    Call,
    Channel,
    ClickIds,
    Contact,
    Delivery,
    Lead,
    Messenger,
    MessengerKind,
    Utm,
)
from hub.normalize import (
    clean_line,
    clean_multiline,
    mask_email,
    mask_phone,
    mask_text,
    normalize_lead,
)
from hub.normalize.emails import find_emails, normalize_email
from hub.normalize.fields import CANONICAL_FIELDS, canonical_name, draft_from_fields, field_key
from hub.normalize.mail import (
    MailParts,
    clean_message_id,
    draft_from_message,
    draft_from_parts,
    event_from_parts,
    parse_message,
)
from hub.normalize.phones import find_phones, normalize_phone
from hub.normalize.utm import classify as classify_mark
from hub.sdk import auth, messengers, meta, sniffing, telephony
from hub.sdk.auth import (
    TOKEN_HEADER,
    TOKEN_PARAM,
    WEBHOOK_ID_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER,
    TokenSourceConfig,
    basic_password,
    check_token,
    expected_secret,
    holds_key,
    same_secret,
    sign_standard_webhook,
    verify_standard_webhook,
)
from hub.sdk.sniffing import (
    FORM_TYPES,
    BodyKind,
    body_kind,
    fields_of,
    json_object,
    json_pairs,
    looks_like_form,
    looks_like_json,
    scalar_texts,
)
from hub.sdk.telephony import TrackingConfig

__all__ = [
    "CANONICAL_FIELDS", "CLICK_ID_KEYS", "EMPTY_SECRET", "FORM_TYPES", "MAX_DEPTH",
    "TOKEN_HEADER", "TOKEN_PARAM", "UTM_KEYS", "WEBHOOK_ID_HEADER", "WEBHOOK_SIGNATURE_HEADER",
    "WEBHOOK_TIMESTAMP_HEADER", "Accepted", "AuthError", "BodyKind", "Call", "CallInfo",
    "CallSourceConfig", "Channel", "ClickIds", "ConfigError", "Connector", "ConnectorConfig",
    "ConnectorContext", "Contact", "Delivery", "DeliveryError", "DeliveryItem", "DeliveryOutcome",
    "Destination", "DestinationConfig", "DestinationPaused", "HookResponse", "InboundRequest",
    "Lead", "LeadDraft", "LeadHubError", "Limits", "MailParts", "Messenger", "MessengerKind",
    "Nonce", "ParseError", "ParsedEvent", "PermanentError", "PollError", "PolledMessage",
    "PollingSource", "PollingSourceConfig", "RateLimited", "RetryableError", "Source",
    "SourceConfig", "TimeZoneName", "TokenSourceConfig", "TrackingConfig", "TrackingUtm", "Utm", "auth",
    "basic_password", "body_kind", "canonical_name", "check_token", "classify_mark",
    "clean_items", "clean_line", "clean_message_id", "clean_multiline", "clean_text",
    "clean_value", "draft_from_fields", "draft_from_message", "draft_from_parts",
    "event_from_parts", "expected_secret", "field_key", "fields_of", "find_emails",
    "find_phones", "holds_key", "hookimpl", "json_object", "json_pairs", "loads_json",
    "looks_like_form", "looks_like_json", "mask_email",
    "mask_phone", "mask_text", "messengers", "meta", "normalize_email", "normalize_lead",
    "normalize_phone", "parse_message", "same_secret", "scalar_texts", "sign_standard_webhook", "sniffing",
    "telephony", "verify_standard_webhook",
]

# --- re-exports added by other modules below ---

# --- hub.sdk.http: the HTTP client for connectors (ConnectorClient, status → hub.errors,
# Retry-After, limiter slots, secret masking, outbound auth helpers) ---
from hub.sdk import http
from hub.sdk.http import (
    ANY_STATUS,
    ConnectorClient,
    HttpConnectorConfig,
    HttpSettings,
    SecretAuth,
    api_key_header,
    api_key_query,
    basic_auth,
    bearer_token,
    error_for,
    parse_retry_after,
    url_secrets,
)

__all__ += [
    "ANY_STATUS", "ConnectorClient", "HttpConnectorConfig", "HttpSettings", "SecretAuth",
    "api_key_header", "api_key_query", "basic_auth", "bearer_token", "error_for", "http",
    "parse_retry_after", "url_secrets",
]

# --- capabilities and readers (engineer D: hub/capabilities.py, hub/sdk/readers.py) ---
from hub.capabilities import Capability  # noqa: E402
from hub.connectors import ConnectorKind  # noqa: E402
from hub.sdk import readers  # noqa: E402
from hub.sdk.readers import AccountingReader, CrmReader, Payment, WonDeal  # noqa: E402

__all__ += [
    "AccountingReader", "Capability", "ConnectorKind", "CrmReader", "Payment", "WonDeal", "readers",
]
