"""The deal fields that hold LeadHub's markers: found by name, created once, shared on disk.

Two text fields of the deal, "LeadHub key" (``lh:<idempotency key>``) and "LeadHub attempt"
(``lha:<attempt id>``). On first use the destination lists the account's lead fields
(``GET /api/v4/leads/custom_fields``, every page), creates what is missing with
``POST /api/v4/leads/custom_fields`` ``[{"name": ..., "type": "text"}]``, and writes the ids
to ``data_dir/amocrm/<connector>.fields.json``. All of that happens under a file lock, the
way ``client.TokenFile`` keeps OAuth tokens, so the worker processes of one host share the
ids and never create a field twice. (Hosts that share no disk can still race: both then
pick the field with the lowest id of that name once they list again, and a look-up matches
a marker in any field, so a deal marked in the other copy is still found.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.sdk import RetryableError
from plugins.amocrm.client import AmoClient
from plugins.amocrm.state_file import StateFile

KEY_FIELD = "LeadHub key"
ATTEMPT_FIELD = "LeadHub attempt"
TEXT_TYPES = ("text", "textarea")
MAX_FIELD_PAGES = 40  # 250 fields a page: far more than any account has


@dataclass(frozen=True)
class MarkerFields:
    key: int  # the field holding lh:<idempotency key>
    attempt: int  # the field holding lha:<attempt id>


class FieldFile(StateFile):
    """``<connector>.fields.json``: the field ids of one account, for every process."""

    def __init__(self, path: Path, base_url: str) -> None:
        super().__init__(path)
        self.base_url = base_url  # ids belong to one account: another base_url starts over

    def load(self) -> dict[str, int]:
        data = self.read()
        if data is None or data.get("base_url") != self.base_url:
            return {}
        fields = data.get("fields")
        if not isinstance(fields, dict):
            return {}
        return {str(k): v for k, v in fields.items() if isinstance(v, int)}

    def save(self, fields: dict[str, int]) -> None:
        self.write({"base_url": self.base_url, "fields": fields})


def resolve(
    client: AmoClient, file: FieldFile, wanted: list[str], *, stale: dict[str, int] | None = None,
) -> dict[str, int]:
    """Ids of the text fields named ``wanted``: from the file, else found or created.

    ``stale`` holds ids the API has just rejected: they are looked up again, unless another
    process has already stored different ones.
    """
    with file.locked():
        stored = file.load()
        known = {name: stored[name] for name in wanted if name in stored}
        if stale:
            known = {n: i for n, i in known.items() if stale.get(n) != i}
        if len(known) == len(wanted):
            return known
        found = _find_by_name(client, wanted)
        missing = [name for name in wanted if name not in found]
        if missing:
            found.update(_create(client, missing))
        file.save({**stored, **found})
        return {name: found[name] for name in wanted}


def _find_by_name(client: AmoClient, wanted: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in range(1, MAX_FIELD_PAGES + 1):
        answer = client.request("GET", "/api/v4/leads/custom_fields",
                                params={"limit": 250, "page": page})
        rows = _embedded(answer, "custom_fields")
        for row in rows:
            name, fid = row.get("name"), row.get("id")
            if name in wanted and row.get("type") in TEXT_TYPES and isinstance(fid, int):
                found[str(name)] = min(fid, found.get(str(name), fid))
        if not rows or "next" not in ((answer or {}).get("_links") or {}):
            break
    return found


def _create(client: AmoClient, names: list[str]) -> dict[str, int]:
    body = [{"name": name, "type": "text", "request_id": str(i)} for i, name in enumerate(names)]
    answer = client.request("POST", "/api/v4/leads/custom_fields", json_body=body)
    created: dict[str, int] = {}
    for row in _embedded(answer, "custom_fields"):
        if row.get("name") in names and isinstance(row.get("id"), int):
            created[str(row["name"])] = row["id"]
    lost = [name for name in names if name not in created]
    if lost:
        raise RetryableError(f"amoCRM did not return the created field(s) {lost}",
                             uncertain=True)
    return created


def _embedded(answer: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(answer, dict):
        return []
    rows = (answer.get("_embedded") or {}).get(key) or []
    return [row for row in rows if isinstance(row, dict)]
