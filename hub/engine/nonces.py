"""The replay cache: a signature that covers only a nonce is good for one request.

Mailgun signs ``timestamp + token``, not the message (``plugins/mailgun.py``): a captured
request's signature block, pasted onto another sender and text, verifies for as long as
the timestamp is within the tolerance. Mailgun's own guidance ("Securing Webhooks",
https://documentation.mailgun.com/docs/mailgun/user-manual/webhooks/securing-webhooks):
"cache the token value locally and not honor any subsequent request with the same
token. This will prevent replay attacks."

Mailgun also retries a delivery it saw fail with the SAME signature block, and the
contract says a provider's retry yields the same lead, not an error (an error would be
retried for 8 hours). So the cache keeps nonce → digest of the content the signature
does not cover (``Nonce.content``): the same nonce with the same content is that retry
and goes on to the usual event-id/body dedup; with other content it is a replay, refused
with 401 before anything is stored. One ``SET NX EX`` per request in Redis (shared by
every api process), kept as long as the signature stays acceptable (``Nonce.ttl_s``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

import redis

from hub.connectors import InboundRequest, Nonce, Source

PREFIX = "leadhub:nonce:"


def nonce_key(source: str, value: str) -> str:
    """The Redis key of a nonce: hashed, so a key's length never depends on the provider."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{PREFIX}{source}:{digest}"


def remember(client: redis.Redis[bytes], source: str, nonce: Nonce) -> bool:
    """True when ``nonce`` is new, or was first seen with the same content (a retry);
    False for a replay. Raises ``redis.RedisError`` when Redis cannot say."""
    key = nonce_key(source, nonce.value)
    content = nonce.content.encode()
    ttl = max(1, math.ceil(nonce.ttl_s))
    for _ in range(3):  # the first holder's key may expire between SET and GET
        if client.set(key, content, nx=True, ex=ttl):
            return True
        seen = client.get(key)
        if seen is not None:
            return seen == content
    return False


async def is_fresh(client: redis.Redis[bytes], src: Source[Any], request: InboundRequest) -> bool:
    """``remember`` for a verified request of ``src``; True at once (no Redis call, no
    thread hop) when the source's signature covers the body (``Source.nonce`` is None)."""
    nonce = src.nonce(request)
    if nonce is None:
        return True
    return await asyncio.to_thread(remember, client, request.source, nonce)
