"""One error hierarchy: the engine, not the plugin, decides what a failure means.

A destination plugin raises ``RetryableError`` for a failure worth retrying,
``PermanentError`` for one that will never succeed (the delivery goes to ``dead``),
and ``RateLimited`` when the API asked us to wait. ``uncertain=True`` says the
request may have reached the other side (timeout after send, 5xx), so before the
next attempt the engine asks the plugin to look the lead up instead of creating it.
"""

from __future__ import annotations


class LeadHubError(Exception):
    """Base of every error LeadHub raises on purpose."""


class ConfigError(LeadHubError):
    """``plugins.toml`` is wrong; ``problems`` lists each one with section and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class AuthError(LeadHubError):
    """A webhook failed its provider's authentication (answered 401, or 403 for Meta's GET)."""

    def __init__(self, message: str = "authentication failed", status_code: int = 401) -> None:
        super().__init__(message)
        self.status_code = status_code


class ParseError(LeadHubError):
    """An authentic webhook that cannot be turned into a lead; it goes to quarantine."""


class DeliveryError(LeadHubError):
    """A delivery attempt failed."""

    def __init__(self, message: str, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.uncertain = uncertain


class RetryableError(DeliveryError):
    """Worth retrying with backoff (network error, 5xx, lock, timeout)."""


class RateLimited(RetryableError):
    """The API said it is over its limit; ``retry_after`` seconds is what it asked for."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, uncertain=False)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Will not succeed by retrying (validation error, bad credentials); goes to ``dead``."""


class DestinationPaused(RetryableError):
    """The destination refuses every request for a while, whatever the request (amoCRM's
    403 "account blocked for exceeding the request rate"). The engine stops sending to it
    for ``pause_s`` seconds (the circuit breaker, shared by all workers) instead of
    retrying at the normal pace, which would only prolong the block."""

    def __init__(self, message: str, pause_s: float = 300.0) -> None:
        super().__init__(message, uncertain=False)
        self.pause_s = pause_s
