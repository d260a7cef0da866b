"""The ``amocrm`` plugin: amoCRM / Kommo deals (``client`` speaks HTTP, ``mapping`` shapes)."""

from plugins.amocrm.plugin import AmoCRMConfig, AmoCRMDestination

__all__ = ["AmoCRMConfig", "AmoCRMDestination"]
