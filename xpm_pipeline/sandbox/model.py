"""The in-memory objects of one practice (tenant): plain slotted classes holding direct references.

Objects point at each other (a time entry holds its ``Job``, ``JobTask`` and ``Staff``), so renaming
a staff member shows up in every time entry at once, exactly as XPM does. ``__slots__`` keeps the
300,000 time entries of the large size at roughly 200 bytes each; dates are shared ``date`` objects.
Attribute names follow the warehouse column names in ``xpm_pipeline.entities`` where one exists, so
the admin interface, the model and the warehouse speak one vocabulary.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class Slotted:
    """Keyword constructor and a readable repr for the small classes (not used for TimeEntry)."""

    __slots__ = ()
    DEFAULTS: dict = {}

    def __init__(self, **values) -> None:
        for name in self.__slots__:
            if name in values:
                setattr(self, name, values.pop(name))
            else:
                default = self.DEFAULTS.get(name, "")
                setattr(self, name, default() if callable(default) else default)
        if values:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(values)}")

    def __repr__(self) -> str:
        ident = getattr(self, "uuid", None) or getattr(self, "job_number", None)
        return f"<{type(self).__name__} {ident} {getattr(self, 'name', '')!r}>"


class Staff(Slotted):
    __slots__ = ("uuid", "name", "email", "phone", "mobile", "address", "payroll_code")


class TaskType(Slotted):
    """An entry of the firm's task list (``task.api/list``): the type of tasks on jobs."""

    __slots__ = ("uuid", "name", "description")


class Contact(Slotted):
    __slots__ = (
        "uuid", "name", "is_primary", "is_deleted", "salutation", "addressee", "mobile", "email", "phone", "position",
    )
    DEFAULTS = {"is_primary": False, "is_deleted": False}


class Note(Slotted):
    __slots__ = ("title", "text", "folder", "date", "created_by")
    DEFAULTS = {"date": None}


class Client(Slotted):
    __slots__ = (
        "seq", "uuid", "name", "title", "first_name", "last_name", "email", "date_of_birth",
        "address", "city", "region", "post_code", "country",
        "postal_address", "postal_city", "postal_region", "postal_post_code", "postal_country",
        "phone", "fax", "website", "referral_source", "export_code",
        "is_prospect", "is_archived", "is_deleted",
        "account_manager", "job_manager", "billing_client", "client_type",
        "tax_number", "company_number", "business_number", "business_structure",
        "contacts", "notes", "groups", "created", "modified",
    )
    DEFAULTS = {
        "seq": 0, "date_of_birth": None, "is_prospect": False, "is_archived": False, "is_deleted": False,
        "account_manager": None, "job_manager": None, "billing_client": None, "client_type": None,
        "contacts": list, "notes": list, "groups": list, "created": None, "modified": None,
    }


class ClientType(Slotted):
    """Billing terms group shown as ``<Type>`` on a client."""

    __slots__ = ("name", "cost_markup", "payment_term", "payment_day")


class Group(Slotted):
    __slots__ = ("uuid", "name", "taxable", "members")
    DEFAULTS = {"taxable": False, "members": list}


class JobTask(Slotted):
    """A task on a job: its own UUID, plus ``task_type`` (its ``<TaskUUID>`` in the task list)."""

    __slots__ = (
        "uuid", "job", "task_type", "name", "label", "description", "estimated_minutes", "actual_minutes",
        "completed", "billable", "folder", "start_date", "due_date", "assigned",
    )
    DEFAULTS = {
        "job": None, "task_type": None, "estimated_minutes": 0, "actual_minutes": 0, "completed": False,
        "billable": True, "start_date": None, "due_date": None, "assigned": list,
    }


class Job(Slotted):
    __slots__ = (
        "uuid", "job_number", "name", "description", "client_order_number", "state_code", "job_type", "budget",
        "start_date", "due_date", "completed_date", "client", "contact", "manager", "partner", "assigned",
        "tasks", "notes", "category", "created", "times",
    )
    DEFAULTS = {
        "state_code": "PLANNED", "budget": Decimal("0.00"), "start_date": None, "due_date": None,
        "completed_date": None, "client": None, "contact": None, "manager": None, "partner": None,
        "assigned": list, "tasks": list, "notes": list, "category": None, "created": None, "times": list,
    }


class TimeEntry:
    """One timesheet line. Positional constructor: the generator builds hundreds of thousands.

    ``start``/``end`` are minutes after midnight, or None when the time was entered as a duration.
    ``created`` is the hidden creation time in epoch seconds (UTC); XPM never shows it, but
    ``time_filter="created"`` filters on it.
    """

    __slots__ = ("uuid", "job", "task", "staff", "date", "minutes", "note", "billable", "start", "end",
                 "invoice_task_uuid", "created")

    def __init__(self, uuid, job, task, staff, date_, minutes, note, billable, start, end, invoice_task_uuid, created):
        self.uuid = uuid
        self.job = job
        self.task = task
        self.staff = staff
        self.date = date_
        self.minutes = minutes
        self.note = note
        self.billable = billable
        self.start = start
        self.end = end
        self.invoice_task_uuid = invoice_task_uuid
        self.created = created

    @property
    def created_ordinal(self) -> int:
        return self.created // 86400 + EPOCH_ORDINAL

    def __repr__(self) -> str:
        return f"<TimeEntry {self.uuid} {self.job.job_number} {self.date} {self.minutes}>"


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())
