"""LeadHub core: webhooks in, normalized leads out, exactly once in effect.

A plugin author needs only ``hub.sdk`` (and ``hub.testing`` for tests).
"""

import pluggy

__version__ = "0.1.0"

PROJECT = "leadhub"
hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)

__all__ = ["PROJECT", "__version__", "hookimpl", "hookspec"]
