"""``make demo``: the whole connection path against a seeded sandbox practice, with a report.

Sandbox up -> OAuth consent completed by script -> tokens stored encrypted in the embedded SQLite
warehouse -> every entity read through the real client -> rows and API calls per entity.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from xpm_pipeline.config import IdentityEndpoints, Settings, api_base_from
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.secrets import Secret, TokenCipher
from xpm_pipeline.xpm.client import XPMClient
from xpm_pipeline.xpm.windows import add_months, month_windows


@dataclass
class EntityRead:
    rows: int = 0
    calls: int = 0
    seconds: float = 0.0


@dataclass
class TenantReport:
    tenant_id: str
    tenant_name: str
    reads: dict[str, EntityRead] = field(default_factory=dict)
    rate_limited: int = 0  # 429s answered by waiting Retry-After

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.reads.values())


def _measure(report: TenantReport, client: XPMClient, name: str, rows: int, started: float, calls_before: int) -> None:
    read = report.reads.setdefault(name, EntityRead())
    read.rows += rows
    read.calls += client.counter.total - calls_before
    read.seconds += time.perf_counter() - started


def read_everything(client: XPMClient, today: date, report: TenantReport) -> TenantReport:
    """What an initial sync reads: every entity, time entries from 3 years back to 1 year ahead."""
    def step(name, fn):
        started, before = time.perf_counter(), client.counter.total
        result = fn()
        for entity_name, rows in result.items():
            _measure(report, client, entity_name, rows, started, before)
            started, before = time.perf_counter(), client.counter.total

    def clients():
        parsed = client.clients(detailed=True)
        return {"client": len(parsed["client"]), "client_contact": len(parsed["client_contact"])}

    def groups():
        parsed = client.client_groups()
        members = sum(len(client.client_group(uuid)["client_group_member"]) for uuid in parsed["client_group"].column("uuid"))
        return {"client_group": len(parsed["client_group"]), "client_group_member": members}

    def jobs():
        parsed = client.current_jobs(detailed=True)
        return {"job": len(parsed["job"]), "job_task": len(parsed["job_task"])}

    def times():
        total = 0
        for _, rows in client.time_entries_between(add_months(today, -36), add_months(today, 12)):
            total += len(rows)
        return {"timesheet": total}

    step("clients", clients)
    step("client groups", groups)
    step("staff", lambda: {"staff": len(client.staff()["staff"])})
    step("task list", lambda: {"task": len(client.task_list()["task"])})
    step("jobs", jobs)
    step("time", times)
    return report


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
    if warehouse.exists():
        warehouse.unlink()  # each demo run starts from an empty embedded warehouse
    started = time.perf_counter()
    with console.status(f"starting the XPM sandbox ({size} practice, seed {seed})"):
        server = SandboxServer(SandboxConfig(size=size, seed=seed, tenants=1), host="127.0.0.1", port=0)
        server.start()
    try:
        console.print(f"XPM sandbox: {server.base_url} ({time.perf_counter() - started:.1f} s to generate and start)")
        settings = Settings(
            home=home,
            warehouse_url=f"sqlite:///{warehouse.as_posix()}",
            api_base_url=api_base_from(server.base_url),
            identity=IdentityEndpoints.same_origin(server.base_url),
            client_id=server.client_id,
            client_secret=Secret(server.client_secret),
            token_key=Secret(_demo_key(home)),
        )
        runtime = open_runtime(settings)
        try:
            with console.status("connecting: OAuth consent, code exchange, tenant list"):
                _, connections = connect(runtime.tokens, auto_consent=True)
            console.print(f"connected {len(connections)} organisation(s); tokens stored encrypted in {warehouse}")
            today = runtime.clock.now().date()
            reports = []
            for connection in connections:
                report = TenantReport(connection.tenant_id, connection.tenant_name)
                with console.status(f"reading every entity of {connection.tenant_name}"):
                    with runtime.client(connection.tenant_id) as client:
                        read_everything(client, today, report)
                        report.rate_limited = client.counter.rate_limited
                reports.append(report)
                _print_report(console, report)
        finally:
            runtime.close()
    finally:
        server.stop()
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return reports


def _print_report(console: Console, report: TenantReport) -> None:
    table = Table(title=f"{report.tenant_name} ({report.tenant_id})")
    table.add_column("entity")
    table.add_column("warehouse table")
    table.add_column("rows", justify="right")
    table.add_column("API calls", justify="right")
    table.add_column("seconds", justify="right")
    for name, read in report.reads.items():
        table.add_row(name, ENTITIES[name].table, f"{read.rows:,}", str(read.calls), f"{read.seconds:.2f}")
    table.add_row("total", "", f"{sum(r.rows for r in report.reads.values()):,}", str(report.calls), "")
    console.print(table)
    if report.rate_limited:
        console.print(
            f"XPM's 60-calls-a-minute limit answered 429 {report.rate_limited} time(s); the client waited "
            "Retry-After each time (those 429 answers are included in the calls above)."
        )
