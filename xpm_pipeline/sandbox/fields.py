"""Editable fields of each entity, declared once for both ways in: XPM write bodies and admin JSON.

Each ``Field`` names the model attribute, the element XPM's write body uses (which may differ from the
read name: ``WebSite`` vs ``<Website>``, ``StaffUUID`` vs ``<Staff><UUID>``) and the admin JSON key
(the warehouse column name from ``xpm_pipeline.entities``). ``parse_fields`` turns either source into
validated model values, so an API write and an out-of-band edit go through the same checks.

Rules: an element that is absent leaves the attribute unchanged; an empty element clears it (text
becomes "", a date or reference None). Write bodies are strict about XPM's formats (dates
``YYYYMMDD``, times ``HH:MM``, booleans ``true``/``false``, flags ``Yes``/``No``); admin JSON also
accepts ISO dates and JSON booleans and numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from xpm_pipeline.sandbox.errors import BadRequest, NotFound

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_YMD = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _text(raw: Any, xml: bool) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        if xml:
            raise ValueError("text expected")
        return str(raw)
    return raw


def _int(raw: Any, xml: bool) -> int:
    if isinstance(raw, bool):
        raise ValueError("integer expected")
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    if not re.fullmatch(r"-?\d+", text):
        raise ValueError("integer expected")
    return int(text)


def _money(raw: Any, xml: bool) -> Decimal:
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError("decimal amount expected") from None
    if not value.is_finite():
        raise ValueError("decimal amount expected")
    return value.quantize(Decimal("0.01"))


def parse_ymd(raw: str) -> date:
    """XPM's request date format, ``YYYYMMDD``; anything else is a 400."""
    match = _YMD.match(raw.strip())
    if not match:
        raise ValueError("date must be YYYYMMDD")
    return date(int(match[1]), int(match[2]), int(match[3]))


def _date(raw: Any, xml: bool) -> date | None:
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    if not xml and len(text) >= 10 and text[4] == "-":
        return date.fromisoformat(text[:10])
    return parse_ymd(text)


def parse_hhmm(raw: str) -> int:
    match = _HHMM.match(str(raw).strip())
    if not match:
        raise ValueError("time must be HH:MM")
    return int(match[1]) * 60 + int(match[2])


def _hhmm(raw: Any, xml: bool) -> int | None:
    if raw is None or raw == "":
        return None
    return parse_hhmm(raw)


def _bool(raw: Any, xml: bool) -> bool:
    if isinstance(raw, bool) and not xml:
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    raise ValueError("true or false expected")


def _yesno(raw: Any, xml: bool) -> bool:
    if isinstance(raw, bool) and not xml:
        return raw
    text = str(raw).strip().lower()
    if text in ("yes", "true"):
        return True
    if text in ("no", "false"):
        return False
    raise ValueError("Yes or No expected")


CONVERT: dict[str, Callable[[Any, bool], Any]] = {
    "text": _text, "int": _int, "money": _money, "date": _date, "hhmm": _hhmm, "bool": _bool, "yesno": _yesno,
}
# Reference kinds: the value is an ID, resolved against the tenant's state by ``Resolver``.
REFS = ("staff", "client", "task_type", "contact", "job")


@dataclass(frozen=True)
class Field:
    attr: str  # model attribute
    xml: str | None  # element in XPM's write body; None: not writable through the API
    kind: str  # a CONVERT key or a REFS kind
    json: str | None = None  # admin JSON key; defaults to attr

    @property
    def key(self) -> str:
        return self.json or self.attr


class Resolver:
    """Looks IDs up in one tenant's state; an unknown ID is a ``NotFound`` (200 + ERROR)."""

    LABELS = {"staff": "staff", "client": "client", "task_type": "task", "contact": "contact", "job": "job"}

    def __init__(self, tenant) -> None:
        self.tenant = tenant

    def __call__(self, kind: str, raw: Any):
        if raw is None or str(raw).strip() == "":
            return None
        ident = str(raw).strip()
        table = {
            "staff": self.tenant.staff,
            "client": self.tenant.clients,
            "task_type": self.tenant.task_types,
            "contact": self.tenant.contacts,
            "job": self.tenant.jobs,
        }[kind]
        found = table.get(ident if kind == "job" else ident.lower())
        if found is None or (kind == "client" and found.is_deleted):
            raise NotFound(f"Unable to find {self.LABELS[kind]} {ident}")
        return found


def parse_fields(fields: tuple[Field, ...], source: dict[str, Any], *, xml: bool, resolve: Resolver) -> dict[str, Any]:
    """Model values for every field present in ``source`` (write-body elements or admin JSON keys)."""
    out: dict[str, Any] = {}
    for f in fields:
        name = f.xml if xml else f.key
        if name is None or name not in source:
            continue
        raw = source[name]
        if f.kind in REFS:
            out[f.attr] = resolve(f.kind, raw)
            continue
        try:
            out[f.attr] = CONVERT[f.kind](raw, xml)
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"Invalid value for {name}: {str(raw)[:60]!r} ({exc})") from None
    return out


