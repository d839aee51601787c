"""Source-to-warehouse reconciliation: does the warehouse hold the same keys XPM lists right now?

For each entity, the keys XPM answers (one list call for most entities) are compared with the live
warehouse rows of the same scope by count and by a SHA-256 digest of the sorted keys, so a mismatch
is found even when the counts agree. Only keys are compared: field-level drift of time entries is the
nightly comparison's business (``sync.compare``), and a full field compare would cost the same calls.

Scopes follow what XPM can list cheaply and what the syncs promise:

==================== ============================================ =========================================
entity               XPM answer                                   warehouse rows (live, this tenant)
==================== ============================================ =========================================
staff, task, client  the full list (1 call; clients detailed      all
client_contact       also gives contacts)
client_group         clientgroup.api/list (1 call)                all
client_group_member  clientgroup.api/get per group (1 per group)  all
job, job_task        job.api/current detailed (1 call)            jobs not Completed / tasks on those jobs
timesheet            time.api/list over the nightly range         entries dated inside that range
                     (15 months back, 12 ahead: 3 calls)
==================== ============================================ =========================================

Budget: the caller passes how many calls the check may spend; an entity whose calls do not fit is
reported as not checked rather than spending a tenant's quota on a check. Every call also goes
through the shared quota ledger as a background read, so when the day's budget runs low the check
gives way to exports (the entity is reported as not checked) instead of competing with them.
Plain functions: no Dagster here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.engine import Engine

from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.quota import QuotaExhausted, background_reads
from xpm_pipeline.sync.context import SyncOptions
from xpm_pipeline.sync.jobs import COMPLETED
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline.xpm.client import XPMClient
from xpm_pipeline.xpm.parse import Rows
from xpm_pipeline.xpm.windows import DateWindow, add_months, split_range
from xpm_pipeline.sync.steps import split_rows

SAMPLE = 5


@dataclass(frozen=True)
class KeySet:
    keys: frozenset[str]

    @property
    def count(self) -> int:
        return len(self.keys)

    @property
    def digest(self) -> str:
        """SHA-256 of the sorted keys, one a line (first 16 hex digits: enough to tell sets apart)."""
        text = "\n".join(sorted(self.keys)).encode()
        return hashlib.sha256(text).hexdigest()[:16]


@dataclass(frozen=True)
class Reconciliation:
    entity: str
    scope: str
    warehouse: KeySet
    xpm: KeySet | None = None  # None: not checked
    api_calls: int = 0
    skipped: str | None = None

    @property
    def checked(self) -> bool:
        return self.xpm is not None

    @property
    def matches(self) -> bool:
        if self.xpm is None:
            return False
        return self.xpm.digest == self.warehouse.digest and self.xpm.keys == self.warehouse.keys

    @property
    def missing_in_warehouse(self) -> list[str]:
        return sorted(self.xpm.keys - self.warehouse.keys) if self.xpm else []

    @property
    def extra_in_warehouse(self) -> list[str]:
        return sorted(self.warehouse.keys - self.xpm.keys) if self.xpm else []


def _key_text(values: Sequence) -> str:
    return "|".join("" if v is None else str(v).lower() for v in values)


def keys_of_rows(rows: Rows) -> frozenset[str]:
    """Keys of the rows XPM holds live (what it flags deleted is soft-deleted in the warehouse)."""
    live, _ = split_rows(rows, rows.entity.deleted_flag)
    names = rows.entity.key
    return frozenset(_key_text(values) for values in zip(*(live.column(n) for n in names)))


@dataclass
class _Budget:
    calls: int
    spent: int = 0

    def allows(self, cost: int) -> bool:
        return self.spent + cost <= self.calls


@dataclass
class _Answers:
    """XPM answers fetched so far (one call can serve two entities: clients + contacts, jobs + tasks)."""

    client: XPMClient
    budget: _Budget
    rows: dict[str, Rows] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def fetch(self, entities: Iterable[str], cost: int, read: Callable[[], dict[str, Rows]]) -> str | None:
        """Run ``read`` unless over budget; returns the reason it was not run."""
        wanted = [e for e in entities if e not in self.rows]
        if not wanted:
            return None
        if not self.budget.allows(cost):
            return f"needs {cost} XPM call(s); {self.budget.calls - self.budget.spent} left of this check's budget"
        before = self.client.counter.total
        try:
            with background_reads():  # a check gives way to exports when the day's budget runs low
                answer = read()
        except QuotaExhausted as exc:
            self.budget.spent += self.client.counter.total - before
            return f"XPM quota: {exc}"
        spent = self.client.counter.total - before
        self.budget.spent += spent
        for entity in entities:
            self.rows[entity] = answer[entity]
            self.calls[entity] = spent
        return None


def timesheet_window(today: date, options: SyncOptions | None = None) -> DateWindow:
    """The range the nightly sync re-reads (``sync.timesheets.nightly_range``): 15 months back, 12 ahead."""
    options = options or SyncOptions()
    return DateWindow(add_months(today, -options.nightly_back_months), add_months(today, options.ahead_months))


def _warehouse_keys(engine: Engine, entity: str, tenant_id: str, window: DateWindow) -> KeySet:
    spec = ENTITIES[entity]
    table = table_for(entity)
    where = [table.c.tenant_id == tenant_id, table.c._deleted_at.is_(None)]
    if entity == "job":
        where.append(table.c.state.is_distinct_from(COMPLETED))
    elif entity == "job_task":
        jobs = table_for("job")
        active = select(jobs.c.uuid).where(
            jobs.c.tenant_id == tenant_id, jobs.c._deleted_at.is_(None), jobs.c.state.is_distinct_from(COMPLETED)
        )
        where.append(table.c.job_uuid.in_(active))
    elif entity == "timesheet":
        where.append(table.c.entry_date.between(window.start, window.end))
    query = select(*(table.c[name] for name in spec.key)).where(*where)
    with engine.connect() as conn:
        return KeySet(frozenset(_key_text(row) for row in conn.execute(query)))


SCOPES = {
    "job": "active jobs (job.api/current) vs warehouse jobs not Completed",
    "job_task": "tasks of active jobs",
    "timesheet": "time entries dated {window}",
    "client_group_member": "members of every client group (one clientgroup.api/get per group)",
}


def reconcile(
    engine: Engine,
    client: XPMClient,
    tenant_id: str,
    entities: Iterable[str],
    *,
    today: date,
    max_calls: int,
) -> dict[str, Reconciliation]:
    """Compare XPM's keys with the warehouse's for each entity, spending at most ``max_calls`` calls."""
    entities = list(entities)
    unknown = [e for e in entities if e not in ENTITIES]
    if unknown:
        raise ValueError(f"unknown entities {unknown}; choose from {', '.join(ENTITIES)}")
    window = timesheet_window(today)
    answers = _Answers(client, _Budget(max_calls))
    time_windows = split_range(window.start, window.end)

    def read_times() -> dict[str, Rows]:
        rows = Rows(ENTITIES["timesheet"])
        for part in time_windows:
            rows.extend(client.time_entries(part))
        return {"timesheet": rows}

    def read_members() -> dict[str, Rows]:
        members = Rows(ENTITIES["client_group_member"])
        for uuid in answers.rows["client_group"].column("uuid"):
            members.extend(client.client_group(uuid)["client_group_member"])
        return {"client_group_member": members}

    probes: dict[str, tuple[tuple[str, ...], Callable[[], int], Callable[[], dict[str, Rows]]]] = {
        "staff": (("staff",), lambda: 1, lambda: client.staff().rows),
        "task": (("task",), lambda: 1, lambda: client.task_list().rows),
        "client": (("client", "client_contact"), lambda: 1, lambda: client.clients(detailed=True).rows),
        "client_group": (("client_group",), lambda: 1, lambda: client.client_groups().rows),
        "job": (("job", "job_task"), lambda: 1, lambda: client.current_jobs(detailed=True).rows),
        "timesheet": (("timesheet",), lambda: len(time_windows), read_times),
        "client_group_member": (
            ("client_group_member",), lambda: len(answers.rows["client_group"]), read_members,
        ),
    }
    probe_of = {"client_contact": "client", "job_task": "job"}

    def run_probe(name: str) -> str | None:
        covers, cost, read = probes[name]
        return answers.fetch(covers, cost(), read)

    results: dict[str, Reconciliation] = {}
    for entity in sorted(entities, key=lambda e: (e == "client_group_member", e == "timesheet")):  # cheap first
        probe = probe_of.get(entity, entity)
        skipped = None
        if probe == "client_group_member":
            skipped = run_probe("client_group")  # members are read group by group
        skipped = skipped or run_probe(probe)
        scope = SCOPES.get(entity, "all rows").format(window=window)
        warehouse = _warehouse_keys(engine, entity, tenant_id, window)
        if skipped:
            results[entity] = Reconciliation(entity, scope, warehouse, skipped=skipped)
        else:
            results[entity] = Reconciliation(
                entity, scope, warehouse, KeySet(keys_of_rows(answers.rows[entity])), answers.calls[entity]
            )
    return {entity: results[entity] for entity in entities}
