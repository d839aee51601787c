"""XPM's XML, declared once per entity as an ordered table of elements and rendered by one engine.

Why tables: XPM clients break on element *order*, nesting and boolean spelling, so each entity's shape
is written down exactly once (``SCHEMAS``) in xpm-api §6 order, and the engine applies XPM's general
rules uniformly:

* empty values are self-closing (``<Website />``); ``optional`` elements and blocks are omitted when
  unset (job ``CompletedDate``/``Contact``/``Manager``/``Partner``, task dates, time ``Start``/``End``);
* lists keep their wrapper even with one item, and an empty list is ``<Contacts />``;
* booleans are ``true``/``false`` (jobs, tasks, time) or ``Yes``/``No`` (client and contact flags,
  group ``Taxable``) as the format of each element says;
* dates are ``yyyy-MM-ddT00:00:00``; client ``DateOfBirth`` is date-only on ``client.api/get``;
* tax numbers are masked to ``******`` plus the last three digits;
* text is escaped (``&amp;``, ``&lt;``, ``&gt;``); non-ASCII is sent as UTF-8.

Speed: a year of large-size time is ~75,000 ``<Time>`` elements, so element renderers are closures
built once, repeated sub-blocks (``<Job>``, ``<Task>``, ``<Staff>`` inside a time entry) are memoised
per response, and big lists are rendered into chunks that the server writes as they come.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Iterable

UTC = timezone.utc
CHUNK_ITEMS = 2000


def esc(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


@lru_cache(maxsize=8192)
def xpm_date(value: date) -> str:
    return f"{value.isoformat()}T00:00:00"


def xpm_datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Ctx:
    """What a render depends on beyond the object: tenant (state names), detail level, memo."""

    tenant: Any
    detailed: bool = False
    single: bool = False  # a ``get``: client DateOfBirth is date-only
    task_filter: Callable | None = None  # job.api/tasks: which tasks to show
    memo: dict = field(default_factory=dict)


# -- value formats: (value, ctx) -> escaped text ----------------------------------------------------

def f_text(value, ctx) -> str:
    return esc(value)


def f_int(value, ctx) -> str:
    return str(value)


def f_bool(value, ctx) -> str:
    return "true" if value else "false"


def f_yesno(value, ctx) -> str:
    return "Yes" if value else "No"


def f_date(value, ctx) -> str:
    return xpm_date(value)


def f_datetime(value, ctx) -> str:
    return xpm_datetime(value)


def f_money(value, ctx) -> str:
    return str(Decimal(value).quantize(Decimal("0.01")))


def f_hhmm(value, ctx) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


def f_state(value, ctx) -> str:
    return esc(ctx.tenant.state_name(value))


def f_masked(value, ctx) -> str:
    return "******" + esc(value[-3:]) if value else ""


def f_birth(value, ctx) -> str:
    return value.isoformat() if ctx.single else xpm_date(value)


DETAILED = lambda ctx: ctx.detailed  # noqa: E731
WITH_TASKS = lambda ctx: ctx.detailed or ctx.task_filter is not None  # noqa: E731

Render = Callable[[Any, Ctx], str]


def _getter(get: str | Callable) -> Callable:
    return operator.attrgetter(get) if isinstance(get, str) else get


@dataclass(frozen=True)
class El:
    """One element: ``tag`` with the value at ``get`` in ``fmt``."""

    tag: str
    get: str | Callable
    fmt: Callable = f_text
    optional: bool = False  # None: omit the element (else self-closing)
    when: Callable | None = None  # only rendered when when(ctx)

    def compile(self) -> Render:
        get, fmt, optional = _getter(self.get), self.fmt, self.optional
        open_, close, empty = f"<{self.tag}>", f"</{self.tag}>", f"<{self.tag} />"

        def render(obj, ctx) -> str:
            value = get(obj)
            if value is None:
                return "" if optional else empty
            text = fmt(value, ctx)
            return open_ + text + close if text else empty

        return render


@dataclass(frozen=True)
class Block:
    """A nested element (``<Client><UUID/><Name/></Client>``), memoised when it repeats a lot."""

    tag: str
    get: str | Callable
    schema: str
    optional: bool = True
    when: Callable | None = None
    memo: bool = False

    def compile(self) -> Render:
        get, optional, schema_name, tag, memo = _getter(self.get), self.optional, self.schema, self.tag, self.memo
        empty = f"<{tag} />"

        def render(obj, ctx) -> str:
            value = get(obj)
            if value is None:
                return "" if optional else empty
            if memo:
                key = (tag, id(value))
                hit = ctx.memo.get(key)
                if hit is None:
                    hit = ctx.memo[key] = SCHEMAS[schema_name].render(value, ctx, tag)
                return hit
            return SCHEMAS[schema_name].render(value, ctx, tag)

        return render


@dataclass(frozen=True)
class List:
    """A wrapper of repeated items; an empty list is the self-closing wrapper."""

    tag: str
    get: str | Callable
    item_tag: str
    schema: str
    when: Callable | None = None
    keep: Callable | None = None  # (item, ctx) -> bool

    def compile(self) -> Render:
        get, keep, item_tag, schema_name = _getter(self.get), self.keep, self.item_tag, self.schema
        open_, close, empty = f"<{self.tag}>", f"</{self.tag}>", f"<{self.tag} />"

        def render(obj, ctx) -> str:
            items = get(obj)
            if keep is not None:
                items = [item for item in items if keep(item, ctx)]
            if not items:
                return empty
            schema = SCHEMAS[schema_name]
            return open_ + "".join(schema.render(item, ctx, item_tag) for item in items) + close

        return render


class Schema:
    def __init__(self, tag: str, parts: list) -> None:
        self.tag = tag
        self.parts = parts
        self._compiled = [(p.when, p.compile()) for p in parts]
        self._plans: dict[tuple, list[Render]] = {}

    def plan(self, ctx: Ctx) -> list[Render]:
        key = (ctx.detailed, ctx.task_filter is not None)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = [r for when, r in self._compiled if when is None or when(ctx)]
        return plan

    def render(self, obj, ctx: Ctx, tag: str | None = None) -> str:
        tag = tag or self.tag
        return f"<{tag}>" + "".join([r(obj, ctx) for r in self.plan(ctx)]) + f"</{tag}>"

    def tags(self) -> list[str]:
        return [p.tag for p in self.parts]


def _visible_tasks(task, ctx) -> bool:
    return ctx.task_filter is None or ctx.task_filter(task)


def _client_groups(client):
    return client.groups


NO_ITEMS: tuple = ()

SCHEMAS: dict[str, Schema] = {}


def _define(name: str, tag: str, parts: list) -> None:
    SCHEMAS[name] = Schema(tag, parts)


_define("ref", "Ref", [El("UUID", "uuid"), El("Name", "name")])
_define("job_ref", "Job", [El("ID", "job_number"), El("Name", "name")])
_define("staff", "Staff", [
    El("UUID", "uuid"), El("Name", "name"), El("Email", "email"), El("Phone", "phone"), El("Mobile", "mobile"),
    El("Address", "address"), El("PayrollCode", "payroll_code"),
])
_define("task_type", "Task", [El("UUID", "uuid"), El("Name", "name"), El("Description", "description")])
_define("group", "Group", [
    El("UUID", "uuid"), El("Name", "name"), El("Taxable", "taxable", f_yesno),
    List("Clients", "members", "Client", "ref", when=DETAILED),
])
_define("contact", "Contact", [
    El("UUID", "uuid"), El("Name", "name"), El("IsDeleted", "is_deleted", f_yesno),
    El("IsPrimary", "is_primary", f_yesno), El("Salutation", "salutation"), El("Addressee", "addressee"),
    El("Mobile", "mobile"), El("Email", "email"), El("Phone", "phone"), El("Position", "position"),
])
_define("client_type", "Type", [
    El("Name", "name"), El("CostMarkup", "cost_markup"), El("PaymentTerm", "payment_term"),
    El("PaymentDay", "payment_day", f_int),
])
_define("note", "Note", [
    El("Title", "title"), El("Text", "text"), El("Folder", "folder"), El("Date", "date", f_datetime),
    El("CreatedBy", "created_by"),
])
_define("client", "Client", [
    El("UUID", "uuid"), El("Name", "name"), El("Title", "title"), El("FirstName", "first_name"),
    El("LastName", "last_name"), El("Email", "email"), El("DateOfBirth", "date_of_birth", f_birth),
    El("Address", "address"), El("City", "city"), El("Region", "region"), El("PostCode", "post_code"),
    El("Country", "country"), El("PostalAddress", "postal_address"), El("PostalCity", "postal_city"),
    El("PostalRegion", "postal_region"), El("PostalPostCode", "postal_post_code"),
    El("PostalCountry", "postal_country"), El("Phone", "phone"), El("Fax", "fax"), El("Website", "website"),
    El("ReferralSource", "referral_source"), El("ExportCode", "export_code"),
    El("IsProspect", "is_prospect", f_yesno), El("IsArchived", "is_archived", f_yesno),
    El("IsDeleted", "is_deleted", f_yesno),
    Block("AccountManager", "account_manager", "ref"), Block("JobManager", "job_manager", "ref"),
    Block("BillingClient", "billing_client", "ref"), Block("Type", "client_type", "client_type"),
    List("Contacts", "contacts", "Contact", "contact"),
    List("Notes", "notes", "Note", "note", when=DETAILED),
    List("Groups", _client_groups, "Group", "ref", when=DETAILED),
    List("Relationships", lambda c: NO_ITEMS, "Relationship", "ref", when=DETAILED),
    El("TaxNumber", "tax_number", f_masked, when=DETAILED), El("CompanyNumber", "company_number", when=DETAILED),
    El("BusinessNumber", "business_number", when=DETAILED),
    El("BusinessStructure", "business_structure", when=DETAILED),
])
_define("job_task", "Task", [
    El("UUID", "uuid"), El("TaskUUID", "task_type.uuid"), El("Name", "name"), El("Label", "label"),
    El("Description", "description"), El("EstimatedMinutes", "estimated_minutes", f_int),
    El("ActualMinutes", "actual_minutes", f_int), El("Completed", "completed", f_bool),
    El("Billable", "billable", f_bool), El("Folder", "folder"),
    El("StartDate", "start_date", f_date, optional=True), El("DueDate", "due_date", f_date, optional=True),
    List("Assigned", "assigned", "Staff", "ref"),
])
_define("job", "Job", [
    El("ID", "job_number"), El("UUID", "uuid"), El("Name", "name"), El("Description", "description"),
    El("ClientOrderNumber", "client_order_number"), El("State", "state_code", f_state), El("Type", "job_type"),
    El("Budget", "budget", f_money), El("StartDate", "start_date", f_date), El("DueDate", "due_date", f_date),
    El("CompletedDate", "completed_date", f_date, optional=True),
    Block("Client", "client", "ref", optional=False), Block("Contact", "contact", "ref"),
    Block("Manager", "manager", "ref"), Block("Partner", "partner", "ref"),
    List("Assigned", "assigned", "Staff", "ref"),
    List("Tasks", "tasks", "Task", "job_task", when=WITH_TASKS, keep=_visible_tasks),
    List("Milestones", lambda j: NO_ITEMS, "Milestone", "ref", when=DETAILED),
    List("Notes", "notes", "Note", "note", when=DETAILED),
])
_define("time", "Time", [
    El("UUID", "uuid"),
    Block("Job", "job", "job_ref", optional=False, memo=True),
    Block("Task", "task", "ref", optional=False, memo=True),
    Block("Staff", "staff", "ref", optional=False, memo=True),
    El("Date", "date", f_date), El("Minutes", "minutes", f_int), El("Note", "note"),
    El("Billable", "billable", f_bool), El("Start", "start", f_hhmm, optional=True),
    El("End", "end", f_hhmm, optional=True), El("InvoiceTaskUUID", "invoice_task_uuid"),
])


# -- documents ---------------------------------------------------------------------------------------

def _open(api_method: str | None) -> str:
    return f'<Response api-method="{api_method}">' if api_method else "<Response>"


def document(parts: Iterable[str], api_method: str | None = None) -> list[bytes]:
    """``<Response><Status>OK</Status>...</Response>`` as byte chunks."""
    return [(_open(api_method) + "<Status>OK</Status>" + "".join(parts) + "</Response>").encode("utf-8")]


def list_document(wrapper: str, schema: str, items: Iterable, ctx: Ctx, *, api_method: str | None = None,
                  after: str = "") -> list[bytes]:
    """A list response rendered in chunks of ``CHUNK_ITEMS`` items (bounded peak memory per chunk)."""
    render = SCHEMAS[schema].render
    chunks = [(_open(api_method) + f"<Status>OK</Status><{wrapper}>").encode("utf-8")]
    batch: list[str] = []
    count = 0
    for item in items:
        batch.append(render(item, ctx))
        count += 1
        if len(batch) >= CHUNK_ITEMS:
            chunks.append("".join(batch).encode("utf-8"))
            batch = []
    if count == 0:
        return [(_open(api_method) + f"<Status>OK</Status><{wrapper} />{after}</Response>").encode("utf-8")]
    chunks.append(("".join(batch) + f"</{wrapper}>{after}</Response>").encode("utf-8"))
    return chunks


def one(schema: str, obj, ctx: Ctx, *, api_method: str | None = None, web_url: str | None = None) -> list[bytes]:
    parts = [f"<WebUrl>{esc(web_url)}</WebUrl>"] if web_url else []
    parts.append(SCHEMAS[schema].render(obj, ctx))
    return document(parts, api_method)


def error_document(message: str) -> list[bytes]:
    return [f"<Response><Status>ERROR</Status><ErrorDescription>{esc(message)}</ErrorDescription></Response>".encode()]


def element(schema: str, obj, ctx: Ctx) -> str:
    return SCHEMAS[schema].render(obj, ctx)
