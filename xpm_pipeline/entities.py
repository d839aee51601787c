"""The one declaration of every XPM entity the pipeline reads or writes.

Parsing (``xpm.parse``), the API client's read and write calls, the warehouse DDL, the Dagster assets
and the checks are all driven from ``ENTITIES`` and ``WRITES``. Adding a column means adding one
``Column`` line here; nothing else holds a per-entity list of fields.

Paths are XPM element paths relative to the entity's own element (``Job/ID`` inside ``<Time>``).
Child entities (tasks on a job, contacts of a client, members of a group) are declared with
``Nested``: they are parsed from inside their parent's element and inherit its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class ColumnType(str, Enum):
    """Warehouse types. XPM sends everything as text; these say how to read it."""

    TEXT = "text"
    UUID = "uuid"  # lowercase GUID text
    INT = "int"  # minutes and other counts; may be negative
    MONEY = "money"  # decimal with 2 places
    DATE = "date"  # XPM sends yyyy-MM-ddT00:00:00; only the calendar date is meaningful
    DATETIME = "datetime"  # practice-local, no offset
    BOOL = "bool"  # true/false (jobs, tasks, time)
    YESNO = "yesno"  # Yes/No (client flags, contact flags, group Taxable)


@dataclass(frozen=True)
class Column:
    name: str
    path: str
    type: ColumnType
    doc: str
    key: bool = False
    required: bool = False


@dataclass(frozen=True)
class Nested:
    """Where a child entity lives inside its parent's XML, and which parent columns it inherits."""

    parent: str
    path: str  # e.g. "Tasks/Task", relative to the parent element
    inherit: tuple[tuple[str, str], ...]  # (child column, parent column)


@dataclass(frozen=True)
class Entity:
    name: str
    table: str
    element: str  # the repeated element: <Client>, <Time>
    list_element: str | None  # its wrapper in list responses: <Clients>, <Times>
    columns: tuple[Column, ...]
    doc: str
    list_path: str | None = None  # e.g. "client.api/list"
    get_path: str | None = None  # e.g. "client.api/get/{key}"
    nested: Nested | None = None
    range_required: bool = False  # the list call needs from/to (<= 1 year)
    deleted_flag: str | None = None  # a column XPM sets when the thing is deleted (soft delete from the flag)
    # (column, value) marking a row finished rather than live, e.g. a job whose state is Completed: the
    # removal guard counts a sync's "mark Completed" against the rows not yet finished.
    completed_when: tuple[str, object] | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")


T = ColumnType


def _c(name: str, path: str, type_: ColumnType, doc: str, **kw) -> Column:
    return Column(name, path, type_, doc, **kw)


def _uuid_key(doc: str) -> Column:
    return _c("uuid", "UUID", T.UUID, doc, key=True, required=True)


