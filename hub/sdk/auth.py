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

from pydantic import Field, SecretStr

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
