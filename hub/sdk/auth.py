"""How sources authenticate requests, and how destinations sign what they send.

**Tokens**, as the contract defines them for providers that do not sign their webhooks
(``webform``, ``tilda``, the e-mail relays, call-tracking services): Tilda's webhook,
SendGrid Inbound Parse, Postmark or a raw-message relay is locked with a secret the admin
puts into the URL they give the provider: ``?token=...``, the ``X-Leadhub-Token`` header,
or, where the provider supports credentials in the URL (Postmark), HTTP Basic auth whose
password is the token. The hub keeps ``token`` out of the stored query and headers.

**Secrets** are compared in constant time and never match when blank (``same_secret``,
``expected_secret``): an unset ``${VAR}`` must lock a door, not open it.

**Standard Webhooks** (https://www.standardwebhooks.com), both sides in one place: the
``webform`` source verifies what a backend signed, the ``webhook`` destination signs what
LeadHub sends. The ``standardwebhooks`` package does the cryptography and the 5-minute
timestamp tolerance; this wrapper turns every way it can fail (including malformed
headers it does not expect) into ``AuthError``. The spec's secret is ``whsec_`` + base64
of the key bytes; the prefix may be left out. A secret that is not base64 (an admin's
passphrase) is used as its UTF-8 bytes, so any non-empty string works, the same on both
sides.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import Field, SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from hub.connectors import InboundRequest, SourceConfig
from hub.errors import AuthError

TOKEN_PARAM = "token"
TOKEN_HEADER = "x-leadhub-token"


class TokenSourceConfig(SourceConfig):
    """A source locked by an optional shared token."""

    token: SecretStr | None = Field(
        default=None,
        description="If set, every request must carry it as ?token= or header X-Leadhub-Token "
        "(Postmark: also as the password of Basic auth in the URL). Left out: an open "
        "source; set but empty (an unset ${VAR}): refused at load time.",
    )


def expected_secret(secret: SecretStr, what: str, *, status_code: int = 401) -> str:
    """The value of a configured secret, or ``AuthError`` when it is blank.

    ``ConnectorConfig`` already refuses an empty secret when the file is loaded; this is the
    second lock for a config built some other way (``model_construct``, a plugin's own
    defaults): a check against ``""`` would let an unsigned or empty-keyed request in.
    """
    value = secret.get_secret_value()
    if not value.strip():
        raise AuthError(f"{what} is not configured (empty): every request is refused",
                        status_code=status_code)
    return value


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII strings; never true against a
    blank ``expected`` (an empty secret must not match an empty or missing value)."""
    if not expected.strip():
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def basic_password(request: InboundRequest) -> str | None:
    """The password of an ``Authorization: Basic`` header, or None."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2]


def check_token(
    request: InboundRequest, token: SecretStr | None, *, basic: bool = False,
    body_token: str | None = None,
) -> None:
    """Raise ``AuthError`` unless the request carries ``token`` (nothing to check when None):
    as ``?token=``, header ``X-Leadhub-Token``, the password of Basic auth (``basic``), or a
    value the provider can only put in its body (``body_token``)."""
    if token is None:
        return
    expected = expected_secret(token, "token")
    candidates = [request.headers.get(TOKEN_HEADER), request.query_dict().get(TOKEN_PARAM), body_token]
    if basic:
        candidates.append(basic_password(request))
    if not any(given and same_secret(given, expected) for given in candidates):
        raise AuthError("missing or wrong token")


# ---------------------------------------------------------------- Standard Webhooks

WHSEC_PREFIX = "whsec_"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"


def standard_webhook_key(secret: str) -> bytes:
    """The HMAC key a Standard Webhooks secret stands for; ``ValueError`` for an empty one."""
    text = secret.strip().removeprefix(WHSEC_PREFIX)
    if not text:
        raise ValueError("a Standard Webhooks secret may not be empty")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    return key or text.encode("utf-8")


def holds_key(value: SecretStr | None) -> SecretStr | None:
    """A ``signing_secret`` validator: ``"whsec_${VAR}"`` with VAR unset passes the config
    base's empty check yet holds no key, and every signature made with it would be refused."""
    if value is not None:
        try:
            standard_webhook_key(value.get_secret_value())
        except ValueError:
            raise ValueError("holds no key after whsec_ (an unset ${VAR}?)") from None
    return value


def sign_standard_webhook(
    secret: str, msg_id: str, timestamp: datetime | int, body: bytes
) -> dict[str, str]:
    """The three headers that authenticate ``body``: ``webhook-id``, ``-timestamp``, ``-signature``.

    ``timestamp`` is a Unix time or a datetime (naive means UTC). ``body`` must be the
    exact bytes sent, UTF-8 (the spec signs text).
    """
    when = _as_utc(timestamp)
    signature = Webhook(standard_webhook_key(secret)).sign(msg_id, when, body.decode("utf-8"))
    return {
        WEBHOOK_ID_HEADER: msg_id,
        WEBHOOK_TIMESTAMP_HEADER: str(int(when.timestamp())),
        WEBHOOK_SIGNATURE_HEADER: signature,
    }


def verify_standard_webhook(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise ``AuthError`` unless ``body`` carries a valid signature made within 5 minutes."""
    try:
        text = body.decode("utf-8")
        Webhook(standard_webhook_key(secret)).verify(
            text, {k.lower(): v for k, v in headers.items()}, json_parse=False
        )
    except (WebhookVerificationError, ValueError) as exc:
        # The package raises its own error for a bad signature or a stale timestamp, and
        # ValueError (binascii.Error, UnicodeDecodeError) for malformed input; all mean 401.
        raise AuthError(f"invalid Standard Webhooks signature: {exc}") from None


def _as_utc(timestamp: datetime | int) -> datetime:
    # The package reads a datetime as UTC by replacing its tzinfo, so an aware time in
    # another zone would be signed wrong: convert it first.
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            return timestamp.replace(tzinfo=UTC)
        return timestamp.astimezone(UTC)
    return datetime.fromtimestamp(timestamp, tz=UTC)