CLIENT = Entity(
    name="client",
    table="xpm_clients",
    element="Client",
    list_element="Clients",
    list_path="client.api/list",
    get_path="client.api/get/{key}",
    deleted_flag="is_deleted",
    doc="Clients of the practice, including archived and deleted ones (flagged, never dropped).",
    columns=(
        _uuid_key("XPM client UUID."),
        _c("name", "Name", T.TEXT, "Client name as shown in XPM.", required=True),
        _c("title", "Title", T.TEXT, "Salutation of an individual client."),
        _c("first_name", "FirstName", T.TEXT, "First name of an individual client."),
        _c("last_name", "LastName", T.TEXT, "Last name of an individual client."),
        _c("email", "Email", T.TEXT, "Main email address."),
        _c("date_of_birth", "DateOfBirth", T.DATE, "Date of birth of an individual client."),
        _c("address", "Address", T.TEXT, "Street address."),
        _c("city", "City", T.TEXT, "Street address city."),
        _c("region", "Region", T.TEXT, "Street address region or state."),
        _c("post_code", "PostCode", T.TEXT, "Street address post code."),
        _c("country", "Country", T.TEXT, "Street address country."),
        _c("postal_address", "PostalAddress", T.TEXT, "Postal address."),
        _c("postal_city", "PostalCity", T.TEXT, "Postal address city."),
        _c("postal_region", "PostalRegion", T.TEXT, "Postal address region or state."),
        _c("postal_post_code", "PostalPostCode", T.TEXT, "Postal address post code."),
        _c("postal_country", "PostalCountry", T.TEXT, "Postal address country."),
        _c("phone", "Phone", T.TEXT, "Main phone number."),
        _c("fax", "Fax", T.TEXT, "Fax number."),
        _c("website", "Website", T.TEXT, "Website (XPM reads <Website>, writes <WebSite>)."),
        _c("referral_source", "ReferralSource", T.TEXT, "How the client found the practice."),
        _c("export_code", "ExportCode", T.TEXT, "Code used when exporting to accounting software."),
        _c("is_prospect", "IsProspect", T.YESNO, "True for a prospect rather than a client."),
        _c("is_archived", "IsArchived", T.YESNO, "True when archived in XPM."),
        _c("is_deleted", "IsDeleted", T.YESNO, "True when deleted in XPM (kept, soft-deleted here)."),
        _c("account_manager_uuid", "AccountManager/UUID", T.UUID, "Staff UUID of the account manager."),
        _c("job_manager_uuid", "JobManager/UUID", T.UUID, "Staff UUID of the default job manager."),
        _c("billing_client_uuid", "BillingClient/UUID", T.UUID, "Client UUID invoices are billed to."),
        _c("client_type", "Type/Name", T.TEXT, "Client type (billing terms group)."),
        _c("tax_number", "TaxNumber", T.TEXT, "Tax number as XPM returns it (masked, e.g. ******123)."),
        _c("company_number", "CompanyNumber", T.TEXT, "Company registration number."),
        _c("business_number", "BusinessNumber", T.TEXT, "Business number (e.g. ABN, NZBN)."),
        _c("business_structure", "BusinessStructure", T.TEXT, "Legal structure of the business."),
    ),
)

CLIENT_CONTACT = Entity(
    name="client_contact",
    table="xpm_client_contacts",
    element="Contact",
    list_element="Contacts",
    nested=Nested(parent="client", path="Contacts/Contact", inherit=(("client_uuid", "uuid"),)),
    deleted_flag="is_deleted",
    doc="Contacts of each client (XPM may not flag a client modified when only a contact changes).",
    columns=(
        _uuid_key("XPM contact UUID."),
        _c("client_uuid", "", T.UUID, "Client this contact belongs to.", required=True),
        _c("name", "Name", T.TEXT, "Contact name."),
        _c("is_primary", "IsPrimary", T.YESNO, "True for the client's primary contact."),
        _c("is_deleted", "IsDeleted", T.YESNO, "True when the contact is deleted in XPM."),
        _c("salutation", "Salutation", T.TEXT, "How to address the contact."),
        _c("addressee", "Addressee", T.TEXT, "Name used on correspondence."),
        _c("mobile", "Mobile", T.TEXT, "Mobile phone."),
        _c("email", "Email", T.TEXT, "Email address."),
        _c("phone", "Phone", T.TEXT, "Phone."),
        _c("position", "Position", T.TEXT, "Role at the client."),
    ),
)

CLIENT_GROUP = Entity(
    name="client_group",
    table="xpm_client_groups",
    element="Group",
    list_element="Groups",
    list_path="clientgroup.api/list",
    get_path="clientgroup.api/get/{key}",
    doc="Client groups (families, related entities).",
    columns=(
        _uuid_key("XPM client group UUID."),
        _c("name", "Name", T.TEXT, "Group name.", required=True),
        _c("taxable", "Taxable", T.YESNO, "Whether the group is taxable (practice-management module)."),
    ),
)

