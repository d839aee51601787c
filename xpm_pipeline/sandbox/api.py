"""The XPM 3.1 endpoints: one route table, one small handler per call, all under the tenant's lock.

Handlers get a ``Call`` (tenant state, query parameters with case-insensitive names, body, the
sandbox's "now") and return ``(status, chunks)``; raising an ``errors.XpmError`` produces the
``<Status>ERROR</Status>`` document with that error's HTTP status (the rule is in ``errors``).
Writes go through ``state.TenantState`` methods, the same ones the admin interface uses.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable
from urllib.parse import unquote

from xpm_pipeline.sandbox import render as R
from xpm_pipeline.sandbox.bodies import parse_body, require, scalars
from xpm_pipeline.sandbox.errors import BadRequest, MethodNotAllowed, NotFound, Refused, UnknownEndpoint
from xpm_pipeline.sandbox.fields import (
    CLIENT_FIELDS, CONTACT_FIELDS, JOB_ADD_FIELDS, JOB_FIELDS, JOB_TASK_FIELDS, TIME_FIELDS, Resolver,
    parse_fields, parse_ymd,
)
from xpm_pipeline.sandbox.render import Ctx

UTC = timezone.utc
MAX_RANGE_DAYS = 365
Chunks = list[bytes]


@dataclass
class Call:
    method: str
    path: str  # relative to the API base, e.g. "time.api/list"
    args: list[str]  # path placeholders, in order
    params: dict[str, str]  # query parameters, names lower-cased
    body: bytes
    tenant: object  # state.TenantState
    now: datetime
    config: object  # SandboxConfig

    @property
    def resolve(self) -> Resolver:
        return Resolver(self.tenant)

    def flag(self, name: str) -> bool:
        return self.params.get(name, "").strip().lower() == "true"

    def ctx(self, **kw) -> Ctx:
        return Ctx(self.tenant, **kw)

    def web_url(self, kind: str, ident: str) -> str:
        return f"{self.config.web_url.rstrip('/')}/{self.tenant.short_code}/{kind}/{ident}"


# -- parameters ---------------------------------------------------------------------------------------

def _date_param(call: Call, name: str) -> date:
    raw = call.params.get(name)
    if raw is None or not raw.strip():
        raise BadRequest(f"The '{name}' parameter is required (YYYYMMDD)")
    try:
        return parse_ymd(raw)
    except ValueError:
        raise BadRequest(f"The '{name}' parameter must be a date in YYYYMMDD format, got '{raw}'") from None


def date_range(call: Call, *, required: bool = True) -> tuple[date, date] | None:
    """``from``/``to`` (inclusive, YYYYMMDD, at most 365 days apart) or a 400."""
    if not required and "from" not in call.params and "to" not in call.params:
        return None
    start, end = _date_param(call, "from"), _date_param(call, "to")
    if end < start:
        raise BadRequest("The 'to' date must not be before the 'from' date")
    if (end - start).days > MAX_RANGE_DAYS:
        raise BadRequest(f"The date range cannot be more than one year ({MAX_RANGE_DAYS} days)")
    return start, end


def _optional_date(call: Call, name: str) -> date | None:
    return _date_param(call, name) if call.params.get(name, "").strip() else None


def _modified_since(call: Call) -> datetime | None:
    raw = call.params.get("modifiedsince", "").strip()
    if not raw:
        return None
    try:
        moment = datetime.strptime(raw, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise BadRequest(f"modifiedsince must be yyyy-MM-ddTHH:mm:ss (UTC), got '{raw}'") from None
    return moment.replace(tzinfo=UTC)


# -- clients ------------------------------------------------------------------------------------------

def client_list(call: Call) -> Chunks:
    since = _modified_since(call)
    clients = [c for c in call.tenant.clients.values() if since is None or c.modified >= since]
    return R.list_document("Clients", "client", clients, call.ctx(detailed=call.flag("detailed")), api_method="List")


PAGE_PREFIX = "sbx1:"


def _page_token(after_seq: int) -> str:
    return base64.urlsafe_b64encode(f"{PAGE_PREFIX}{after_seq}".encode()).decode().rstrip("=")


def _page_after(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith(PAGE_PREFIX):
            raise ValueError
        return int(text[len(PAGE_PREFIX):])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("Invalid pageToken") from None


def client_paged_list(call: Call) -> Chunks:
    """Live clients only (no archived or deleted), keyset-paged on creation order."""
    raw_size = call.params.get("pagesize", "50").strip() or "50"
    if not raw_size.isdigit() or not 1 <= int(raw_size) <= 500:
        raise BadRequest("pageSize must be between 1 and 500")
    size = int(raw_size)
    token = call.params.get("pagetoken", "").strip()
    after = _page_after(token) if token else 0
    live = [c for c in call.tenant.clients.values() if not c.is_archived and not c.is_deleted and c.seq > after]
    page, more = live[:size], len(live) > size
    next_token = R.esc(_page_token(page[-1].seq)) if more else ""
    links = (f"<Pagination><Links><First>{_page_token(0)}</First>"
             + (f"<Next>{next_token}</Next>" if next_token else "<Next />") + "</Links></Pagination>")
    return R.list_document("Clients", "client", page, call.ctx(), api_method="PagedList", after=links)


def client_get(call: Call) -> Chunks:
    client = call.tenant.find("clients", call.args[0], "client")
    return R.one("client", client, call.ctx(detailed=True, single=True), api_method="Get",
                 web_url=call.web_url("client", client.uuid))


def client_search(call: Call) -> Chunks:
    query = call.params.get("query", "").strip()
    if not query:
        raise BadRequest("The 'query' parameter is required")
    folded = query.casefold()
    found = [c for c in call.tenant.clients.values() if not c.is_deleted and folded in c.name.casefold()]
    return R.list_document("Clients", "client", found, call.ctx(), api_method="Search")


def _contacts_of(element) -> list[dict]:
    wrapper = element.find("Contacts")
    return [] if wrapper is None else [scalars(c) for c in wrapper.findall("Contact")]


def client_add(call: Call) -> Chunks:
    element = parse_body(call.body, "Client")
    values = scalars(element)
    require(values, "Name")
    fields = parse_fields(CLIENT_FIELDS, values, xml=True, resolve=call.resolve)
    contacts = []
    for raw in _contacts_of(element):
        require(raw, "Name")
        contacts.append(parse_fields(CONTACT_FIELDS, raw, xml=True, resolve=call.resolve))
    client = call.tenant.add_client(fields, contacts, call.now)
    return R.one("client", client, call.ctx(detailed=True, single=True), api_method="Add")


def client_update(call: Call) -> Chunks:
    """Omitted elements keep their value; ``<Contacts>`` is ignored (XPM edits contacts elsewhere)."""
    element = parse_body(call.body, "Client")
    values = scalars(element)
    require(values, "UUID")
    client = call.tenant.find("clients", values["UUID"], "client")
    fields = parse_fields(CLIENT_FIELDS, values, xml=True, resolve=call.resolve)
    call.tenant.update_client(client, fields, call.now)
    return R.one("client", client, call.ctx(detailed=True, single=True), api_method="Update")


# -- groups, staff, task list ---------------------------------------------------------------------------

def group_list(call: Call) -> Chunks:
    return R.list_document("Groups", "group", call.tenant.groups.values(), call.ctx(), api_method="List")


def group_get(call: Call) -> Chunks:
    group = call.tenant.find("groups", call.args[0], "client group")
    return R.one("group", group, call.ctx(detailed=True), api_method="Get")


def staff_list(call: Call) -> Chunks:
    return R.list_document("StaffList", "staff", call.tenant.staff.values(), call.ctx(), api_method="List")


def staff_get(call: Call) -> Chunks:
    return R.one("staff", call.tenant.find("staff", call.args[0], "staff"), call.ctx(), api_method="Get")


def task_list(call: Call) -> Chunks:
    return R.list_document("TaskList", "task_type", call.tenant.task_types.values(), call.ctx(), api_method="List")


def task_get(call: Call) -> Chunks:
    return R.one("task_type", call.tenant.find("task_types", call.args[0], "task"), call.ctx(), api_method="Get")


# -- jobs -----------------------------------------------------------------------------------------------

def _current(call: Call) -> list:
    tenant = call.tenant
    return [j for j in tenant.jobs.values() if not tenant.job_is_complete(j)]


def job_current(call: Call) -> Chunks:
    return R.list_document("Jobs", "job", _current(call), call.ctx(detailed=call.flag("detailed")),
                           api_method="Current")


def job_list(call: Call) -> Chunks:
    """Jobs *created* in [from, to] (their hidden creation time, UTC date), completed ones included."""
    start, end = date_range(call)
    jobs = [j for j in call.tenant.jobs.values() if start <= j.created.astimezone(UTC).date() <= end]
    return R.list_document("Jobs", "job", jobs, call.ctx(detailed=call.flag("detailed")), api_method="List")


def _detailed_job(call: Call, job, api_method: str, web: bool = False) -> Chunks:
    return R.one("job", job, call.ctx(detailed=True), api_method=api_method,
                 web_url=call.web_url("job", job.job_number) if web else None)


def job_get(call: Call) -> Chunks:
    return _detailed_job(call, call.tenant.job(call.args[0]), "Get", web=True)


def job_tasks(call: Call) -> Chunks:
    """Current jobs with the tasks that pass ``complete``/``due`` (on or before)/``start`` (on or after)."""
    raw_complete = call.params.get("complete", "").strip().lower()
    if raw_complete not in ("", "true", "false"):
        raise BadRequest("complete must be true or false")
    due, start = _optional_date(call, "due"), _optional_date(call, "start")

    def keep(task) -> bool:
        if raw_complete and task.completed != (raw_complete == "true"):
            return False
        if due is not None and (task.due_date is None or task.due_date > due):
            return False
        if start is not None and (task.start_date is None or task.start_date < start):
            return False
        return True

    jobs = [j for j in _current(call) if any(keep(t) for t in j.tasks)]
    return R.list_document("Jobs", "job", jobs, call.ctx(task_filter=keep), api_method="Tasks")


def _job_from_body(call: Call, values: dict[str, str]):
    if values.get("ID", "").strip():
        job = call.tenant.job(values["ID"])
        if values.get("UUID", "").strip() and values["UUID"].strip().lower() != job.uuid:
            raise Refused(f"UUID {values['UUID'].strip()} does not belong to job {job.job_number}")
        return job
    if values.get("UUID", "").strip():
        job = call.tenant.jobs_by_uuid.get(values["UUID"].strip().lower())
        if job is None:
            raise NotFound(f"Unable to find job {values['UUID'].strip()}")
        return job
    raise BadRequest("ID is required")


def job_add(call: Call) -> Chunks:
    values = scalars(parse_body(call.body, "Job"))
    require(values, "Name", "ClientUUID", "StartDate", "DueDate")
    fields = parse_fields(JOB_ADD_FIELDS, values, xml=True, resolve=call.resolve)
    job = call.tenant.add_job(fields, call.now, number=values.get("ID"))
    return _detailed_job(call, job, "Add")


def job_update(call: Call) -> Chunks:
    values = scalars(parse_body(call.body, "Job"))
    job = _job_from_body(call, values)
    call.tenant.update_job(job, parse_fields(JOB_FIELDS, values, xml=True, resolve=call.resolve))
    return _detailed_job(call, job, "Update")


def job_state(call: Call) -> Chunks:
    """``<State>`` is the interface code (``COMPLETED``); reads show the display name."""
    values = scalars(parse_body(call.body, "Job"))
    job = _job_from_body(call, values)
    require(values, "State")
    call.tenant.set_job_state(job, values["State"], call.now)
    return _detailed_job(call, job, "State")


ASSIGN_ACTIONS = ("add", "remove", "add-manager", "add-partner", "remove-manager", "remove-partner")


def job_assign(call: Call) -> Chunks:
    element = parse_body(call.body, "Job")
    job = _job_from_body(call, scalars(element))
    actions = []
    for child in element:
        if child.tag in ("ID", "UUID") or not isinstance(child.tag, str):
            continue
        if child.tag not in ASSIGN_ACTIONS:
            raise BadRequest(f"Unknown assign element <{child.tag}>")
        staff = None
        if child.tag in ("add", "remove", "add-manager", "add-partner"):
            if not child.get("uuid"):
                raise BadRequest(f"<{child.tag}> needs a uuid attribute")
            staff = call.resolve("staff", child.get("uuid"))
        task = None
        if child.get("task-uuid"):
            task = call.tenant.job_tasks.get(child.get("task-uuid").strip().lower())
            if task is None or task.job is not job:
                raise NotFound(f"Unable to find task {child.get('task-uuid')} on job {job.job_number}")
        actions.append((child.tag, staff, task))
    call.tenant.assign(job, actions)
    return _detailed_job(call, job, "Assign")


def job_delete(call: Call) -> Chunks:
    values = scalars(parse_body(call.body, "Job"))
    call.tenant.delete_job(_job_from_body(call, values))
    return R.document([], "Delete")


def _task_id_reply(task, api_method: str) -> Chunks:
    """XPM documents only "status + uuid": the sandbox answers ``<Response><Status>OK</Status><ID>uuid</ID>``."""
    return R.document([f"<ID>{task.uuid}</ID>"], api_method)


def job_task_add(call: Call) -> Chunks:
    values = scalars(parse_body(call.body, "Task"))
    require(values, "Job", "TaskUUID", "EstimatedMinutes")
    job = call.tenant.job(values["Job"])
    task_type = call.resolve("task_type", values["TaskUUID"])
    fields = parse_fields(JOB_TASK_FIELDS, values, xml=True, resolve=call.resolve)
    return _task_id_reply(call.tenant.add_job_task(job, task_type, fields), "Task")


def _job_task(call: Call, ident: str):
    task = call.tenant.job_tasks.get(ident.strip().lower())
    if task is None:
        raise NotFound(f"Unable to find task {ident.strip()}")
    return task


def job_task_update(call: Call) -> Chunks:
    """The task-on-job id is read from ``<UUID>`` (also ``<uuid>``, the spec's spelling)."""
    values = scalars(parse_body(call.body, "Task"))
    ident = values.get("UUID") or values.get("uuid") or ""
    if not ident.strip():
        raise BadRequest("UUID is required")
    task = _job_task(call, ident)
    call.tenant.update_job_task(task, parse_fields(JOB_TASK_FIELDS, values, xml=True, resolve=call.resolve))
    return _task_id_reply(task, "Task")


def job_task_complete(call: Call) -> Chunks:
    _job_task(call, call.args[0]).completed = True
    return R.document([], "Complete")


def job_task_reopen(call: Call) -> Chunks:
    _job_task(call, call.args[0]).completed = False
    return R.document([], "Reopen")


# -- time -----------------------------------------------------------------------------------------------

def _times(call: Call, entries) -> Chunks:
    return R.list_document("Times", "time", entries, call.ctx(), api_method="List")


def time_list(call: Call) -> Chunks:
    start, end = date_range(call)
    return _times(call, call.tenant.times_between(start, end, by_created=call.config.time_filter == "created"))


def time_by_job(call: Call) -> Chunks:
    job = call.tenant.job(call.args[0])
    span = date_range(call, required=False)
    entries = sorted(job.times, key=lambda e: e.date)  # stable: entry order within a day
    if span is not None:
        entries = [e for e in entries if span[0] <= e.date <= span[1]]
    return _times(call, entries)


def time_by_staff(call: Call) -> Chunks:
    staff = call.tenant.find("staff", call.args[0], "staff")
    start, end = date_range(call)
    return _times(call, (e for e in call.tenant.times_between(start, end) if e.staff is staff))


def time_get(call: Call) -> Chunks:
    entry = call.tenant.find("times", call.args[0], "time entry")
    return R.one("time", entry, call.ctx(), api_method="Get")


def _time_values(call: Call, values: dict[str, str], entry=None):
    """(job, task, model values) from a ``<Timesheet>``; job and task are None when unchanged."""
    job = call.tenant.job(values["Job"]) if values.get("Job", "").strip() else None
    task = None
    if values.get("TaskUUID", "").strip():
        task = call.tenant.resolve_time_task(job or entry.job, values["TaskUUID"])
    elif job is not None and entry is not None and job is not entry.job:
        raise BadRequest("TaskUUID is required when the job changes")
    return job, task, parse_fields(TIME_FIELDS, values, xml=True, resolve=call.resolve)


def time_add(call: Call) -> Chunks:
    values = scalars(parse_body(call.body, "Timesheet"))
    require(values, "Job", "TaskUUID", "StaffUUID", "Date")
    job, task, fields = _time_values(call, values)
    entry = call.tenant.add_time(job, task, fields, call.now)
    return R.one("time", entry, call.ctx(), api_method="Add")


def time_update(call: Call) -> Chunks:
    values = scalars(parse_body(call.body, "Timesheet"))
    require(values, "UUID")
    entry = call.tenant.find("times", values["UUID"], "time entry")
    job, task, fields = _time_values(call, values, entry)
    call.tenant.update_time(entry, job, task, fields)
    return R.one("time", entry, call.ctx(), api_method="Update")


def time_delete(call: Call) -> Chunks:
    call.tenant.delete_time(call.tenant.find("times", call.args[0], "time entry"))
    return R.document([], "Delete")


# -- routing --------------------------------------------------------------------------------------------

Handler = Callable[[Call], Chunks]
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "client.api/list", client_list),
    ("GET", "client.api/paged-list", client_paged_list),
    ("GET", "client.api/get/{}", client_get),
    ("GET", "client.api/search", client_search),
    ("POST", "client.api/add", client_add),
    ("PUT", "client.api/update", client_update),
    ("GET", "clientgroup.api/list", group_list),
    ("GET", "clientgroup.api/get/{}", group_get),
    ("GET", "staff.api/list", staff_list),
    ("GET", "staff.api/get/{}", staff_get),
    ("GET", "task.api/list", task_list),
    ("GET", "task.api/get/{}", task_get),
    ("GET", "job.api/current", job_current),
    ("GET", "job.api/list", job_list),
    ("GET", "job.api/get/{}", job_get),
    ("GET", "job.api/tasks", job_tasks),
    ("POST", "job.api/add", job_add),
    ("PUT", "job.api/update", job_update),
    ("PUT", "job.api/state", job_state),
    ("PUT", "job.api/assign", job_assign),
    ("POST", "job.api/delete", job_delete),
    ("POST", "job.api/task", job_task_add),
    ("PUT", "job.api/task", job_task_update),
    ("PUT", "job.api/task/{}/complete", job_task_complete),
    ("PUT", "job.api/task/{}/reopen", job_task_reopen),
    ("GET", "time.api/list", time_list),
    ("GET", "time.api/job/{}", time_by_job),
    ("GET", "time.api/staff/{}", time_by_staff),
    ("GET", "time.api/get/{}", time_get),
    ("POST", "time.api/add", time_add),
    ("PUT", "time.api/update", time_update),
    ("DELETE", "time.api/delete/{}", time_delete),
]
_SPLIT = [(method, pattern.split("/"), handler) for method, pattern, handler in ROUTES]


def route(method: str, path: str) -> tuple[Handler, list[str]]:
    """The handler and placeholder values for ``method path``; 404/405 as XPM ERROR documents."""
    segments = [unquote(s) for s in path.split("/")]
    allowed = False
    for route_method, pattern, handler in _SPLIT:
        if len(pattern) != len(segments):
            continue
        args = []
        for want, got in zip(pattern, segments):
            if want == "{}":
                if not got:
                    break
                args.append(got)
            elif want.lower() != got.lower():
                break
        else:
            if route_method == method:
                return handler, args
            allowed = True
    if allowed:
        raise MethodNotAllowed(f"Method {method} is not allowed on {path}")
    raise UnknownEndpoint(f"Unknown API method {path}")


def resource_of(path: str) -> str:
    """``time.api/list`` -> ``time`` (for scope checks)."""
    head = path.split("/", 1)[0]
    return head[:-4] if head.endswith(".api") else head
