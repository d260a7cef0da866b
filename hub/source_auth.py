"""Token authentication of sources, as the contract defines it for providers that do not
sign their webhooks (``webform``, ``tilda``, the e-mail relays, call-tracking services).

Providers without a signature of their own (Tilda's webhook, SendGrid Inbound Parse,
Postmark, a raw-message relay) are locked with a secret the admin puts into the URL
they give the provider: ``?token=...``, the ``X-Leadhub-Token`` header, or, where the
provider supports credentials in the URL (Postmark), HTTP Basic auth whose password is
the token. The hub keeps ``token`` out of the stored query and headers.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from pydantic import Field, SecretStr, field_validator

from hub.connectors import InboundRequest, SourceConfig
from hub.errors import AuthError

TOKEN_PARAM = "token"
TOKEN_HEADER = "x-leadhub-token"


class TokenSourceConfig(SourceConfig):
    """A source locked by an optional shared token."""

    token: SecretStr | None = Field(
        default=None,
        description="If set, every request must carry it as ?token= or header X-Leadhub-Token "
        "(Postmark: also as the password of Basic auth in the URL).",
    )

    @field_validator("token")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else not_empty(value, "remove the key for an open source")


def not_empty(value: SecretStr, hint: str = "") -> SecretStr:
    """Refuse an empty secret: ``"${TOKEN}"`` with the variable unset expands to ``""``, and
    starting would silently open a door the admin meant to lock. Every source's secret
    settings go through this one check."""
    if not value.get_secret_value().strip():
        raise ValueError("is empty (an unset ${VAR}?)" + (f"; {hint}" if hint else ""))
    return value


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison that also takes non-ASCII strings."""
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
    expected = token.get_secret_value()
    candidates = [request.headers.get(TOKEN_HEADER), request.query_dict().get(TOKEN_PARAM), body_token]
    if basic:
        candidates.append(basic_password(request))
    if not any(given and same_secret(given, expected) for given in candidates):
        raise AuthError("missing or wrong token")
