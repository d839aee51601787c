"""``make demo``: the product end to end against a seeded sandbox practice, run by Dagster.

Sandbox up -> OAuth consent completed by script (tokens stored encrypted) -> a day of the practice on a
simulated clock. Each flow is requested the way the Dagster daemon requests it and executed as a run of
the tenant-partitioned assets (``definitions.make_definitions``) on a local instance, ``DAGSTER_HOME`` =
``<home>/dagster`` (SQLite storage, the production run coordinator):

- initial: the tenant sensor sees the new connection, adds the tenant's partition and requests its
  initial sync (then the run's checks: reconciliation with XPM, references);
- people edit in XPM (through the sandbox's admin interface);
- hourly: the hourly schedule's tick in the tenant's slot (:00/:15/:30/:45) requests its hourly sync;
- nightly: the nightly schedule's tick at the tenant's staggered time requests the nightly sync.

The report is read back from the instance: each run's materialization events (rows per table,
inserted/updated/deleted, API calls) and asset-check evaluations, so what it prints is what Dagster
recorded, and the runs are there to browse afterwards. ``DAY`` lists the flows in order; a further flow
is one more ``Flow`` (what happens first, which sensor or schedule requests it, what to print after).
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import IdentityEndpoints, Settings, api_base_from
from xpm_pipeline.private_files import private_dir
from xpm_pipeline.secrets import Secret, local_token_key
from xpm_pipeline.warehouse.schema import table_for

QUARTER = timedelta(minutes=15)
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the report says what happened


class PersonEdits:
    """Edits a practice's staff would make in XPM during a day, through the sandbox's admin interface.

    Targets are picked from the warehouse the initial sync filled, so making the edits spends none of
    the tenant's API quota (people editing in XPM don't either).
    """

    def __init__(self, base_url: str, tenant_id: str, engine) -> None:
        self.admin = f"{base_url}/_sandbox/tenants/{tenant_id}"
        self.tenant_id = tenant_id
        self.engine = engine
        self.done: list[str] = []

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        response = httpx.request(method, f"{self.admin}/{path}", json=body, timeout=30)
        if response.status_code >= 300:
            raise RuntimeError(f"sandbox admin {method} {path}: {response.status_code} {response.text[:200]}")
        return response.json() if response.content else {}

    def _rows(self, entity: str, *where, order_by: str = "uuid") -> list[dict]:
        table = table_for(entity)
        query = select(table).where(table.c.tenant_id == self.tenant_id, table.c._deleted_at.is_(None), *where)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query.order_by(table.c[order_by]))]

    def make_all(self, today) -> list[str]:
        jobs_table, times = table_for("job"), table_for("timesheet")
        jobs = self._rows("job", jobs_table.c.state != "Completed", order_by="job_number")
        active = {job["uuid"] for job in jobs}
        tasks = [t for t in self._rows("job_task", order_by="job_number") if t["job_uuid"] in active]
        staff = [row["uuid"] for row in self._rows("staff")]
        recent = self._rows("timesheet", times.c.entry_date.between(today - timedelta(days=30), today))
        task_types = [row["uuid"] for row in self._rows("task")]
        task = tasks[0]

        added = self._call("POST", "time", {"job_number": task["job_number"], "task_uuid": task["uuid"],
                                            "staff_uuid": staff[0], "entry_date": today.isoformat(), "minutes": 45,
                                            "note": "Call with client about GST"})
        self.done.append(f"added a time entry ({added.get('uuid', '?')}) on {task['job_number']}")
        edited, removed = recent[0], recent[1]
        self._call("PATCH", f"time/{edited['uuid']}", {"minutes": edited["minutes"] + 15, "note": "Revised after review"})
        self.done.append(f"edited minutes and note of time entry {edited['uuid']}")
        self._call("DELETE", f"time/{removed['uuid']}")
        self.done.append(f"deleted time entry {removed['uuid']}")
        self._call("POST", "staff", {"name": "Mere Tūhoe", "email": "mere@firm.example"})
        self.done.append("added a staff member")

        completed, deleted, retasked = jobs[-1], jobs[-2], jobs[0]
        self._call("POST", f"jobs/{completed['job_number']}/complete")
        self.done.append(f"completed job {completed['job_number']}")
        self._call("DELETE", f"jobs/{deleted['job_number']}")
        self.done.append(f"deleted job {deleted['job_number']}")
        self._call("POST", f"jobs/{retasked['job_number']}/tasks", {"task_uuid": task_types[0], "estimated_minutes": 120,
                                                                    "label": "Extra review"})
        self.done.append(f"added a task to job {retasked['job_number']}")
        others = [t for t in tasks if t["job_uuid"] not in (completed["uuid"], deleted["uuid"])]
        self._call("PATCH", f"jobs/{others[0]['job_number']}/tasks/{others[0]['uuid']}", {"estimated_minutes": 300})
        self.done.append(f"changed the estimate of a task on job {others[0]['job_number']}")
        unused = next((t for t in others[1:] if not t["actual_minutes"]), None)  # XPM refuses tasks with time
        if unused is not None:
            self._call("DELETE", f"jobs/{unused['job_number']}/tasks/{unused['uuid']}")
            self.done.append(f"deleted an unused task on job {unused['job_number']}")

        contact = self._rows("client_contact")[0]
        self._call("PATCH", f"clients/{contact['client_uuid']}/contacts/{contact['uuid']}", {"phone": "021 555 0142"})
        self.done.append("changed a contact's phone (XPM does not flag the client modified)")
        members = self._rows("client_group_member", order_by="group_uuid")
        if members:
            group = members[0]["group_uuid"]
            inside = {m["client_uuid"] for m in members if m["group_uuid"] == group}
            newcomer = next(c["uuid"] for c in self._rows("client")
                            if c["uuid"] not in inside and not c["is_deleted"] and not c["is_archived"])
            self._call("POST", f"groups/{group}/members", {"client_uuid": newcomer})
            self.done.append("added a client to a client group")
        return self.done


@dataclass(frozen=True)
class Launch:
    """What the daemon would submit: a run request of a job, and who asked for it."""

    job_name: str
    request: dg.RunRequest
    origin: str


@dataclass(frozen=True)
class Flow:
    """One flow of the demo's day: what happens in the practice first, then the run Dagster requests."""

    name: str
    launch: Callable[["Demo"], Launch]  # the sensor tick or schedule tick that requests the run
    before: Callable[["Demo"], None] | None = None  # e.g. people editing in XPM
    after: Callable[["Demo", "FlowReport"], None] | None = None  # e.g. print more state
    label: str | None = None  # how the report names it (default "<name> sync")

    @property
    def title(self) -> str:
        return self.label or f"{self.name} sync"


