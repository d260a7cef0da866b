"""Routes from ``plugins.toml``: ordered, first match wins, glob patterns on lead fields.

Match keys name a lead attribute: ``source``, ``channel``, ``product``, ``utm.<tag>``,
``click_ids.<id>``, ``fields.<name>`` (a bare unknown key also looks in ``fields``).
A list means any of; every key must match. A missing value matches nothing, not even ``*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from hub.config import AssignRule, Route
from hub.models import Lead


@dataclass(frozen=True)
class RouteDecision:
    route: str | None  # None: no route matched (default destinations, or unrouted)
    destinations: list[str]
    product: str | None
    assign: AssignRule | None


def lead_value(lead: Lead, key: str) -> str | None:
    """The lead's value for a match key, as text; None when it has none."""
    head, _, rest = key.partition(".")
    value: Any
    if head in ("utm", "click_ids", "contact") and rest:
        value = getattr(getattr(lead, head), rest, None)
    elif head == "fields" and rest:
        value = lead.fields.get(rest)
    elif key in ("source", "channel", "product", "page_url", "referrer", "company", "message"):
        value = getattr(lead, key)
    else:
        value = lead.fields.get(key)
    if value is None or value == "":
        return None
    return str(value)


def matches(lead: Lead, match: dict[str, str | list[str]]) -> bool:
    for key, patterns in match.items():
        value = lead_value(lead, key)
        if value is None:
            return False
        options = [patterns] if isinstance(patterns, str) else patterns
        low = value.lower()
        if not any(fnmatchcase(low, p.lower()) for p in options):
            return False
    return True


def choose_route(lead: Lead, routes: list[Route], default_destinations: list[str]) -> RouteDecision:
    for route in routes:
        if matches(lead, route.match):
            return RouteDecision(route.name, list(route.destinations), route.product, route.assign)
    return RouteDecision(None, list(default_destinations), None, None)


def weighted_sequence(weights: dict[str, int]) -> list[str]:
    """One cycle of smooth weighted round robin (nginx's): {"a": 2, "b": 1} -> a, b, a.

    Spreading a heavy manager's turns through the cycle keeps short runs fair too.
    """
    items = [(m, w) for m, w in weights.items() if w > 0]
    total = sum(w for _, w in items)
    current = dict.fromkeys((m for m, _ in items), 0)
    out = []
    for _ in range(total):
        for m, w in items:
            current[m] += w
        best = max(items, key=lambda mw: current[mw[0]])[0]
        current[best] -= total
        out.append(best)
    return out
