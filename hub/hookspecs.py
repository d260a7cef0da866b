"""Every LeadHub hook, in one place.

Hooks discover and notify; they never do delivery work themselves. The work happens
in the connector classes a plugin registers. The hub calls a notification hook plugin
by plugin (``hub.plugins.notify``), so one raising implementation is logged and the
others still run. Hooks are called with keyword arguments, so an
implementation may accept fewer arguments than the spec lists.
Each hook is documented in ``docs/plugin_hooks.md``; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub import hookspec

if TYPE_CHECKING:
    from hub.connectors import Connector
    from hub.models import Lead


@hookspec
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    """Register each connector class this plugin provides by calling ``register(cls)``."""


@hookspec
def leadhub_lead_received(lead: Lead, source: str) -> None:
    """Notify that a lead was accepted and committed (called in the worker, after routing)."""


@hookspec
def leadhub_delivery_finished(
    lead: Lead, destination: str, status: str, external_id: str | None, error: str | None
) -> None:
    """Notify that a delivery reached ``delivered`` or ``dead``."""


@hookspec
def leadhub_startup(settings: dict[str, Any]) -> None:
    """Notify that a hub process (api, worker or scheduler) has started, with the ``[hub]`` settings."""