@dataclass(frozen=True)
class TableLine:
    """One materialization of a run, as the instance recorded it."""

    table: str
    rows: int
    inserted: int
    updated: int
    deleted: int
    unchanged: int
    api_calls: int


@dataclass
class FlowReport:
    name: str
    job_name: str
    origin: str
    run_id: str
    ok: bool
    seconds: float
    title: str = ""
    tables: list[TableLine] = field(default_factory=list)
    check_calls: int = 0  # reconciliation reads XPM too
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)  # "<severity>: <asset> <check>: <why>"
    rate_limited: int = 0
    error: str | None = None
    drain: dict | None = None  # an export run: what the drain reported (sent, done, dead, ...)
    export_reads: int = 0  # reads an export run made to settle unclear writes

    @property
    def sync_calls(self) -> int:
        return sum(line.api_calls for line in self.tables)

    @property
    def api_calls(self) -> int:
        return self.sync_calls + self.check_calls + (self.drain or {}).get("sent", 0) + self.export_reads


@contextmanager
def _quiet_dagster() -> Iterator[None]:
    """Dagster's beta/preview notices and its INFO log lines (wall-clock stamped, on loggers of its own
    making) stay out of the report; warnings and errors still show."""
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            warnings.simplefilter("ignore", dg.PreviewWarning)
            yield
    finally:
        logging.disable(logging.NOTSET)


