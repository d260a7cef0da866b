"""Small helpers the messenger sources share (Telegram, WhatsApp, VK, Facebook Lead Ads)."""

from __future__ import annotations

from typing import Any

__all__ = ["as_dict", "international", "text"]


def text(value: Any) -> str | None:
    """A scalar as text (ids arrive as strings or numbers); None for anything else or empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int | float):
        result = str(value).strip()
        return result or None
    return None


def international(number: str) -> str:
    """Digits the provider states in international form without ``+`` (``79161234567``)
    get their ``+``, so the hub's default region never misreads a foreign number."""
    digits = number.strip()
    return "+" + digits if digits.isdigit() else digits


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (odd shapes read as absent)."""
    return value if isinstance(value, dict) else {}
