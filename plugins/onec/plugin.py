"""Registration of the ``onec`` plugin: the destination and the accounting reader built
from the same ``[destinations.NAME]`` table (``hub/sdk/readers.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hub.sdk import Connector, hookimpl
from plugins.onec.destination import OneCDestination
from plugins.onec.reader import OneCPayments


@hookimpl
def leadhub_register_connectors(register: Callable[[type[Connector[Any]]], None]) -> None:
    register(OneCDestination)
    register(OneCPayments)
