"""The amoCRM plugin's test double: ``FakeAmoCRM``, a strict amoCRM API v4 on loopback.

It lives beside the plugin it fakes (a provider's fake belongs with its connector) and is
built on the public ``hub.testing.FakeServer`` base. ``fake`` holds the HTTP side,
``account`` the in-memory account and its validation, ``writes`` the write endpoints.
"""

from plugins.amocrm.testing.account import WON_STATUS_ID
from plugins.amocrm.testing.fake import FakeAmoCRM

__all__ = ["WON_STATUS_ID", "FakeAmoCRM"]