def unknown_keys(fields: tuple[Field, ...], source: dict[str, Any], extra: tuple[str, ...] = ()) -> list[str]:
    """Admin JSON keys that no field declares (the admin interface refuses them, so typos show)."""
    known = {f.key for f in fields} | set(extra)
    return sorted(k for k in source if k not in known)


F = Field
STAFF_FIELDS = (
    F("name", "Name", "text"), F("email", "Email", "text"), F("phone", "Phone", "text"),
    F("mobile", "Mobile", "text"), F("address", "Address", "text"), F("payroll_code", "PayrollCode", "text"),
)
CONTACT_FIELDS = (
    F("name", "Name", "text"), F("salutation", "Salutation", "text"), F("addressee", "Addressee", "text"),
    F("mobile", "Mobile", "text"), F("email", "Email", "text"), F("phone", "Phone", "text"),
    F("position", "Position", "text"), F("is_primary", "IsPrimary", "yesno"), F("is_deleted", None, "yesno"),
)
CLIENT_FIELDS = (
    F("name", "Name", "text"), F("title", "Title", "text"), F("first_name", "FirstName", "text"),
    F("last_name", "LastName", "text"), F("email", "Email", "text"), F("date_of_birth", "DateOfBirth", "date"),
    F("address", "Address", "text"), F("city", "City", "text"), F("region", "Region", "text"),
    F("post_code", "PostCode", "text"), F("country", "Country", "text"),
    F("postal_address", "PostalAddress", "text"), F("postal_city", "PostalCity", "text"),
    F("postal_region", "PostalRegion", "text"), F("postal_post_code", "PostalPostCode", "text"),
    F("postal_country", "PostalCountry", "text"), F("phone", "Phone", "text"), F("fax", "Fax", "text"),
    F("website", "WebSite", "text"), F("referral_source", "ReferralSource", "text"),
    F("export_code", "ExportCode", "text"), F("is_prospect", "IsProspect", "yesno"),
    F("is_archived", None, "yesno"), F("is_deleted", None, "yesno"),
    F("account_manager", "AccountManagerUUID", "staff", "account_manager_uuid"),
    F("job_manager", "JobManagerUUID", "staff", "job_manager_uuid"),
    F("billing_client", "BillingClientUUID", "client", "billing_client_uuid"),
    F("tax_number", "TaxNumber", "text"), F("company_number", "CompanyNumber", "text"),
    F("business_number", "BusinessNumber", "text"), F("business_structure", "BusinessStructure", "text"),
)
JOB_FIELDS = (
    F("name", "Name", "text"), F("description", "Description", "text"),
    F("client_order_number", "ClientOrderNumber", "text"), F("job_type", None, "text"),
    F("start_date", "StartDate", "date"), F("due_date", "DueDate", "date"),
    F("client", "ClientNumber", "client", "client_uuid"), F("category", "CategoryID", "text"),
    F("budget", "Budget", "money"), F("contact", None, "contact", "contact_uuid"),
    F("manager", None, "staff", "manager_uuid"), F("partner", None, "staff", "partner_uuid"),
)
# job.api/add names some elements differently from job.api/update (ClientUUID, CategoryUUID).
JOB_ADD_FIELDS = (
    F("name", "Name", "text"), F("description", "Description", "text"),
    F("client_order_number", "ClientOrderNumber", "text"), F("job_type", None, "text"),
    F("start_date", "StartDate", "date"), F("due_date", "DueDate", "date"),
    F("client", "ClientUUID", "client", "client_uuid"), F("contact", "ContactUUID", "contact", "contact_uuid"),
    F("category", "CategoryUUID", "text"), F("budget", "Budget", "money"),
    F("manager", None, "staff", "manager_uuid"), F("partner", None, "staff", "partner_uuid"),
)
JOB_TASK_FIELDS = (
    F("label", "Label", "text"), F("description", "Description", "text"),
    F("estimated_minutes", "EstimatedMinutes", "int"), F("start_date", "StartDate", "date"),
    F("due_date", "DueDate", "date"), F("billable", None, "bool"), F("completed", None, "bool"),
    F("folder", None, "text"), F("name", None, "text"),
)
# Time: the job is resolved first, then the task within it (see state.TenantState.resolve_time_task).
TIME_FIELDS = (
    F("staff", "StaffUUID", "staff", "staff_uuid"), F("date", "Date", "date", "entry_date"),
    F("minutes", "Minutes", "int"), F("start", "Start", "hhmm", "start_time"), F("end", "End", "hhmm", "end_time"),
    F("note", "Note", "text"), F("billable", "Billable", "bool"),
)