class Demo:
    """The demo's Dagster side: one instance, the code location on the demo's clock and warehouse."""

    def __init__(self, *, console: Console, clock: ManualClock, server, runtime, tenant_id: str, dagster_home: Path):
        with _quiet_dagster():
            from xpm_pipeline.definitions import make_definitions
            from xpm_pipeline.defs.instance import write_local_instance
            from xpm_pipeline.defs.resources import local_resource

        self.console, self.clock, self.server, self.runtime = console, clock, server, runtime
        self.tenant_id, self.dagster_home = tenant_id, dagster_home
        shutil.rmtree(dagster_home, ignore_errors=True)  # a fresh instance for a fresh warehouse
        write_local_instance(dagster_home)
        self.instance = dg.DagsterInstance.from_config(str(dagster_home))
        self.xpm = local_resource(clock, runtime.settings)
        with _quiet_dagster():
            self.defs = make_definitions(self.xpm)
        self.cursors: dict[str, str | None] = {}
        self.reports: list[FlowReport] = []

    def close(self) -> None:
        self.instance.dispose()

    # --- how Dagster asks for a run -----------------------------------------------------------------

    def sensor_launch(self, sensor: dg.SensorDefinition) -> Launch:
        """One tick of a sensor, its partition requests applied as the daemon applies them."""
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursors.get(sensor.name),
                                          resources={"xpm": self.xpm})
        result = sensor(context)
        if isinstance(result, dg.RunRequest):
            requests = [result]
        elif isinstance(result, list):
            requests = [r for r in result if isinstance(r, dg.RunRequest)]
        else:  # a SensorResult, a SkipReason or nothing
            requests = list(result.run_requests or []) if isinstance(result, dg.SensorResult) else []
        if isinstance(result, dg.SensorResult):
            for change in result.dynamic_partitions_requests or []:
                if isinstance(change, dg.AddDynamicPartitionsRequest):
                    self.instance.add_dynamic_partitions(change.partitions_def_name, list(change.partition_keys))
                else:
                    for key in change.partition_keys:
                        self.instance.delete_dynamic_partition(change.partitions_def_name, key)
        self.cursors[sensor.name] = result.cursor if isinstance(result, dg.SensorResult) and result.cursor else context.cursor
        return Launch(sensor.job_name, self._for_tenant(requests, sensor.name), f"sensor {sensor.name}")

    def schedule_launch(self, schedule: dg.ScheduleDefinition, tenants_at: Callable[[Iterable[str], datetime], list[str]],
                        *, not_before: datetime, tz: str = "UTC") -> Launch:
        """The schedule's first tick from ``not_before`` that serves the tenant; the clock moves there."""
        when = not_before.astimezone(ZoneInfo(tz))
        when = when.replace(minute=when.minute - when.minute % 15, second=0, microsecond=0)
        while when < not_before or self.tenant_id not in tenants_at([self.tenant_id], when):
            when += QUARTER
        self.clock.set(when.astimezone(timezone.utc))
        context = dg.build_schedule_context(instance=self.instance, scheduled_execution_time=when,
                                            repository_def=self.defs.get_repository_def())
        requests = schedule.evaluate_tick(context).run_requests or []
        return Launch(schedule.job_name, self._for_tenant(requests, schedule.name),
                      f"schedule {schedule.name}, tick {when:%H:%M %Z}")

    def _for_tenant(self, requests, origin: str) -> dg.RunRequest:
        from xpm_pipeline.defs.instance import EXPORT_TAG

        mine = [r for r in requests or [] if self.tenant_id in (r.partition_key, (r.tags or {}).get(EXPORT_TAG))]
        if not mine:
            raise RuntimeError(f"{origin} requested no run for tenant {self.tenant_id}")
        return mine[0]

    # --- running a flow -----------------------------------------------------------------------------

    def run(self, flow: Flow) -> FlowReport:
        if flow.before:
            flow.before(self)
        launch = flow.launch(self)
        request = launch.request
        self.console.print(f"[bold]{flow.title}[/bold] at {self.clock.now():%Y-%m-%d %H:%M} UTC (simulated clock), "
                           f"requested by {launch.origin}")
        seen = len(self.server.request_log)
        tags = {**request.tags, **({"dagster/run_key": request.run_key} if request.run_key else {})}
        with self.console.status(f"{flow.name}: Dagster run of {launch.job_name} for tenant {request.partition_key}"):
            started = time.perf_counter()
            result = self.defs.resolve_job_def(launch.job_name).execute_in_process(
                instance=self.instance, partition_key=request.partition_key, tags=tags, raise_on_error=False,
                run_config={**(request.run_config or {}), **QUIET_LOGS},
            )
        report = self._read_back(flow, launch, result.run_id, time.perf_counter() - started)
        report.rate_limited = sum(1 for entry in self.server.request_log[seen:]
                                  if entry["tenant_id"] == self.tenant_id and entry["status"] == 429)
        if not result.success:
            failures = result.get_step_failure_events()
            error = failures[0].step_failure_data.error if failures and failures[0].step_failure_data else None
            report.error = (error.message.strip().splitlines() or ["run failed"])[0] if error else "run failed"
        self.reports.append(report)
        _print_flow(self.console, report)
        if flow.after:
            flow.after(self, report)
        return report

    def _read_back(self, flow: Flow, launch: Launch, run_id: str, seconds: float) -> FlowReport:
        """The run as the instance stored it: its status, materializations and check evaluations."""
        run = self.instance.get_run_by_id(run_id)
        report = FlowReport(flow.name, launch.job_name, launch.origin, run_id, run.is_success, seconds, flow.title)
        kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION,
                 dg.DagsterEventType.ASSET_OBSERVATION}
        for entry in self.instance.all_logs(run_id, of_type=kinds):
            observation = entry.dagster_event.event_specific_data if entry.dagster_event else None
            drain = getattr(getattr(observation, "asset_observation", None), "metadata", {}).get("drain")
            if drain is not None:
                report.drain = dict(drain.value)
                report.export_reads = int(report.drain.get("reconciled", 0))
            elif entry.asset_materialization is not None:
                event = entry.asset_materialization
                meta = {key: value.value for key, value in event.metadata.items()}
                report.tables.append(TableLine(event.asset_key.to_user_string(), *(
                    int(meta.get(name, 0)) for name in ("dagster/row_count", "inserted", "updated", "deleted", "unchanged",
                                                        "api_calls"))))
            elif entry.asset_check_evaluation is not None:
                check = entry.asset_check_evaluation
                calls = check.metadata.get("api_calls")
                report.check_calls += int(calls.value) if calls is not None else 0
                if check.passed:
                    report.checks_passed += 1
                else:
                    severity = "warning" if check.severity == dg.AssetCheckSeverity.WARN else "error"
                    report.checks_failed.append(f"{severity}: {check.asset_key.to_user_string()} {check.check_name}: "
                                                f"{check.description or ''}".rstrip(": "))
        return report

    def latest_rows(self) -> list[tuple[str, int, int | None]]:
        """(table, live rows, soft-deleted rows) from the latest materialization of each table of the tenant."""
        from xpm_pipeline.defs.assets import SYNC_SPECS

        found = []
        for spec in SYNC_SPECS:
            records = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=spec.key, asset_partitions=[self.tenant_id]), limit=1).records
            if not records:
                continue
            meta = records[0].asset_materialization.metadata
            deleted = meta.get("soft_deleted_rows")
            found.append((spec.key.to_user_string(), int(meta["dagster/row_count"].value),
                          None if deleted is None else int(deleted.value)))
        return found


