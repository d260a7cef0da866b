"""The MoySklad plugin's test double: ``FakeMoySklad``, a strict JSON API 1.2 on loopback,
built on ``hub.testing.FakeServer`` (``fake`` the HTTP side, ``store`` the account's data)."""

from plugins.moysklad.testing.fake import FakeMoySklad

__all__ = ["FakeMoySklad"]
