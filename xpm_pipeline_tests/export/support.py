"""Changes built from what the sandbox practice really holds (read from its model, spending no quota)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta

from xpm_pipeline.sandbox import SandboxServer


def current_jobs(sandbox: SandboxServer, tenant: str):
    state = sandbox.tenant(tenant)
    return [job for job in state.jobs.values() if not state.job_is_complete(job) and job.tasks]


def timesheet_creates(sandbox: SandboxServer, tenant: str, count: int, day: date, *, prefix: str = "ts") -> list[dict]:
    """``count`` new time entries on current jobs, each with a distinct note (so each is findable)."""
    state = sandbox.tenant(tenant)
    staff = sorted(state.staff)
    jobs = current_jobs(sandbox, tenant)
    pairs = itertools.cycle([(job, task) for job in jobs for task in job.tasks])
    changes = []
    for n in range(count):
        job, task = next(pairs)
        changes.append({
            "kind": "timesheet", "op": "create", "key": f"{prefix}-{n}",
            "fields": {"Job": job.job_number, "TaskUUID": task.uuid, "StaffUUID": staff[n % len(staff)],
                       "Date": day.isoformat(), "Minutes": 15 + n % 60, "Note": f"{prefix} entry {n}"},
        })
    return changes


def job_updates(sandbox: SandboxServer, tenant: str, count: int, *, budget: str = "1234.00") -> list[dict]:
    return [
        {"kind": "job", "op": "update", "key": job.job_number, "fields": {"Budget": budget}}
        for job in current_jobs(sandbox, tenant)[:count]
    ]


def client_updates(sandbox: SandboxServer, tenant: str, count: int, *, phone: str = "+64 9 555 0100") -> list[dict]:
    state = sandbox.tenant(tenant)
    live = [c for c in state.clients.values() if not c.is_deleted][:count]
    return [{"kind": "client", "op": "update", "key": c.uuid, "fields": {"Phone": phone}} for c in live]


def task_updates(sandbox: SandboxServer, tenant: str, count: int, *, minutes: int = 95) -> list[dict]:
    tasks = [task for job in current_jobs(sandbox, tenant) for task in job.tasks][:count]
    return [{"kind": "task", "op": "update", "key": t.uuid, "fields": {"EstimatedMinutes": minutes}} for t in tasks]


def entries_with_note(sandbox: SandboxServer, tenant: str, note: str) -> list:
    return [t for t in sandbox.tenant(tenant).times.values() if t.note == note]


def max_in_any_minute(times: list[datetime]) -> int:
    """The most moments that fall in any 60-second window."""
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= timedelta(seconds=60):
            start += 1
        best = max(best, end - start + 1)
    return best