CLIENT_GROUP_MEMBER = Entity(
    name="client_group_member",
    table="xpm_client_group_members",
    element="Client",
    list_element="Clients",
    nested=Nested(parent="client_group", path="Clients/Client", inherit=(("group_uuid", "uuid"),)),
    doc="Which clients belong to which client group (from clientgroup.api/get).",
    columns=(
        _c("group_uuid", "", T.UUID, "Client group UUID.", key=True, required=True),
        _c("client_uuid", "UUID", T.UUID, "Member client UUID.", key=True, required=True),
    ),
)

STAFF = Entity(
    name="staff",
    table="xpm_staff",
    element="Staff",
    list_element="StaffList",
    list_path="staff.api/list",
    get_path="staff.api/get/{key}",
    doc="Staff members of the practice.",
    columns=(
        _uuid_key("XPM staff UUID."),
        _c("name", "Name", T.TEXT, "Staff member's name.", required=True),
        _c("email", "Email", T.TEXT, "Work email."),
        _c("phone", "Phone", T.TEXT, "Phone."),
        _c("mobile", "Mobile", T.TEXT, "Mobile phone."),
        _c("address", "Address", T.TEXT, "Postal address."),
        _c("payroll_code", "PayrollCode", T.TEXT, "Payroll code."),
    ),
)

JOB = Entity(
    name="job",
    table="xpm_jobs",
    element="Job",
    list_element="Jobs",
    list_path="job.api/current",
    get_path="job.api/get/{key}",
    completed_when=("state", "Completed"),
    doc="Jobs. Active ones come from job.api/current; a job missing from it is marked Completed here.",
    columns=(
        _uuid_key("XPM job UUID."),
        _c("job_number", "ID", T.TEXT, "Job number, XPM's <ID> (used in paths and time entries).", required=True),
        _c("name", "Name", T.TEXT, "Job name.", required=True),
        _c("description", "Description", T.TEXT, "Job description."),
        _c("client_order_number", "ClientOrderNumber", T.TEXT, "Client's order number."),
        _c("state", "State", T.TEXT, "Job state display name (Completed when missing from the active list)."),
        _c("job_type", "Type", T.TEXT, "Job type."),
        _c("budget", "Budget", T.MONEY, "Job budget."),
        _c("start_date", "StartDate", T.DATE, "Start date."),
        _c("due_date", "DueDate", T.DATE, "Due date."),
        _c("completed_date", "CompletedDate", T.DATE, "Completion date, when completed."),
        _c("client_uuid", "Client/UUID", T.UUID, "Client the job is for."),
        _c("contact_uuid", "Contact/UUID", T.UUID, "Client contact for the job."),
        _c("manager_uuid", "Manager/UUID", T.UUID, "Staff UUID of the job manager."),
        _c("partner_uuid", "Partner/UUID", T.UUID, "Staff UUID of the job partner."),
    ),
)

JOB_TASK = Entity(
    name="job_task",
    table="xpm_job_tasks",
    element="Task",
    list_element="Tasks",
    nested=Nested(parent="job", path="Tasks/Task", inherit=(("job_uuid", "uuid"), ("job_number", "job_number"))),
    completed_when=("completed", True),
    doc="Tasks on jobs: each has its own UUID and a task_uuid naming its type in the task list.",
    columns=(
        _uuid_key("UUID of this task on this job."),
        _c("job_uuid", "", T.UUID, "Job the task belongs to.", required=True),
        _c("job_number", "", T.TEXT, "Job number of the job the task belongs to."),
        _c("task_uuid", "TaskUUID", T.UUID, "Task type, a UUID in the firm's task list (xpm_tasks)."),
        _c("name", "Name", T.TEXT, "Task name."),
        _c("label", "Label", T.TEXT, "Label distinguishing repeated tasks of one type on a job."),
        _c("description", "Description", T.TEXT, "Task description."),
        _c("estimated_minutes", "EstimatedMinutes", T.INT, "Estimated minutes."),
        _c("actual_minutes", "ActualMinutes", T.INT, "Minutes recorded against the task."),
        _c("completed", "Completed", T.BOOL, "Whether the task is completed."),
        _c("billable", "Billable", T.BOOL, "Whether time on the task is billable."),
        _c("folder", "Folder", T.TEXT, "Folder the task is filed under."),
        _c("start_date", "StartDate", T.DATE, "Task start date, when set."),
        _c("due_date", "DueDate", T.DATE, "Task due date, when set."),
    ),
)