def _people_edit(demo: Demo) -> None:
    edits = PersonEdits(demo.server.base_url, demo.tenant_id, demo.runtime.engine).make_all(demo.clock.now().date())
    demo.console.print("[bold]Edits made in XPM by people:[/bold]\n  - " + "\n  - ".join(edits))


def _initial(demo: Demo) -> Launch:
    from xpm_pipeline.defs.sensors import xpm_tenant_sensor

    return demo.sensor_launch(xpm_tenant_sensor)


def _hourly(demo: Demo) -> Launch:
    from xpm_pipeline.defs.schedules import hourly_tenants, xpm_hourly_schedule

    return demo.schedule_launch(xpm_hourly_schedule, hourly_tenants, not_before=demo.clock.now() + timedelta(minutes=45))


def _nightly(demo: Demo) -> Launch:
    from xpm_pipeline.defs.schedules import NIGHTLY_TIMEZONE, nightly_tenants, xpm_nightly_schedule

    return demo.schedule_launch(xpm_nightly_schedule, nightly_tenants, not_before=demo.clock.now() + timedelta(hours=1),
                                tz=NIGHTLY_TIMEZONE)


def _queue_changes(demo: Demo) -> None:
    """A bookkeeper's changes for XPM, as `xpm-pipeline export add` would queue them from a file."""
    from xpm_pipeline.export import enqueue

    changes = demo_changes(demo.runtime.engine, demo.tenant_id, demo.clock.now().date())
    result = enqueue(demo.runtime.engine, demo.tenant_id, changes, source="demo changes.jsonl", clock=demo.clock)
    demo.console.print(f"[bold]Changes queued for XPM:[/bold] {result.added} ({result.shown_in_warehouse} warehouse rows "
                       "show the pending values at once)")
    _print_queue(demo, "Export queue before the drain")


