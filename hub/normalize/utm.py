"""UTM tags and click ids: where the lead came from, found wherever the provider put it.

The contract's order, applied per key (a tag missing from the fields may still come
from the URL): the payload's fields, else the page URL's query, else the referrer's
query, else the cookies the provider forwards. Values a plugin set explicitly on the
draft (``LeadDraft.utm``, e.g. from a call-tracking number) come before all of them.
Empty values count as absent everywhere, so ``utm_term=`` never hides a real term.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from hub.models import CLICK_ID_KEYS, UTM_KEYS

#: Field and query names that carry a known click id under another name.
CLICK_ID_ALIASES = {"roistat_visit": "roistat", "openstat": "_openstat"}


@dataclass
class Marks:
    """What was found: UTM tags keyed ``source``..``content``, click ids by contract name."""

    utm: dict[str, str] = field(default_factory=dict)
    click_ids: dict[str, str] = field(default_factory=dict)
    used_fields: set[str] = field(default_factory=set)  # field names consumed, to drop from fields

    def fill(self, pairs: Iterable[tuple[str, Any]], used: set[str] | None = None) -> None:
        """Add every pair that names a tag not found yet; the first place to have it wins.

        Names of string-valued tag pairs go to ``used`` even when the value is empty or
        lost to an earlier place: the lead's ``utm``/``click_ids`` now speak for them.
        """
        for raw_key, raw_value in pairs:
            kind_key = classify(raw_key)
            if kind_key is None or not isinstance(raw_value, str):
                continue
            if used is not None:
                used.add(raw_key)
            value = clean_value(raw_value)
            if value is None:
                continue
            kind, key = kind_key
            target = self.utm if kind == "utm" else self.click_ids
            target.setdefault(key, value)


def classify(name: str) -> tuple[str, str] | None:
    """``("utm", "source")`` for ``utm_source``, ``("click", "gclid")`` for ``GCLID``, else None."""
    key = name.strip().lower()
    if key.startswith("utm_") and key[4:] in UTM_KEYS:
        return "utm", key[4:]
    key = CLICK_ID_ALIASES.get(key, key)
    if key in CLICK_ID_KEYS:
        return "click", key
    return None


def clean_value(value: Any) -> str | None:
    """A usable tag value: a non-empty string without NULs and surrounding space."""
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    return text or None


def query_pairs(url: str | None) -> list[tuple[str, str]]:
    """The query of a URL as (name, value) pairs; nothing for a missing or broken URL."""
    if not url or "?" not in url:
        return []
    try:
        query = urlsplit(url.strip()).query
    except ValueError:  # e.g. "http://[broken" - an unparseable page URL has no tags
        return []
    return parse_qsl(query, keep_blank_values=False)


def parse_cookies(cookies: str | None) -> list[tuple[str, str]]:
    """A ``document.cookie`` string (``a=1; b=2``) as pairs, values still encoded."""
    pairs: list[tuple[str, str]] = []
    for chunk in (cookies or "").split(";"):
        name, sep, value = chunk.strip().partition("=")
        if sep and name:
            pairs.append((name.strip(), value.strip().strip('"')))
    return pairs


def tilda_utm_pairs(value: str) -> list[tuple[str, str]]:
    """Decode Tilda's ``TILDAUTM`` cookie: ``encodeURIComponent("utm_source=x|||utm_medium=y")``.

    The tag values inside are as they stood in the page's query string, so they are
    query-decoded once more.
    """
    pairs: list[tuple[str, str]] = []
    for item in unquote(value).split("|||"):
        name, sep, tag = item.partition("=")
        if sep:
            pairs.append((name.strip(), unquote_plus(tag)))
    return pairs


def gclid_from_gcl_aw(value: str) -> str | None:
    """Google Ads' ``_gcl_aw`` cookie is ``GCL.<timestamp>.<gclid>``."""
    parts = unquote(value).split(".", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "GCL" else None


def fbclid_from_fbc(value: str) -> str | None:
    """Meta's ``_fbc`` cookie is ``fb.<subdomain index>.<timestamp>.<fbclid>``."""
    parts = unquote(value).split(".", 3)
    return parts[3] if len(parts) == 4 and parts[0] == "fb" else None


def cookie_pairs(cookies: str | None) -> list[tuple[str, str]]:
    """Every tag the forwarded cookies hold, as (field-style name, value) pairs.

    Cookies named like a tag (``utm_source``, ``roistat_visit``) come first, then
    Tilda's ``TILDAUTM``, then the ad networks' own cookies (``_gcl_aw``, ``_fbc``).
    """
    direct: list[tuple[str, str]] = []
    derived: list[tuple[str, str]] = []
    for name, value in parse_cookies(cookies):
        if name == "TILDAUTM":
            derived[:0] = tilda_utm_pairs(value)
        elif name == "_gcl_aw" and (gclid := gclid_from_gcl_aw(value)):
            derived.append(("gclid", gclid))
        elif name == "_fbc" and (fbclid := fbclid_from_fbc(value)):
            derived.append(("fbclid", fbclid))
        elif classify(name) is not None:
            direct.append((name, unquote(value)))
    return direct + derived


def explicit_pairs(utm: Mapping[str, str], click_ids: Mapping[str, str]) -> list[tuple[str, str]]:
    """A draft's own ``utm`` (keyed ``source`` or ``utm_source``) and ``click_ids``, as pairs."""
    pairs = [(k if k.lower().startswith("utm_") else f"utm_{k}", v) for k, v in utm.items()]
    return pairs + list(click_ids.items())


def extract_marks(
    *,
    fields: Mapping[str, Any],
    page_url: str | None = None,
    referrer: str | None = None,
    cookies: str | None = None,
    explicit_utm: Mapping[str, str] | None = None,
    explicit_click_ids: Mapping[str, str] | None = None,
) -> Marks:
    """Find UTM tags and click ids in the contract's order; ``used_fields`` names what to drop.

    Field values that are not strings (a JSON list, a number) are left alone in ``fields``.
    """
    marks = Marks()
    marks.fill(explicit_pairs(explicit_utm or {}, explicit_click_ids or {}))
    marks.fill(((k, v) for k, v in fields.items() if isinstance(k, str)), used=marks.used_fields)
    marks.fill(query_pairs(page_url))
    marks.fill(query_pairs(referrer))
    marks.fill(cookie_pairs(cookies))
    return marks
