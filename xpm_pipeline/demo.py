"""``make demo``: the product end to end against a seeded sandbox practice, with a report.

Sandbox up -> OAuth consent completed by script (tokens stored encrypted) -> initial sync into the
embedded SQLite warehouse -> edits a person would make in XPM (through the sandbox's admin interface)
-> hourly sync -> nightly sync. Each flow prints what it changed per table and the API calls it used.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import IdentityEndpoints, Settings, api_base_from
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.secrets import Secret, TokenCipher
from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, SyncContext
from xpm_pipeline.sync.run import SyncReport, run_sync
from xpm_pipeline.warehouse.schema import table_for, timesheet_changes


@dataclass
class FlowReport:
    name: str
    report: SyncReport
    seconds: float
    rate_limited: int


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


def _demo_key(home: Path) -> str:
    """The demo keeps its own token key beside its warehouse (0600); production sets XPM_TOKEN_KEY."""
    path = home / "token.key"
    if not path.exists():
        path.write_text(TokenCipher.generate_key())
        os.chmod(path, 0o600)
    return path.read_text().strip()


def run_demo(*, size: str = "medium", seed: int = 1, home: Path = Path(".xpm/demo"), console: Console | None = None):
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
    from xpm_pipeline.xpm.connect import connect

    console = console or Console()
    home.mkdir(parents=True, exist_ok=True)
    warehouse = home / "warehouse.db"
    for leftover in home.glob("warehouse.db*"):
        leftover.unlink()  # each demo run starts from an empty embedded warehouse
    started = time.perf_counter()
    # One simulated clock for the sandbox, the token store and the client: the day runs in seconds,
    # and waiting out XPM's per-minute limit (Retry-After) costs no wall-clock time.
    clock = ManualClock(datetime.now(timezone.utc).replace(hour=9, minute=0, second=0, microsecond=0))
    with console.status(f"starting the XPM sandbox ({size} practice, seed {seed})"):
        server = SandboxServer(SandboxConfig(size=size, seed=seed, tenants=1, clock=clock), host="127.0.0.1", port=0)
        server.start()
    flows: list[FlowReport] = []
    try:
        console.print(f"XPM sandbox: {server.base_url} (ready in {time.perf_counter() - started:.1f} s)")
        settings = Settings(
            home=home,
            warehouse_url=f"sqlite:///{warehouse.as_posix()}",
            api_base_url=api_base_from(server.base_url),
            identity=IdentityEndpoints.same_origin(server.base_url),
            client_id=server.client_id,
            client_secret=Secret(server.client_secret),
            token_key=Secret(_demo_key(home)),
        )
        runtime = open_runtime(settings, clock=clock)
        try:
            with console.status("connecting: OAuth consent, code exchange, tenant list"):
                _, connections = connect(runtime.tokens, auto_consent=True)
            tenant = connections[0]
            console.print(f"connected {tenant.tenant_name} ({tenant.tenant_id}); tokens stored encrypted in {warehouse}")
            with runtime.client(tenant.tenant_id) as client:
                def flow(mode: str, label: str) -> None:
                    before_429 = client.counter.rate_limited
                    console.print(f"[bold]{label} sync[/bold] at {clock.now():%Y-%m-%d %H:%M} UTC (simulated clock)")
                    with console.status(f"{label} sync") as status:
                        flow_started = time.perf_counter()
                        ctx = SyncContext(runtime.engine, client, tenant.tenant_id, mode, clock=runtime.clock)
                        report = run_sync(ctx, on_step=lambda name: status.update(f"{label} sync: {name}"))
                    flows.append(FlowReport(label, report, time.perf_counter() - flow_started,
                                            client.counter.rate_limited - before_429))
                    _print_flow(console, flows[-1])

                flow(INITIAL, "initial")
                edits = PersonEdits(server.base_url, tenant.tenant_id, runtime.engine).make_all(runtime.clock.now().date())
                console.print("[bold]Edits made in XPM by people:[/bold]\n  - " + "\n  - ".join(edits))
                clock.advance(3600)
                flow(HOURLY, "hourly")
                clock.set(clock.now().replace(hour=2, minute=0) + timedelta(days=1))
                flow(NIGHTLY, "nightly")
            _print_tables(console, runtime.engine, tenant.tenant_id)
        finally:
            runtime.close()
    finally:
        server.stop()
    failed = [f for f in flows if not f.report.ok]
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s; API calls: "
                  + ", ".join(f"{f.name} {f.report.api_calls}" for f in flows))
    if failed:
        raise RuntimeError(f"the {failed[0].name} sync failed: " + "; ".join(
            f"{o.entity}: {o.error}" for o in failed[0].report.outcomes if o.error))
    return flows


def _print_flow(console: Console, flow: FlowReport) -> None:
    table = Table(title=f"{flow.name} sync: {flow.report.api_calls} API calls, {flow.seconds:.1f} s")
    for column in ("entity", "inserted", "updated", "deleted", "unchanged", "API calls", "outcome"):
        table.add_column(column, justify="left" if column in ("entity", "outcome") else "right")
    for outcome in flow.report.outcomes:
        result = outcome.result
        table.add_row(outcome.entity, f"{result.inserted:,}", f"{result.updated + result.revived:,}",
                      f"{result.deleted:,}", f"{result.unchanged:,}", str(outcome.api_calls),
                      "ok" if outcome.ok else f"failed: {outcome.error}")
    console.print(table)
    if flow.rate_limited:
        console.print(f"  XPM's per-minute limit answered 429 {flow.rate_limited} time(s); the client waited "
                      "Retry-After each time (those answers are included in the calls above).")


def _print_tables(console: Console, engine, tenant_id: str) -> None:
    table = Table(title="Warehouse tables")
    table.add_column("table")
    table.add_column("live rows", justify="right")
    table.add_column("soft-deleted", justify="right")
    with engine.connect() as conn:
        for entity in ENTITIES.values():
            target = table_for(entity)
            live = conn.execute(select(func.count()).select_from(target).where(
                target.c.tenant_id == tenant_id, target.c._deleted_at.is_(None))).scalar()
            gone = conn.execute(select(func.count()).select_from(target).where(
                target.c.tenant_id == tenant_id, target.c._deleted_at.is_not(None))).scalar()
            table.add_row(entity.table, f"{live:,}", f"{gone:,}")
        changes = conn.execute(select(func.count()).select_from(timesheet_changes)).scalar()
        table.add_row(timesheet_changes.name, f"{changes:,}", "")
    console.print(table)