def demo_changes(engine, tenant_id: str, today, *, timesheets: int = 45) -> list[dict]:
    """New time entries on active jobs, and a few job, client and task edits, from the warehouse."""
    from sqlalchemy import and_

    tasks, jobs, staff, clients = (table_for(n) for n in ("job_task", "job", "staff", "client"))
    with engine.connect() as conn:
        live = (tasks.c.tenant_id == tenant_id) & tasks.c._deleted_at.is_(None)
        pairs = conn.execute(
            select(tasks.c.job_number, tasks.c.uuid)
            .join(jobs, and_(jobs.c.tenant_id == tasks.c.tenant_id, jobs.c.uuid == tasks.c.job_uuid))
            .where(live, jobs.c.state != "Completed", jobs.c._deleted_at.is_(None))
            .order_by(tasks.c.job_number, tasks.c.uuid).limit(timesheets)).all()
        people = conn.execute(select(staff.c.uuid).where(staff.c.tenant_id == tenant_id).order_by(staff.c.uuid)).scalars().all()
        customers = conn.execute(select(clients.c.uuid).where(clients.c.tenant_id == tenant_id, clients.c._deleted_at.is_(None))
                                 .order_by(clients.c.uuid).limit(2)).scalars().all()
    changes = [
        {"kind": "timesheet", "op": "create", "key": f"demo-{today:%Y%m%d}-{n}",
         "fields": {"Job": job, "TaskUUID": task, "StaffUUID": people[n % len(people)], "Date": today.isoformat(),
                    "Minutes": 30 + 15 * (n % 6), "Note": f"Demo entry {n + 1}"}}
        for n, (job, task) in enumerate(pairs)
    ]
    for job in sorted({job for job, _ in pairs})[:3]:
        changes.append({"kind": "job", "op": "update", "key": job, "fields": {"Budget": "4800.00"}})
    changes += [{"kind": "client", "op": "update", "key": c, "fields": {"Phone": "+64 9 555 0100"}} for c in customers]
    changes += [{"kind": "task", "op": "update", "key": t, "fields": {"EstimatedMinutes": 120}} for _, t in pairs[:2]]
    return changes


def _print_queue(demo: Demo, title: str) -> None:
    from xpm_pipeline.export import tables as T
    from xpm_pipeline.export.changes import PRIORITY_NAMES
    from xpm_pipeline.export.queue import depth

    counts = depth(demo.runtime.engine, demo.tenant_id)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("priority")
    for status in T.STATUSES:
        table.add_column(status, justify="right")
    q = T.queue.c
    with demo.runtime.engine.connect() as conn:
        from sqlalchemy import func

        rows = conn.execute(select(q.priority, q.status, func.count()).where(q.tenant_id == demo.tenant_id)
                            .group_by(q.priority, q.status)).all()
    grid = {(p, st): n for p, st, n in rows}
    for priority, name in PRIORITY_NAMES.items():
        table.add_row(name, *(f"{grid.get((priority, status), 0):,}" for status in T.STATUSES))
    demo.console.print(table)
    demo.console.print(f"  waiting: {counts.open}, done: {counts.by_status['done']}, dead: {counts.by_status['dead']}",
                       highlight=False)


def _export(demo: Demo) -> Launch:
    from xpm_pipeline.defs.export import xpm_export_sensor

    demo.clock.advance(60)
    return demo.sensor_launch(xpm_export_sensor)


def _after_export(demo: Demo, report: FlowReport) -> None:
    _print_queue(demo, "Export queue after the drain")


DAY: list[Flow] = [
    Flow("initial", _initial),
    Flow("hourly", _hourly, before=_people_edit),
    Flow("nightly", _nightly),
    Flow("export", _export, before=_queue_changes, after=_after_export, label="export to XPM"),
]
"""The demo's day, in order. Each flow runs only after the previous one succeeded."""


