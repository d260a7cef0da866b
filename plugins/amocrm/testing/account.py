"""The in-memory amoCRM account behind ``FakeAmoCRM``: entities and request validation.

No HTTP here: ``plugins.amocrm.testing.fake`` turns these results into responses. Shapes follow
``shared/reference/destinations.md`` §1 and the amoCRM API v4 documentation.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

ACCOUNT_ID = 29000001
WON_STATUS_ID = 142
LOST_STATUS_ID = 143
MAX_CUSTOM_FIELD_VALUES = 40

#: Tracking (``tracking_data``) lead fields every amoCRM account has, by field code.
TRACKING_CODES = (
    "UTM_SOURCE",
    "UTM_MEDIUM",
    "UTM_CAMPAIGN",
    "UTM_CONTENT",
    "UTM_TERM",
    "UTM_REFERRER",
    "REFERRER",
    "GCLID",
    "YCLID",
    "FBCLID",
)
PHONE_ENUMS = ("WORK", "WORKDD", "MOB", "FAX", "HOME", "OTHER")
EMAIL_ENUMS = ("WORK", "PRIV", "OTHER")
NOTE_TYPES = ("common", "call_in", "call_out", "service_message", "extended_service_message")
#: Field types ``POST /api/v4/{entity}/custom_fields`` accepts (Kommo "Custom fields and
#: field groups", https://developers.kommo.com/reference/custom-fields, "Available field
#: types"); ``tracking_data`` fields exist in every account but are not created by clients
#: (not confirmed: the docs do not say which types a client may create).
CREATABLE_FIELD_TYPES = (
    "text", "numeric", "checkbox", "select", "multiselect", "date", "url", "textarea",
    "radiobutton", "streetaddress", "smart_address", "birthday", "legal_entity", "date_time",
    "price", "category", "file", "chained_list", "linked_entity", "monetary", "multitext",
)

Problem = dict[str, Any]  # one {"code", "path", "detail"} of a validation error


@dataclass
class CustomField:
    id: int
    name: str
    type: str
    code: str | None = None
    enums: dict[str, int] = field(default_factory=dict)
    sort: int = 500
    is_api_only: bool = False

    def model(self, entity: str) -> dict[str, Any]:
        """The field as ``GET /api/v4/{entity}/custom_fields`` lists it (amoCRM "Поля и группы
        полей", https://www.amocrm.ru/developers/content/crm_platform/custom-fields)."""
        return {
            "id": self.id, "name": self.name, "type": self.type, "account_id": ACCOUNT_ID,
            "code": self.code, "sort": self.sort, "is_api_only": self.is_api_only,
            "enums": ([{"id": eid, "value": code, "sort": i}
                       for i, (code, eid) in enumerate(self.enums.items())] or None),
            "group_id": None, "required_statuses": [], "is_deletable": self.type != "tracking_data",
            "is_predefined": self.type == "tracking_data", "entity_type": entity, "remind": None,
        }


def problem(code: str, path: str, detail: str) -> Problem:
    return {"code": code, "path": path, "detail": detail}


class AmoAccount:
    """Leads, contacts, companies and notes of one account; ids grow like the real ones."""

    def __init__(self, *, pipeline_id: int = 7000001, users: set[int] | None = None) -> None:
        self._ids = itertools.count(31000001)
        self.users = users  # None: any positive user id is accepted
        self.default_user_id = 1000001
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self.lead_contacts: dict[int, list[int]] = {}
        self.pipelines: dict[int, dict[str, Any]] = {}
        self.fields: dict[str, dict[int, CustomField]] = {
            "leads": {},
            "contacts": {},
            "companies": {},
        }
        self.add_pipeline(pipeline_id, "Воронка", is_main=True)
        for code in TRACKING_CODES:
            self.add_field("leads", code.lower(), "tracking_data", code)
        self.add_field("contacts", "Телефон", "multitext", "PHONE", PHONE_ENUMS)
        self.add_field("contacts", "Email", "multitext", "EMAIL", EMAIL_ENUMS)
        # Companies carry the same predefined PHONE/EMAIL multitext fields as contacts
        # (amoCRM "Контакты и компании": both entities list ``custom_fields_values`` with
        # ``field_code`` PHONE/EMAIL); the tax id is an ordinary text field an admin adds,
        # named "ИНН" by default (CONTRACT.md plugin table: ``inn_field``).
        self.add_field("companies", "Телефон", "multitext", "PHONE", PHONE_ENUMS)
        self.add_field("companies", "Email", "multitext", "EMAIL", EMAIL_ENUMS)
        self.add_field("companies", "ИНН", "text")

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------ setup

    def add_pipeline(self, pipeline_id: int, name: str, *, is_main: bool = False) -> None:
        base = pipeline_id * 10
        statuses = [
            (base, "Неразобранное", 1),
            (base + 1, "Первичный контакт", 0),
            (base + 2, "Переговоры", 0),
            (WON_STATUS_ID, "Успешно реализовано", 0),
            (LOST_STATUS_ID, "Закрыто и не реализовано", 0),
        ]
        self.pipelines[pipeline_id] = {
            "id": pipeline_id,
            "name": name,
            "sort": len(self.pipelines) + 1,
            "is_main": is_main,
            "is_unsorted_on": True,
            "is_archive": False,
            "account_id": ACCOUNT_ID,
            "_embedded": {
                "statuses": [
                    {
                        "id": sid,
                        "name": sname,
                        "sort": i * 10,
                        "is_editable": sid not in (142, 143),
                        "pipeline_id": pipeline_id,
                        "color": "#99ccff",
                        "type": stype,
                        "account_id": ACCOUNT_ID,
                    }
                    for i, (sid, sname, stype) in enumerate(statuses)
                ]
            },
        }

    def add_field(
        self,
        entity: str,
        name: str,
        type_: str,
        code: str | None = None,
        enums: tuple[str, ...] = (),
    ) -> int:
        fid = self.next_id()
        self.fields[entity][fid] = CustomField(
            fid, name, type_, code, {e: self.next_id() for e in enums}
        )
        return fid

    def check_new_field(self, raw: Any) -> list[Problem]:
        """Problems of one item of ``POST /api/v4/{entity}/custom_fields``: ``type`` and
        ``name`` are mandatory (Kommo "Add custom fields",
        https://developers.kommo.com/reference/add-custom-fields). The exact ``code`` strings
        of the real 400 are not documented; the shape is amoCRM's ``validation-errors``."""
        if not isinstance(raw, dict):
            return [problem("InvalidType", "", "This value should be of type object.")]
        problems: list[Problem] = []
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(problem("NotBlank", "name", "This value should not be blank."))
        if raw.get("type") not in CREATABLE_FIELD_TYPES:
            problems.append(problem("NotSupportedChoice", "type",
                                    "The value you selected is not a valid choice."))
        sort = raw.get("sort")
        if sort is not None and not isinstance(sort, int):
            problems.append(problem("InvalidType", "sort", "This value should be of type int."))
        return problems

    def create_field(self, entity: str, raw: dict[str, Any]) -> CustomField:
        """A new field. Two fields may share a name (amoCRM does not refuse it, as far as
        its docs say): a client must find its field before creating one."""
        fid = self.add_field(entity, str(raw["name"]), str(raw["type"]), raw.get("code"))
        cf = self.fields[entity][fid]
        cf.sort = int(raw.get("sort") or 500 + len(self.fields[entity]))
        cf.is_api_only = bool(raw.get("is_api_only", False))
        return cf

    def status_ids(self, pipeline_id: int) -> list[int]:
        return [s["id"] for s in self.pipelines[pipeline_id]["_embedded"]["statuses"]]

    # ------------------------------------------------------------ validation

    def check_custom_fields(
        self, entity: str, raw: Any, path: str
    ) -> tuple[list[Any], list[Problem]]:
        """Validate ``custom_fields_values``; return them in the stored shape, and problems."""
        if raw is None:
            return [], []
        if not isinstance(raw, list):
            return [], [problem("InvalidType", path, "This value should be of type array.")]
        if len(raw) > MAX_CUSTOM_FIELD_VALUES:
            return [], [problem("TooMany", path, f"At most {MAX_CUSTOM_FIELD_VALUES} values.")]
        by_code = {f.code: f for f in self.fields[entity].values() if f.code}
        stored: list[Any] = []
        problems: list[Problem] = []
        for i, item in enumerate(raw):
            where = f"{path}.{i}"
            if not isinstance(item, dict):
                problems.append(
                    problem("InvalidType", where, "This value should be of type object.")
                )
                continue
            cf = (
                by_code.get(item["field_code"])
                if "field_code" in item
                else self.fields[entity].get(item.get("field_id", -1))
            )
            if cf is None:
                key = "field_code" if "field_code" in item else "field_id"
                problems.append(
                    problem(
                        "NotSupportedChoice",
                        f"{where}.{key}",
                        "The value you selected is not a valid choice.",
                    )
                )
                continue
            values = item.get("values")
            if not isinstance(values, list) or not values:
                problems.append(
                    problem("FieldMissing", f"{where}.values", "This field is missing.")
                )
                continue
            out = []
            for j, value in enumerate(values):
                if not isinstance(value, dict) or not isinstance(
                    value.get("value"), str | int | float
                ):
                    problems.append(
                        problem(
                            "InvalidType",
                            f"{where}.values.{j}.value",
                            "This value should be of type string.",
                        )
                    )
                    continue
                entry: dict[str, Any] = {"value": value["value"]}
                if cf.enums:
                    enum_code = value.get("enum_code", "WORK")
                    if enum_code not in cf.enums:
                        problems.append(
                            problem(
                                "NotSupportedChoice",
                                f"{where}.values.{j}.enum_code",
                                "The value you selected is not a valid choice.",
                            )
                        )
                        continue
                    entry.update(enum_id=cf.enums[enum_code], enum_code=enum_code)
                out.append(entry)
            stored.append(
                {
                    "field_id": cf.id,
                    "field_name": cf.name,
                    "field_code": cf.code,
                    "field_type": cf.type,
                    "values": out,
                }
            )
        return stored, problems

    def check_lead(self, raw: Any) -> list[Problem]:
        """Problems of one lead body (not its ``_embedded`` contacts)."""
        if not isinstance(raw, dict):
            return [problem("InvalidType", "", "This value should be of type object.")]
        problems: list[Problem] = []
        name = raw.get("name")
        if name is not None and not isinstance(name, str):
            problems.append(problem("InvalidType", "name", "This value should be of type string."))
        pipeline_id = raw.get("pipeline_id")
        if pipeline_id is not None and pipeline_id not in self.pipelines:
            problems.append(
                problem(
                    "NotSupportedChoice",
                    "pipeline_id",
                    "The value you selected is not a valid choice.",
                )
            )
        status_id = raw.get("status_id")
        pid = pipeline_id if pipeline_id in self.pipelines else self.main_pipeline()
        if status_id is not None and status_id not in self.status_ids(pid):
            problems.append(
                problem(
                    "NotSupportedChoice",
                    "status_id",
                    "The value you selected is not a valid choice.",
                )
            )
        user = raw.get("responsible_user_id")
        if user is not None and (
            not isinstance(user, int)
            or user <= 0
            or (self.users is not None and user not in self.users)
        ):
            problems.append(
                problem(
                    "NotSupportedChoice",
                    "responsible_user_id",
                    "The value you selected is not a valid choice.",
                )
            )
        price = raw.get("price")
        if price is not None and not isinstance(price, int):
            problems.append(problem("InvalidType", "price", "This value should be of type int."))
        tags = (raw.get("_embedded") or {}).get("tags") or []
        for i, tag in enumerate(tags):
            if not isinstance(tag, dict) or not isinstance(
                tag.get("name", tag.get("id")), str | int
            ):
                problems.append(
                    problem("InvalidType", f"_embedded.tags.{i}", "Tag needs a name or an id.")
                )
        problems += self.check_custom_fields(
            "leads", raw.get("custom_fields_values"), "custom_fields_values"
        )[1]
        return problems

    def main_pipeline(self) -> int:
        return int(next(p["id"] for p in self.pipelines.values() if p["is_main"]))

    # ------------------------------------------------------------ creation

    def create_contact(self, raw: dict[str, Any]) -> int:
        cid = self.next_id()
        now = int(time.time())
        name = raw.get("name") or " ".join(
            p for p in (raw.get("first_name"), raw.get("last_name")) if p
        )
        self.contacts[cid] = {
            "id": cid,
            "name": name,
            "first_name": raw.get("first_name", ""),
            "last_name": raw.get("last_name", ""),
            "responsible_user_id": raw.get("responsible_user_id", self.default_user_id),
            "group_id": 0,
            "created_by": 0,
            "updated_by": 0,
            "created_at": now,
            "updated_at": now,
            "closest_task_at": None,
            "is_deleted": False,
            "is_unsorted": False,
            "custom_fields_values": self.check_custom_fields(
                "contacts", raw.get("custom_fields_values"), ""
            )[0]
            or None,
            "account_id": ACCOUNT_ID,
            "_embedded": {"tags": []},
        }
        return cid

    def create_company(self, raw: dict[str, Any]) -> int:
        cid = self.next_id()
        now = int(time.time())
        self.companies[cid] = {
            "id": cid,
            "name": raw.get("name", ""),
            "created_at": now,
            "updated_at": now,
            "responsible_user_id": raw.get("responsible_user_id", self.default_user_id),
            "group_id": 0,
            "created_by": 0,
            "updated_by": 0,
            "closest_task_at": None,
            "is_deleted": False,
            "custom_fields_values": self.check_custom_fields(
                "companies", raw.get("custom_fields_values"), ""
            )[0]
            or None,
            "account_id": ACCOUNT_ID,
            "_embedded": {"tags": []},
        }
        return cid

    def create_lead(
        self,
        raw: dict[str, Any],
        contact_ids: list[int],
        company_id: int | None = None,
        *,
        created_at: int | None = None,
    ) -> int:
        lid = self.next_id()
        now = created_at or int(time.time())
        pipeline_id = raw.get("pipeline_id") or self.main_pipeline()
        status_id = raw.get("status_id") or self.status_ids(pipeline_id)[1]
        tags = [
            {"id": self.next_id(), "name": str(t.get("name", t.get("id"))), "color": None}
            for t in (raw.get("_embedded") or {}).get("tags") or []
        ]
        closed = raw.get("closed_at") or (now if status_id in (142, 143) else None)
        self.leads[lid] = {
            "id": lid,
            "name": raw.get("name") or f"Сделка #{lid}",
            "price": raw.get("price", 0),
            "responsible_user_id": raw.get("responsible_user_id", self.default_user_id),
            "group_id": 0,
            "status_id": status_id,
            "pipeline_id": pipeline_id,
            "loss_reason_id": None,
            "created_by": 0,
            "updated_by": 0,
            "created_at": now,
            "updated_at": now,
            "closed_at": closed,
            "closest_task_at": None,
            "is_deleted": False,
            "custom_fields_values": self.check_custom_fields(
                "leads", raw.get("custom_fields_values"), ""
            )[0]
            or None,
            "score": None,
            "account_id": ACCOUNT_ID,
            "labor_cost": None,
            "_embedded": {"tags": tags, "companies": [{"id": company_id}] if company_id else []},
        }
        self.lead_contacts[lid] = list(contact_ids)
        return lid

    def add_note(self, entity_id: int, note_type: str, params: dict[str, Any]) -> int:
        nid = self.next_id()
        now = int(time.time())
        self.notes[nid] = {
            "id": nid,
            "entity_id": entity_id,
            "created_by": 0,
            "updated_by": 0,
            "created_at": now,
            "updated_at": now,
            "responsible_user_id": self.default_user_id,
            "group_id": 0,
            "note_type": note_type,
            "params": copy.deepcopy(params),
            "account_id": ACCOUNT_ID,
        }
        return nid

    # ------------------------------------------------------------ search

    def lead_matches(self, lead: dict[str, Any], query: str) -> bool:
        """``query=``: "searches the entity's filled fields" (amoCRM API v4 leads list,
        https://www.amocrm.ru/developers/content/crm_platform/leads-api, parameter ``query``):
        a substring of the deal's name or of a custom-field value, or the deal's id
        (``Lead.objects.filter(query=<id>)`` finds the deal, Krukov/amocrm_api issue #71).

        Tag names are NOT fields and are never searched (reference §1 (a2); there is no
        filter by tag either: amocrm/amocrm-api-php issue #474). Whether the real search
        matches substrings or whole words is not documented; substrings are matched here,
        so a client must check the exact value itself."""
        if query.strip() == str(lead["id"]):
            return True
        needle = query.lower()
        haystack = [lead["name"]]
        for cf in lead["custom_fields_values"] or []:
            haystack += [str(v["value"]) for v in cf["values"]]
        return any(needle in text.lower() for text in haystack)

    def contact_matches(self, contact: dict[str, Any], query: str) -> bool:
        """Digits of a phone query match phone digits; other text matches name and values."""
        digits = "".join(ch for ch in query if ch.isdigit())
        values = [
            str(v["value"]) for cf in contact["custom_fields_values"] or [] for v in cf["values"]
        ]
        if len(digits) >= 5 and digits == query.lstrip("+").replace(" ", ""):
            return any(digits in "".join(ch for ch in v if ch.isdigit()) for v in values)
        return any(query.lower() in text.lower() for text in [contact["name"], *values])

    def find_duplicate(self, contact: dict[str, Any]) -> int | None:
        """Duplicate control: an existing contact sharing a phone or email value."""
        wanted = {
            str(v.get("value")).lower()
            for cf in contact.get("custom_fields_values") or []
            for v in cf.get("values") or []
        }
        for cid, existing in self.contacts.items():
            values = {
                str(v["value"]).lower()
                for cf in existing["custom_fields_values"] or []
                for v in cf["values"]
            }
            if wanted & values:
                return cid
        return None