TASK = Entity(
    name="task",
    table="xpm_tasks",
    element="Task",
    list_element="TaskList",
    list_path="task.api/list",
    get_path="task.api/get/{key}",
    doc="The firm's task list: the task types jobs are built from.",
    columns=(
        _uuid_key("XPM task-list UUID."),
        _c("name", "Name", T.TEXT, "Task name.", required=True),
        _c("description", "Description", T.TEXT, "Task description."),
    ),
)

TIMESHEET = Entity(
    name="timesheet",
    table="xpm_timesheets",
    element="Time",
    list_element="Times",
    list_path="time.api/list",
    get_path="time.api/get/{key}",
    range_required=True,
    doc="Time entries. XPM has no modified date or deleted flag for them: the nightly sync compares.",
    columns=(
        _uuid_key("XPM time entry UUID."),
        _c("job_number", "Job/ID", T.TEXT, "Job number the time was recorded against.", required=True),
        _c("task_uuid", "Task/UUID", T.UUID, "Task on the job (xpm_job_tasks.uuid) the time is for."),
        _c("task_name", "Task/Name", T.TEXT, "Task name as XPM returned it with the entry."),
        _c("staff_uuid", "Staff/UUID", T.UUID, "Staff member who recorded the time.", required=True),
        _c("entry_date", "Date", T.DATE, "Calendar date the time is for.", required=True),
        _c("minutes", "Minutes", T.INT, "Duration in minutes (may be negative).", required=True),
        _c("note", "Note", T.TEXT, "Note on the entry."),
        _c("billable", "Billable", T.BOOL, "Whether the time is billable."),
        _c("start_time", "Start", T.TEXT, "Start time HH:MM, when entered as a range."),
        _c("end_time", "End", T.TEXT, "End time HH:MM, when entered as a range."),
        _c("invoice_task_uuid", "InvoiceTaskUUID", T.UUID, "Invoice task the time was billed on."),
    ),
)

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (CLIENT, CLIENT_CONTACT, CLIENT_GROUP, CLIENT_GROUP_MEMBER, STAFF, JOB, JOB_TASK, TASK, TIMESHEET)
}


def children_of(parent: str) -> tuple[Entity, ...]:
    return tuple(e for e in ENTITIES.values() if e.nested and e.nested.parent == parent)


# --- Writes (export) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteField:
    """One element of a write body, in the order XPM documents it."""

    name: str  # XPM element name in the request body (may differ from the read name)
    kind: str = "text"  # text | int | date (sent as YYYYMMDD) | money | time (HH:MM)
    required: bool = False
    column: str | None = None  # warehouse column of the op's target holding this value, when the
    # read path differs from ``name`` (``WebSite`` is read as ``Website``); None: the column whose path is ``name``


@dataclass(frozen=True)
class WriteOp:
    name: str
    method: str  # POST | PUT | DELETE
    path: str  # may hold {key}
    body_element: str | None  # None: no body
    fields: tuple[WriteField, ...] = ()
    response_element: str | None = None  # the element holding the result (new UUID, full object)
    creates: bool = False  # not idempotent: unclear outcomes must be reconciled before a re-send
    entity: str | None = None  # the entity the response describes
    one_of: tuple[tuple[str, ...], ...] = field(default=())  # alternatives, e.g. Minutes or Start+End
    target: str | None = None  # the entity the op changes (read back to reconcile); default ``entity``

    @property
    def target_entity(self) -> str | None:
        return self.target or self.entity


W = WriteField

