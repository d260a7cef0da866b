"""Standard Webhooks (https://www.standardwebhooks.com) signing and verification.

One place for both sides: the ``webform`` source verifies what a backend signed, the
``webhook`` destination signs what LeadHub sends. The ``standardwebhooks`` package does
the cryptography and the 5-minute timestamp tolerance; this wrapper turns every way it
can fail (including malformed headers it does not expect) into ``AuthError``.

Secrets: the spec's form is ``whsec_`` + base64 of the key bytes; the prefix may be left
out. A secret that is not base64 (an admin's passphrase) is used as its UTF-8 bytes, so
any non-empty string works, the same on both sides.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import SecretStr
from standardwebhooks import Webhook, WebhookVerificationError

from hub.errors import AuthError

SECRET_PREFIX = "whsec_"
HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a secret stands for; ``ValueError`` for an empty one."""
    text = secret.strip().removeprefix(SECRET_PREFIX)
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
            secret_bytes(value.get_secret_value())
        except ValueError:
            raise ValueError("holds no key after whsec_ (an unset ${VAR}?)") from None
    return value


def sign(secret: str, msg_id: str, timestamp: datetime | int, body: bytes) -> dict[str, str]:
    """The three headers that authenticate ``body``: ``webhook-id``, ``-timestamp``, ``-signature``.

    ``timestamp`` is a Unix time or a datetime (naive means UTC). ``body`` must be the
    exact bytes sent, UTF-8 (the spec signs text).
    """
    when = _as_utc(timestamp)
    signature = Webhook(secret_bytes(secret)).sign(msg_id, when, body.decode("utf-8"))
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(int(when.timestamp())),
        HEADER_SIGNATURE: signature,
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise ``AuthError`` unless ``body`` carries a valid signature made within 5 minutes."""
    try:
        text = body.decode("utf-8")
        Webhook(secret_bytes(secret)).verify(
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
