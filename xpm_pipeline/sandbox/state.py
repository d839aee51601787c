"""The live model: every tenant's objects, their lookup indexes, one lock each, and the edit operations.

API writes (``time.api/add``...) and the admin interface's out-of-band edits ("a person changed this in
XPM") call the same methods here, so both keep the indexes and derived values consistent: a task's
``ActualMinutes`` follows its time entries, a client's modified time moves on client edits (and on
contact edits only when ``contact_edit_bumps_modified``), deleted things vanish from every index.

Callers hold ``tenant.lock`` around a read-render or a check-then-write sequence; the methods do not
lock themselves (one lock per tenant keeps the rules obvious; the lock is re-entrant).
"""

from __future__ import annotations

import random
import threading
from datetime import date, datetime, timezone
from typing import Any, Iterable, Iterator

from xpm_pipeline.sandbox.errors import BadRequest, Conflict, NotFound, Refused
from xpm_pipeline.sandbox.model import (
    Client, Contact, Group, Job, JobTask, Staff, TaskType, TimeEntry, epoch,
)

UTC = timezone.utc

# Interface code -> (display name, whether the state completes the job). Writes take the code, reads
# show the name; no XPM endpoint lists the codes, so the admin interface shows this map per tenant.
BASE_JOB_STATES: dict[str, tuple[str, bool]] = {
    "PLANNED": ("Planned", False),
    "INPROGRESS": ("In Progress", False),
    "ONHOLD": ("On Hold", False),
    "WAITINGONCLIENT": ("Waiting on Client", False),
    "REVIEW": ("Ready for Review", False),
    "COMPLETED": ("Completed", True),
}