def run_demo(*, size: str = "medium", seed: int = 1, home: Path = Path(".xpm/demo"), console: Console | None = None,
             flows: list[Flow] | None = None) -> list[FlowReport]:
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
    from xpm_pipeline.xpm.connect import connect

    console = console or Console()
    private_dir(home)
    warehouse = home / "warehouse.db"
    for leftover in home.glob("warehouse.db*"):
        leftover.unlink()  # each demo run starts from an empty embedded warehouse
    started = time.perf_counter()
    # One simulated clock for the sandbox, the token store, the client and the Dagster runs: the day runs
    # in seconds, and waiting out XPM's per-minute limit (Retry-After) costs no wall-clock time.
    clock = ManualClock(datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0))
    with console.status(f"starting the XPM sandbox ({size} practice, seed {seed})"):
        server = SandboxServer(SandboxConfig(size=size, seed=seed, tenants=1, clock=clock), host="127.0.0.1", port=0)
        server.start()
    reports: list[FlowReport] = []
    try:
        console.print(f"XPM sandbox: {server.base_url} (ready in {time.perf_counter() - started:.1f} s)")
        settings = Settings(
            home=home,
            warehouse_url=f"sqlite:///{warehouse.as_posix()}",
            api_base_url=api_base_from(server.base_url),
            identity=IdentityEndpoints.same_origin(server.base_url),
            client_id=server.client_id,
            client_secret=Secret(server.client_secret),
            token_key=Secret(local_token_key(home / "token.key")),
        )
        runtime = open_runtime(settings, clock=clock)
        try:
            with console.status("connecting: OAuth consent, code exchange, tenant list"):
                _, connections = connect(runtime.tokens, auto_consent=True)
            tenant = connections[0]
            console.print(f"connected {tenant.tenant_name} ({tenant.tenant_id}); tokens stored encrypted in {warehouse}")
            demo = Demo(console=console, clock=clock, server=server, runtime=runtime, tenant_id=tenant.tenant_id,
                        dagster_home=home / "dagster")
            try:
                for flow in DAY if flows is None else flows:
                    with _quiet_dagster():
                        report = demo.run(flow)
                    if not report.ok:
                        break
                reports = demo.reports
                _print_tables(console, demo.latest_rows())
                runs = demo.instance.get_runs_count()
                console.print(f"Dagster recorded {runs} run(s) on the instance in {demo.dagster_home} (DAGSTER_HOME)")
            finally:
                demo.close()
        finally:
            runtime.close()
    finally:
        server.stop()
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s; API calls: "
                  + ", ".join(f"{r.name} {r.api_calls}" for r in reports))
    failed = next((r for r in reports if not r.ok), None)
    if failed:
        raise RuntimeError(f"the {failed.name} run ({failed.run_id}) failed: {failed.error}")
    return reports


def _print_flow(console: Console, flow: FlowReport) -> None:
    calls = f"{flow.api_calls} API calls ({flow.sync_calls} sync" + (f" + {flow.check_calls} checks)" if flow.check_calls else ")")
    if flow.drain is not None:
        calls = f"{flow.api_calls} API calls ({flow.drain.get('sent', 0)} writes + {flow.export_reads} read-backs)"
    table = Table(title=f"{flow.title}: Dagster run {flow.run_id[:8]} of {flow.job_name}, {calls}, {flow.seconds:.1f} s",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("table", no_wrap=True)
    for column in ("rows", "inserted", "updated", "deleted", "API calls"):
        table.add_column(column, justify="right")
    for line in flow.tables:
        table.add_row(line.table, f"{line.rows:,}", f"{line.inserted:,}", f"{line.updated:,}", f"{line.deleted:,}",
                      str(line.api_calls))
    if flow.tables:
        console.print(table)
    else:
        console.print(f"[italic]{table.title}[/italic]", highlight=False)
    if flow.checks_passed or flow.checks_failed:
        console.print(f"  asset checks: {flow.checks_passed} passed, {len(flow.checks_failed)} did not", highlight=False)
        for failed in flow.checks_failed:
            console.print(f"    {failed}", highlight=False)
    if flow.drain:
        d = flow.drain
        console.print(f"  drain: sent {d['sent']}, done {d['done']}, dead {d['dead']}, unclear {d['in_doubt']} "
                      f"(settled by reading XPM back: {d['reconciled']}); stopped: {d['stopped']}", highlight=False)
    if flow.rate_limited:
        console.print(f"  XPM's per-minute limit answered 429 {flow.rate_limited} time(s); the client waited "
                      "Retry-After each time (those answers are included in the calls above).")
    if flow.error:
        console.print(f"  [red]the run failed:[/red] {flow.error}")


def _print_tables(console: Console, rows: list[tuple[str, int, int | None]]) -> None:
    table = Table(title="Warehouse tables (latest materialization of each asset)")
    table.add_column("table")
    table.add_column("live rows", justify="right")
    table.add_column("soft-deleted", justify="right")
    for name, live, deleted in rows:
        table.add_row(name, f"{live:,}", "" if deleted is None else f"{deleted:,}")
    console.print(table)