_TIME_FIELDS = (
    W("Job", required=True, column="job_number"),
    W("TaskUUID", required=True, column="task_uuid"),
    W("StaffUUID", required=True, column="staff_uuid"),
    W("Date", "date", required=True, column="entry_date"),
    W("Minutes", "int"),
    W("Start", "time", column="start_time"),
    W("End", "time", column="end_time"),
    W("Note"),
)
_JOB_TASK_FIELDS = (
    W("Label"),
    W("Description"),
    W("EstimatedMinutes", "int"),
    W("StartDate", "date"),
    W("DueDate", "date"),
)
_CLIENT_FIELDS = (
    W("Name"),
    W("Title"),
    W("FirstName"),
    W("LastName"),
    W("Email"),
    W("Address"),
    W("City"),
    W("Region"),
    W("PostCode"),
    W("Country"),
    W("PostalAddress"),
    W("PostalCity"),
    W("PostalRegion"),
    W("PostalPostCode"),
    W("PostalCountry"),
    W("Phone"),
    W("Fax"),
    W("WebSite", column="website"),
    W("ReferralSource"),
    W("ExportCode"),
    W("IsProspect"),
    W("AccountManagerUUID", column="account_manager_uuid"),
    W("JobManagerUUID", column="job_manager_uuid"),
    W("BillingClientUUID", column="billing_client_uuid"),
)

WRITES: dict[str, WriteOp] = {
    op.name: op
    for op in (
        WriteOp(
            "time_add", "POST", "time.api/add", "Timesheet", _TIME_FIELDS, "Time", creates=True,
            entity="timesheet", one_of=(("Minutes",), ("Start", "End")),
        ),
        WriteOp(
            "time_update", "PUT", "time.api/update", "Timesheet", (W("UUID", required=True),) + _TIME_FIELDS,
            "Time", entity="timesheet", one_of=(("Minutes",), ("Start", "End")),
        ),
        WriteOp("time_delete", "DELETE", "time.api/delete/{key}", None, target="timesheet"),
        WriteOp(
            "job_update", "PUT", "job.api/update", "Job",
            (
                W("ID", required=True, column="job_number"), W("Name"), W("Description"), W("StartDate", "date"),
                W("DueDate", "date"), W("ClientNumber", column="client_uuid"), W("CategoryID"), W("Budget", "money"),
            ),
            "Job", entity="job",
        ),
        WriteOp(
            "job_state", "PUT", "job.api/state", "Job",
            (W("ID", required=True, column="job_number"), W("UUID"), W("State", required=True)), "Job", entity="job",
        ),
        WriteOp(
            "job_task_add", "POST", "job.api/task", "Task",
            (
                W("Job", required=True, column="job_number"), W("TaskUUID", required=True, column="task_uuid"),
                W("EstimatedMinutes", "int", required=True),
            )
            + _JOB_TASK_FIELDS[:2] + _JOB_TASK_FIELDS[3:],
            "ID", creates=True, target="job_task",
        ),
        WriteOp(
            "job_task_update", "PUT", "job.api/task", "Task", (W("UUID", required=True),) + _JOB_TASK_FIELDS,
            target="job_task",
        ),
        WriteOp("job_task_complete", "PUT", "job.api/task/{key}/complete", None, target="job_task"),
        WriteOp("job_task_reopen", "PUT", "job.api/task/{key}/reopen", None, target="job_task"),
        WriteOp(
            "client_add", "POST", "client.api/add", "Client", (W("Name", required=True),) + _CLIENT_FIELDS[1:],
            "Client", creates=True, entity="client",
        ),
        WriteOp(
            "client_update", "PUT", "client.api/update", "Client", (W("UUID", required=True),) + _CLIENT_FIELDS,
            "Client", entity="client",
        ),
    )
}


def write_column(op: WriteOp, name: str) -> Column | None:
    """The warehouse column of ``op``'s target that a write field sets, or None when none holds it
    (``CategoryID``): used to read a write back from XPM and to show pending edits in the warehouse."""
    target = op.target_entity
    if target is None:
        return None
    entity = ENTITIES[target]
    spec = next((f for f in op.fields if f.name == name), None)
    if spec is None:
        raise KeyError(f"{op.name} has no field {name!r}")
    if spec.column is not None:
        return entity.column(spec.column)
    return next((c for c in entity.columns if c.path == name), None)