def uuid_from(rng: random.Random) -> str:
    """A lowercase version-4 GUID drawn from ``rng`` (seeded, so generated data is reproducible)."""
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC000 << 48) | (0x8000 << 48)
    h = "%032x" % bits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class TenantState:
    """One practice: its objects, indexes and lock."""

    def __init__(self, tenant_id: str, name: str, size: str, seed: int, job_prefix: str,
                 job_states: dict[str, tuple[str, bool]], short_code: str) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.size = size
        self.seed = seed
        self.job_prefix = job_prefix
        self.job_states = dict(job_states)
        self.short_code = short_code  # used in WebUrl, like XPM's per-practice URL segment
        self.created = datetime(2020, 1, 1, tzinfo=UTC)
        self.lock = threading.RLock()
        self.rng = random.Random(f"writes:{seed}")
        self.staff: dict[str, Staff] = {}
        self.task_types: dict[str, TaskType] = {}
        self.clients: dict[str, Client] = {}
        self.contacts: dict[str, Contact] = {}
        self.contact_client: dict[str, Client] = {}
        self.groups: dict[str, Group] = {}
        self.jobs: dict[str, Job] = {}  # by job number, XPM's <ID>
        self.jobs_by_uuid: dict[str, Job] = {}
        self.job_tasks: dict[str, JobTask] = {}
        self.times: dict[str, TimeEntry] = {}
        self.times_by_date: dict[date, list[TimeEntry]] = {}
        self.times_by_created: dict[int, list[TimeEntry]] = {}
        self.next_client_seq = 1
        self.next_job_seq = 1

    # -- pickling (state file): locks do not pickle ------------------------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    # -- small helpers ------------------------------------------------------------------------

    def new_uuid(self) -> str:
        return uuid_from(self.rng)

    def state_name(self, code: str) -> str:
        return self.job_states[code][0]

    def job_is_complete(self, job: Job) -> bool:
        return self.job_states[job.state_code][1]

    def state_code_for(self, text: str) -> str:
        code = text.strip().upper()
        if code not in self.job_states:
            raise Refused(f"Invalid job state '{text.strip()}'")
        return code

    def job(self, number: str) -> Job:
        job = self.jobs.get(number.strip())
        if job is None:
            raise NotFound(f"Unable to find job {number.strip()}")
        return job

    def find(self, table: str, ident: str, label: str):
        found = getattr(self, table).get(ident.strip().lower())
        if found is None:
            raise NotFound(f"Unable to find {label} {ident.strip()}")
        return found

    def counts(self) -> dict[str, int]:
        return {
            "clients": len(self.clients), "contacts": len(self.contacts), "groups": len(self.groups),
            "staff": len(self.staff), "tasks": len(self.task_types), "jobs": len(self.jobs),
            "current_jobs": sum(1 for j in self.jobs.values() if not self.job_is_complete(j)),
            "job_tasks": len(self.job_tasks), "times": len(self.times),
        }

    # -- time index -----------------------------------------------------------------------------

    def index_time(self, entry: TimeEntry) -> None:
        self.times[entry.uuid] = entry
        self.times_by_date.setdefault(entry.date, []).append(entry)
        self.times_by_created.setdefault(entry.created_ordinal, []).append(entry)
        entry.job.times.append(entry)
        entry.task.actual_minutes += entry.minutes

    def unindex_time(self, entry: TimeEntry) -> None:
        del self.times[entry.uuid]
        _remove(self.times_by_date, entry.date, entry)
        _remove(self.times_by_created, entry.created_ordinal, entry)
        entry.job.times.remove(entry)
        entry.task.actual_minutes -= entry.minutes

    def times_between(self, start: date, end: date, *, by_created: bool = False) -> Iterator[TimeEntry]:
        """Entries whose Date (or hidden creation date) is in [start, end], in date then entry order."""
        if by_created:
            index = self.times_by_created
            for ordinal in range(start.toordinal(), end.toordinal() + 1):
                yield from index.get(ordinal, ())
            return
        index_d = self.times_by_date
        for ordinal in range(start.toordinal(), end.toordinal() + 1):
            yield from index_d.get(date.fromordinal(ordinal), ())

    # -- clients ----------------------------------------------------------------------------------

    def _check_name(self, name: str, client: Client | None) -> None:
        if not name.strip():
            raise BadRequest("Client Name is required")
        folded = name.strip().casefold()
        for other in self.clients.values():
            if other is not client and not other.is_deleted and other.name.strip().casefold() == folded:
                raise Conflict(f"A client named '{name.strip()}' already exists")

    def add_client(self, values: dict[str, Any], contacts: Iterable[dict[str, Any]], now: datetime) -> Client:
        self._check_name(values.get("name", ""), None)
        client = Client(seq=self.next_client_seq, uuid=self.new_uuid(), created=now, modified=now)
        self.next_client_seq += 1
        for attr, value in values.items():
            setattr(client, attr, value)
        self.clients[client.uuid] = client
        for contact_values in contacts:
            self.add_contact(client, contact_values, now, bump=False)
        return client

    def update_client(self, client: Client, values: dict[str, Any], now: datetime, *, bump: bool = True) -> Client:
        if "name" in values:
            self._check_name(values["name"], client)
        for attr, value in values.items():
            setattr(client, attr, value)
        if bump:
            client.modified = now
        return client

    def add_contact(self, client: Client, values: dict[str, Any], now: datetime, *, bump: bool) -> Contact:
        contact = Contact(uuid=self.new_uuid())
        client.contacts.append(contact)
        self.contacts[contact.uuid] = contact
        self.contact_client[contact.uuid] = client
        self.update_contact(client, contact, values, now, bump=bump)
        return contact

    def update_contact(self, client: Client, contact: Contact, values: dict[str, Any], now: datetime, *,
                       bump: bool) -> Contact:
        for attr, value in values.items():
            setattr(contact, attr, value)
        if values.get("is_primary"):
            for other in client.contacts:
                if other is not contact:
                    other.is_primary = False
        if bump:
            client.modified = now
        return contact

    def add_group_member(self, group: Group, client: Client) -> Group:
        if client not in group.members:
            group.members.append(client)
            client.groups.append(group)
        return group

    # -- staff ----------------------------------------------------------------------------------

    def add_staff(self, values: dict[str, Any]) -> Staff:
        if not str(values.get("name", "")).strip():
            raise BadRequest("Staff name is required")
        staff = Staff(uuid=self.new_uuid())
        for attr, value in values.items():
            setattr(staff, attr, value)
        self.staff[staff.uuid] = staff
        return staff

    # -- jobs -----------------------------------------------------------------------------------

    def next_job_number(self) -> str:
        while True:
            number = f"{self.job_prefix}{self.next_job_seq:06d}"
            self.next_job_seq += 1
            if number not in self.jobs:
                return number

    def add_job(self, values: dict[str, Any], now: datetime, *, number: str | None = None,
                state_code: str = "PLANNED") -> Job:
        if not str(values.get("name", "")).strip():
            raise BadRequest("Job Name is required")
        if values.get("client") is None:
            raise BadRequest("Job needs a client")
        number = (number or "").strip() or self.next_job_number()
        if number in self.jobs:
            raise Refused(f"Job number {number} is already in use")
        job = Job(uuid=self.new_uuid(), job_number=number, state_code=state_code, created=now,
                  start_date=now.date(), due_date=now.date())
        for attr, value in values.items():
            setattr(job, attr, value)
        self.jobs[number] = job
        self.jobs_by_uuid[job.uuid] = job
        return job

    def update_job(self, job: Job, values: dict[str, Any]) -> Job:
        if "name" in values and not str(values["name"]).strip():
            raise BadRequest("Job Name cannot be empty")
        if "client" in values and values["client"] is None:
            raise BadRequest("A job needs a client")
        for attr, value in values.items():
            setattr(job, attr, value)
        if job.contact is not None and job.contact.uuid not in {c.uuid for c in job.client.contacts}:
            job.contact = None  # a contact belongs to the job's client; a new client drops it
        return job

    def set_job_state(self, job: Job, code: str, now: datetime) -> Job:
        code = self.state_code_for(code)
        job.state_code = code
        if self.job_states[code][1]:
            job.completed_date = job.completed_date or now.date()
        else:
            job.completed_date = None
        return job

    def delete_job(self, job: Job) -> Job:
        """XPM has no deleted flag for jobs: the job, its tasks and its time simply vanish."""
        for entry in list(job.times):
            self.unindex_time(entry)
        for task in job.tasks:
            self.job_tasks.pop(task.uuid, None)
        del self.jobs[job.job_number]
        del self.jobs_by_uuid[job.uuid]
        return job

    def assign(self, job: Job, actions: list[tuple[str, Staff | None, JobTask | None]]) -> Job:
        """``add``/``remove`` staff on the job (or one of its tasks), set/clear manager and partner."""
        for action, staff, task in actions:
            target = task.assigned if task is not None else job.assigned
            if action == "add":
                if staff not in target:
                    target.append(staff)
            elif action == "remove":
                if staff in target:
                    target.remove(staff)
            elif action in ("add-manager", "add-partner"):
                setattr(job, action[4:], staff)
            elif action in ("remove-manager", "remove-partner"):
                setattr(job, action[7:], None)
        return job

    # -- tasks on jobs ------------------------------------------------------------------------------

    def add_job_task(self, job: Job, task_type: TaskType, values: dict[str, Any]) -> JobTask:
        task = JobTask(uuid=self.new_uuid(), job=job, task_type=task_type, name=task_type.name,
                       description=task_type.description)
        self.update_job_task(task, values)
        job.tasks.append(task)
        self.job_tasks[task.uuid] = task
        return task

    def update_job_task(self, task: JobTask, values: dict[str, Any]) -> JobTask:
        if values.get("estimated_minutes") is not None and values["estimated_minutes"] < 0:
            raise Refused("EstimatedMinutes cannot be negative")
        for attr, value in values.items():
            setattr(task, attr, value)
        return task

    def delete_job_task(self, task: JobTask) -> JobTask:
        if task.job.times and any(e.task is task for e in task.job.times):
            raise Refused(f"Task {task.uuid} has time recorded against it and cannot be deleted")
        task.job.tasks.remove(task)
        del self.job_tasks[task.uuid]
        return task

    # -- time ---------------------------------------------------------------------------------------

    def resolve_time_task(self, job: Job, ident: str) -> JobTask:
        """The task a time entry is for: a task-on-job UUID, or a task-list UUID unique on the job."""
        ident = ident.strip().lower()
        task = self.job_tasks.get(ident)
        if task is not None:
            if task.job is not job:
                raise Refused(f"Task {ident} is not on job {job.job_number}")
            return task
        of_type = [t for t in job.tasks if t.task_type is not None and t.task_type.uuid == ident]
        if len(of_type) == 1:
            return of_type[0]
        if of_type:
            raise Refused(f"Job {job.job_number} has several tasks of type {ident}; give the task's own UUID")
        raise NotFound(f"Unable to find task {ident}")

    @staticmethod
    def _duration(values: dict[str, Any], entry: TimeEntry | None) -> tuple[int, int | None, int | None]:
        """Minutes, Start, End after applying ``values``: Start+End wins and sets Minutes."""
        has_start, has_end = values.get("start") is not None, values.get("end") is not None
        if has_start != has_end:
            raise BadRequest("Start and End must be given together")
        if has_start:
            start, end = values["start"], values["end"]
            if end <= start:
                raise Refused("End time must be after Start time")
            if "minutes" in values and values["minutes"] is not None and values["minutes"] != end - start:
                raise BadRequest("Minutes does not match Start and End")
            return end - start, start, end
        if values.get("minutes") is not None:
            return values["minutes"], None, None
        if entry is None:
            raise BadRequest("Minutes, or Start and End, are required")
        return entry.minutes, entry.start, entry.end

    def add_time(self, job: Job, task: JobTask, values: dict[str, Any], now: datetime) -> TimeEntry:
        if values.get("staff") is None:
            raise BadRequest("StaffUUID is required")
        if values.get("date") is None:
            raise BadRequest("Date is required")
        minutes, start, end = self._duration(values, None)
        billable = values.get("billable")
        entry = TimeEntry(
            self.new_uuid(), job, task, values["staff"], values["date"], minutes, values.get("note") or "",
            task.billable if billable is None else billable, start, end, "", epoch(now),
        )
        self.index_time(entry)
        return entry

    def update_time(self, entry: TimeEntry, job: Job | None, task: JobTask | None, values: dict[str, Any]) -> TimeEntry:
        minutes, start, end = self._duration(values, entry)
        if "staff" in values and values["staff"] is None:
            raise BadRequest("StaffUUID cannot be empty")
        if "date" in values and values["date"] is None:
            raise BadRequest("Date cannot be empty")
        self.unindex_time(entry)
        try:
            if job is not None:
                entry.job = job
            if task is not None:
                entry.task = task
            for attr in ("staff", "date", "note", "billable"):
                if attr in values:
                    setattr(entry, attr, values[attr] if attr != "note" else (values[attr] or ""))
            entry.minutes, entry.start, entry.end = minutes, start, end
        finally:
            self.index_time(entry)
        return entry

    def delete_time(self, entry: TimeEntry) -> TimeEntry:
        self.unindex_time(entry)
        return entry


def _remove(index: dict, key, entry) -> None:
    bucket = index.get(key)
    if bucket is None:
        return
    bucket.remove(entry)
    if not bucket:
        del index[key]


class SandboxState:
    """All tenants, by tenant id (in the seeded order ``sb.tenant_ids`` shows)."""

    def __init__(self, tenants: list[TenantState]) -> None:
        self.tenants: dict[str, TenantState] = {t.tenant_id: t for t in tenants}

    def tenant(self, tenant_id: str) -> TenantState:
        return self.tenants[tenant_id]

    def __iter__(self) -> Iterator[TenantState]:
        return iter(self.tenants.values())
