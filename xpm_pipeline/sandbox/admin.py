"""The admin interface under ``/_sandbox/`` (JSON): tenants, tokens, clock, log, limits, faults, and
"a person changed this in XPM" edits.

Edits take and return the warehouse vocabulary: object JSON is produced by rendering the object as
XPM would and reading it back through the column paths in ``xpm_pipeline.entities``, so the JSON is
exactly what a correct sync would store (types: int, bool, ``YYYY-MM-DD`` dates, money as a string,
empty values as null; nested ``tasks``/``contacts``/``members`` lists for jobs, clients, groups).
Request JSON keys are those same column names (``minutes``, ``entry_date``, ``staff_uuid``...); an
unknown key is a 400, so typos do not pass silently. The endpoint table is in the package docstring.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timezone
from typing import Any, Callable

from lxml import etree

from xpm_pipeline.entities import ENTITIES, ColumnType, children_of
from xpm_pipeline.sandbox import render as R
from xpm_pipeline.sandbox.errors import BadRequest, Conflict, NotFound, Refused, XpmError
from xpm_pipeline.sandbox.faults import FaultSpecError
from xpm_pipeline.sandbox.fields import (
    CLIENT_FIELDS, CONTACT_FIELDS, JOB_ADD_FIELDS, JOB_FIELDS, JOB_TASK_FIELDS, STAFF_FIELDS, TIME_FIELDS,
    Resolver, parse_fields, unknown_keys,
)

UTC = timezone.utc
# entity name -> (render schema, detailed)
RENDER_AS = {
    "client": ("client", True), "client_contact": ("contact", False), "client_group": ("group", True),
    "staff": ("staff", False), "job": ("job", True), "job_task": ("job_task", False),
    "task": ("task_type", False), "timesheet": ("time", False),
}
# Columns a nested entity inherits from its parent, filled in when it is shown on its own.
INHERITED = {
    "job_task": lambda obj, tenant: {"job_uuid": obj.job.uuid, "job_number": obj.job.job_number},
    "client_contact": lambda obj, tenant: {"client_uuid": tenant.contact_client[obj.uuid].uuid},
}
CHILD_KEYS = {"job_task": "tasks", "client_contact": "contacts", "client_group_member": "members"}
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ``::1``, IPv4-mapped ``::ffff:127.x``, or the name ``localhost``: only this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip().strip("[]").split("%")[0])
    except ValueError:  # another name, or "" (every interface)
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _typed(column, raw: str | None):
    if raw is None or raw == "":
        return None
    kind = column.type
    if kind is ColumnType.INT:
        return int(raw)
    if kind in (ColumnType.BOOL, ColumnType.YESNO):
        return raw.strip().lower() in ("true", "yes")
    if kind is ColumnType.DATE:
        return raw[:10]
    return raw


def _columns(entity_name: str, element) -> dict[str, Any]:
    entity = ENTITIES[entity_name]
    out = {}
    for column in entity.columns:
        if column.path:
            found = element.find(column.path)
            out[column.name] = _typed(column, None if found is None else (found.text or ""))
    return out


def to_json(entity_name: str, obj, tenant) -> dict[str, Any]:
    """The object as a correct sync would store it (see the module docstring)."""
    schema, detailed = RENDER_AS[entity_name]
    xml = R.element(schema, obj, R.Ctx(tenant, detailed=detailed))
    element = etree.fromstring(xml.encode("utf-8"))
    out = _columns(entity_name, element)
    if entity_name in INHERITED:
        out.update(INHERITED[entity_name](obj, tenant))
    for child in children_of(entity_name):
        rows = []
        for sub in element.findall(child.nested.path):
            row = _columns(child.name, sub)
            for child_col, parent_col in child.nested.inherit:
                row[child_col] = out.get(parent_col)
            rows.append(row)
        out[CHILD_KEYS.get(child.name, child.name)] = rows
    if entity_name == "job":
        out["state_code"] = obj.state_code
    return out


def _clean(value):
    """Strip characters XML cannot carry, so an admin edit never makes the API emit broken XML."""
    if isinstance(value, str):
        return _INVALID_XML.sub("", value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class Admin:
    """Dispatches ``/_sandbox/...``; ``sandbox`` is the running ``SandboxServer``."""

    def __init__(self, sandbox) -> None:
        self.sb = sandbox
        self.routes: list[tuple[str, list[str], Callable]] = []
        for method, pattern, handler in (
            ("GET", "", self.index),
            ("GET", "tenants", self.tenants),
            ("GET", "tenants/{t}", self.tenant_info),
            ("POST", "tenants/{t}/token", self.token),
            ("GET", "clock", self.clock_get),
            ("POST", "clock", self.clock_set),
            ("GET", "log", self.log_get),
            ("DELETE", "log", self.log_clear),
            ("GET", "limits", self.limits_get),
            ("DELETE", "limits", self.limits_reset),
            ("GET", "faults", self.faults_get),
            ("POST", "faults", self.faults_add),
            ("DELETE", "faults", self.faults_clear),
            ("DELETE", "faults/{id}", self.fault_remove),
            ("POST", "state/save", self.save),
            ("POST", "tenants/{t}/time", self.time_add),
            ("GET", "tenants/{t}/time/{id}", self.time_get),
            ("PATCH", "tenants/{t}/time/{id}", self.time_edit),
            ("DELETE", "tenants/{t}/time/{id}", self.time_delete),
            ("POST", "tenants/{t}/staff", self.staff_add),
            ("PATCH", "tenants/{t}/staff/{id}", self.staff_edit),
            ("POST", "tenants/{t}/jobs", self.job_add),
            ("GET", "tenants/{t}/jobs/{id}", self.job_get),
            ("PATCH", "tenants/{t}/jobs/{id}", self.job_edit),
            ("DELETE", "tenants/{t}/jobs/{id}", self.job_delete),
            ("POST", "tenants/{t}/jobs/{id}/complete", self.job_complete),
            ("POST", "tenants/{t}/jobs/{id}/tasks", self.job_task_add),
            ("PATCH", "tenants/{t}/jobs/{id}/tasks/{sub}", self.job_task_edit),
            ("DELETE", "tenants/{t}/jobs/{id}/tasks/{sub}", self.job_task_delete),
            ("GET", "tenants/{t}/clients/{id}", self.client_get),
            ("PATCH", "tenants/{t}/clients/{id}", self.client_edit),
            ("POST", "tenants/{t}/clients/{id}/contacts", self.contact_add),
            ("PATCH", "tenants/{t}/clients/{id}/contacts/{sub}", self.contact_edit),
            ("POST", "tenants/{t}/groups/{id}/members", self.group_member_add),
        ):
            self.routes.append((method, pattern.split("/") if pattern else [], handler))

    # -- dispatch -----------------------------------------------------------------------------

    def allows(self, client_host: str) -> bool:
        """Whether a client may use the admin interface. It mints tokens, moves the clock and injects
        faults, so it answers this machine only, unless the sandbox was started with ``allow_remote``."""
        return self.sb.allow_remote or is_loopback(client_host)

    def dispatch(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        path_known = False
        for route_method, pattern, handler in self.routes:
            if len(pattern) != len(segments):
                continue
            args: dict[str, str] = {}
            for want, got in zip(pattern, segments):
                if want.startswith("{"):
                    args[want[1:-1]] = got
                elif want != got:
                    break
            else:
                path_known = True
                if route_method != method:
                    continue
                try:
                    result = handler(args=args, query=query, body=_clean(body if body is not None else {}))
                except AdminError as exc:
                    return exc.status, {"error": exc.message}
                except FaultSpecError as exc:
                    return 400, {"error": str(exc)}
                except XpmError as exc:
                    status = {BadRequest: 400, NotFound: 404, Refused: 409, Conflict: 409}.get(type(exc), 400)
                    return status, {"error": exc.message}
                if isinstance(result, tuple):
                    return result
                return 200, result
        if path_known:
            return 405, {"error": f"{method} not allowed on /_sandbox/{path}"}
        return 404, {"error": f"no admin endpoint /_sandbox/{path}"}

    def _tenant(self, args):
        tenant = self.sb.state.tenants.get(args["t"].lower())
        if tenant is None:
            raise AdminError(404, f"unknown tenant {args['t']}")
        return tenant

    @staticmethod
    def _body(body, allowed_fields, extra: tuple[str, ...] = ()) -> dict:
        if not isinstance(body, dict):
            raise AdminError(400, "a JSON object is required")
        bad = unknown_keys(allowed_fields, body, extra)
        if bad:
            raise AdminError(400, f"unknown field(s): {', '.join(bad)}")
        return body

    def _now(self) -> datetime:
        return self.sb.clock.now()

    # -- tenants, tokens, clock, log, limits, faults ------------------------------------------

    def index(self, **_) -> dict:
        return {"endpoints": [f"{m} /_sandbox/{'/'.join(p)}" for m, p, _h in self.routes]}

    def tenants(self, **_) -> list[dict]:
        return [{"tenant_id": t.tenant_id, "name": t.name, "size": t.size} for t in self.sb.state]

    def tenant_info(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            return {
                "tenant_id": tenant.tenant_id, "name": tenant.name, "size": tenant.size, "seed": tenant.seed,
                "job_number_prefix": tenant.job_prefix,
                "job_states": {code: {"name": name, "completes_job": done}
                               for code, (name, done) in tenant.job_states.items()},
                "counts": tenant.counts(),
                "connected": self.sb.identity.connection_for(tenant.tenant_id) is not None,
            }

    def token(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        scope = body.get("scope") if isinstance(body, dict) else None
        scopes = tuple(scope.split()) if isinstance(scope, str) and scope.strip() else None
        return self.sb.identity.issue_for_tenant(tenant.tenant_id, self._now(), scopes)

    def clock_get(self, **_) -> dict:
        return {"now": self._now().isoformat()}

    def clock_set(self, body, **_) -> dict:
        if not isinstance(body, dict) or ("advance_seconds" in body) == ("now" in body):
            raise AdminError(400, 'give exactly one of {"advance_seconds": N} or {"now": ISO8601}')
        if "advance_seconds" in body:
            seconds = body["advance_seconds"]
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                raise AdminError(400, "advance_seconds must be a number")
            self.sb.clock.advance(seconds)
        else:
            try:
                when = datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
            except ValueError:
                raise AdminError(400, "now must be an ISO 8601 timestamp") from None
            self.sb.clock.set(when if when.tzinfo else when.replace(tzinfo=UTC))
        return {"now": self._now().isoformat()}

    def log_get(self, query, **_) -> list[dict]:
        tenant = query.get("tenant")
        return [e for e in self.sb.log_entries() if not tenant or (e["tenant_id"] or "") == tenant.lower()]

    def log_clear(self, **_) -> dict:
        return {"cleared": self.sb.clear_log()}

    def limits_get(self, **_) -> dict:
        cfg = self.sb.config
        return {
            "config": {"daily_limit": cfg.daily_limit, "minute_limit": cfg.minute_limit,
                       "concurrent_limit": cfg.concurrent_limit, "app_minute_limit": cfg.app_minute_limit,
                       "day_window": cfg.day_window},
            "usage": self.sb.limiter.snapshot(),
        }

    def limits_reset(self, **_) -> dict:
        self.sb.limiter.reset()
        return {"reset": True}

    def faults_get(self, **_) -> list[dict]:
        return self.sb.faults.list()

    def faults_add(self, body, **_) -> tuple[int, dict]:
        if not isinstance(body, dict):
            raise AdminError(400, "a JSON object is required")
        fault = self.sb.faults.add(body)
        return 201, {"id": fault.id, **fault.as_json()}

    def faults_clear(self, **_) -> dict:
        return {"cleared": self.sb.faults.clear()}

    def fault_remove(self, args, **_) -> dict:
        if not self.sb.faults.remove(args["id"]):
            raise AdminError(404, f"no fault {args['id']}")
        return {"removed": args["id"]}

    def save(self, **_) -> dict:
        path = self.sb.save_state()
        if path is None:
            raise AdminError(409, "no state_path configured (start with --state PATH)")
        return {"saved": str(path)}

    # -- time -----------------------------------------------------------------------------------

    def _time_refs(self, tenant, body, entry=None):
        job = tenant.job(str(body["job_number"])) if body.get("job_number") else None
        task = None
        if body.get("task_uuid"):
            task = tenant.resolve_time_task(job or entry.job, str(body["task_uuid"]))
        elif job is not None and (entry is None or job is not entry.job):
            raise AdminError(400, "task_uuid is required with job_number")
        return job, task

    def time_add(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, TIME_FIELDS, ("job_number", "task_uuid"))
        with tenant.lock:
            if not body.get("job_number") or not body.get("task_uuid"):
                raise AdminError(400, "job_number and task_uuid are required")
            job, task = self._time_refs(tenant, body)
            values = parse_fields(TIME_FIELDS, body, xml=False, resolve=Resolver(tenant))
            entry = tenant.add_time(job, task, values, self._now())
            return to_json("timesheet", entry, tenant)

    def time_get(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            return to_json("timesheet", tenant.find("times", args["id"], "time entry"), tenant)

    def time_edit(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, TIME_FIELDS, ("job_number", "task_uuid"))
        with tenant.lock:
            entry = tenant.find("times", args["id"], "time entry")
            job, task = self._time_refs(tenant, body, entry)
            values = parse_fields(TIME_FIELDS, body, xml=False, resolve=Resolver(tenant))
            tenant.update_time(entry, job, task, values)
            return to_json("timesheet", entry, tenant)

    def time_delete(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            entry = tenant.find("times", args["id"], "time entry")
            out = to_json("timesheet", entry, tenant)
            tenant.delete_time(entry)
            return out

    # -- staff ----------------------------------------------------------------------------------

    def staff_add(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, STAFF_FIELDS)
        with tenant.lock:
            staff = tenant.add_staff(parse_fields(STAFF_FIELDS, body, xml=False, resolve=Resolver(tenant)))
            return to_json("staff", staff, tenant)

    def staff_edit(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, STAFF_FIELDS)
        with tenant.lock:
            staff = tenant.find("staff", args["id"], "staff")
            for attr, value in parse_fields(STAFF_FIELDS, body, xml=False, resolve=Resolver(tenant)).items():
                setattr(staff, attr, value)
            return to_json("staff", staff, tenant)

    # -- jobs and their tasks -------------------------------------------------------------------

    def job_add(self, args, body, **_) -> dict:
        """``{"name", "client_uuid", ...JOB fields, "job_number"?, "state"?, "tasks"?: [{task fields}]}``."""
        tenant = self._tenant(args)
        body = self._body(body, JOB_ADD_FIELDS, ("job_number", "state", "tasks"))
        with tenant.lock:
            values = parse_fields(JOB_ADD_FIELDS, body, xml=False, resolve=Resolver(tenant))
            state = tenant.state_code_for(str(body.get("state", "PLANNED")))
            tasks = body.get("tasks") or []
            if not isinstance(tasks, list):
                raise AdminError(400, "tasks must be a list")
            for spec in tasks:
                self._body(spec, JOB_TASK_FIELDS, ("task_uuid",))
                tenant.find("task_types", str(spec.get("task_uuid", "")), "task")
            job = tenant.add_job(values, self._now(), number=body.get("job_number"), state_code=state)
            tenant.set_job_state(job, state, self._now())
            for spec in tasks:
                self._add_task(tenant, job, spec)
            return to_json("job", job, tenant)

    def job_get(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            return to_json("job", tenant.job(args["id"]), tenant)

    def job_edit(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, JOB_FIELDS, ("state",))
        with tenant.lock:
            job = tenant.job(args["id"])
            tenant.update_job(job, parse_fields(JOB_FIELDS, body, xml=False, resolve=Resolver(tenant)))
            if "state" in body:
                tenant.set_job_state(job, str(body["state"]), self._now())
            return to_json("job", job, tenant)

    def job_complete(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            job = tenant.job(args["id"])
            done = next(code for code, (_n, completes) in tenant.job_states.items() if completes)
            tenant.set_job_state(job, done, self._now())
            return to_json("job", job, tenant)

    def job_delete(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            job = tenant.job(args["id"])
            out = to_json("job", job, tenant)
            tenant.delete_job(job)
            return out

    def _add_task(self, tenant, job, spec):
        task_type = tenant.find("task_types", str(spec.get("task_uuid", "")), "task")
        values = parse_fields(JOB_TASK_FIELDS, spec, xml=False, resolve=Resolver(tenant))
        return tenant.add_job_task(job, task_type, values)

    def _job_task(self, tenant, args):
        job = tenant.job(args["id"])
        task = tenant.job_tasks.get(args["sub"].lower())
        if task is None or task.job is not job:
            raise AdminError(404, f"no task {args['sub']} on job {job.job_number}")
        return task

    def job_task_add(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, JOB_TASK_FIELDS, ("task_uuid",))
        with tenant.lock:
            if not body.get("task_uuid"):
                raise AdminError(400, "task_uuid (the task-list type) is required")
            return to_json("job_task", self._add_task(tenant, tenant.job(args["id"]), body), tenant)

    def job_task_edit(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, JOB_TASK_FIELDS)
        with tenant.lock:
            task = self._job_task(tenant, args)
            tenant.update_job_task(task, parse_fields(JOB_TASK_FIELDS, body, xml=False, resolve=Resolver(tenant)))
            return to_json("job_task", task, tenant)

    def job_task_delete(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            task = self._job_task(tenant, args)
            out = to_json("job_task", task, tenant)
            tenant.delete_job_task(task)
            return out

    # -- clients, contacts, groups ----------------------------------------------------------------

    def client_get(self, args, **_) -> dict:
        tenant = self._tenant(args)
        with tenant.lock:
            return to_json("client", tenant.find("clients", args["id"], "client"), tenant)

    def client_edit(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, CLIENT_FIELDS)
        with tenant.lock:
            client = tenant.find("clients", args["id"], "client")
            tenant.update_client(client, parse_fields(CLIENT_FIELDS, body, xml=False, resolve=Resolver(tenant)),
                                 self._now())
            return to_json("client", client, tenant)

    def contact_add(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, CONTACT_FIELDS)
        with tenant.lock:
            client = tenant.find("clients", args["id"], "client")
            values = parse_fields(CONTACT_FIELDS, body, xml=False, resolve=Resolver(tenant))
            contact = tenant.add_contact(client, values, self._now(),
                                         bump=self.sb.config.contact_edit_bumps_modified)
            return to_json("client_contact", contact, tenant)

    def contact_edit(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        body = self._body(body, CONTACT_FIELDS)
        with tenant.lock:
            client = tenant.find("clients", args["id"], "client")
            contact = tenant.contacts.get(args["sub"].lower())
            if contact is None or tenant.contact_client.get(contact.uuid) is not client:
                raise AdminError(404, f"no contact {args['sub']} on client {client.uuid}")
            values = parse_fields(CONTACT_FIELDS, body, xml=False, resolve=Resolver(tenant))
            tenant.update_contact(client, contact, values, self._now(),
                                  bump=self.sb.config.contact_edit_bumps_modified)
            return to_json("client_contact", contact, tenant)

    def group_member_add(self, args, body, **_) -> dict:
        tenant = self._tenant(args)
        if not isinstance(body, dict) or set(body) != {"client_uuid"}:
            raise AdminError(400, 'body must be {"client_uuid": "..."}')
        with tenant.lock:
            group = tenant.find("groups", args["id"], "client group")
            client = Resolver(tenant)("client", body["client_uuid"])
            tenant.add_group_member(group, client)
            return to_json("client_group", group, tenant)
