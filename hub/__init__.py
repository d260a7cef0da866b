"""LeadHub core: webhooks in, normalized leads out, exactly once in effect.

A plugin author needs only ``hub.hookimpl``, ``hub.connectors``, ``hub.models``,
``hub.errors`` and ``hub.testing``.
"""

import pluggy

__version__ = "0.1.0"

PROJECT = "leadhub"
hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "__version__", "hookimpl", "hookspec"]
