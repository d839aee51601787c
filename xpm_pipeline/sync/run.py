"""Running a sync: which entities each mode touches, in which order, each as its own recorded run.

The same function serves the CLI (``xpm-pipeline sync``), the demo and the Dagster assets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, RESYNC, SyncContext
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.sync.guard import RemovalHeld
from xpm_pipeline.sync.jobs import sync_jobs
from xpm_pipeline.sync.removals import clear_held, record_held
from xpm_pipeline.sync.runs import SyncBusy, SyncRun, TableResults, start_run
from xpm_pipeline.sync.steps import sync_client_groups, sync_clients, sync_staff, sync_task_list
from xpm_pipeline.sync.timesheets import sync_timesheets
from xpm_pipeline.warehouse.load import LoadResult
from xpm_pipeline.xpm.errors import XPMAuthError

ALL_MODES = frozenset({INITIAL, HOURLY, NIGHTLY, RESYNC})
FULL_MODES = frozenset({INITIAL, NIGHTLY, RESYNC})


@dataclass(frozen=True)
class Step:
    entity: str  # the registry entity the step is named after (children come along)
    run: Callable[[SyncContext, SyncRun], LoadResult | TableResults]
    modes: frozenset[str]
    loads: tuple[str, ...]  # every entity (table) the step writes, its own first; each has its xpm_sync_runs row
    resumable: bool = False

    @property
    def children(self) -> tuple[str, ...]:
        return tuple(name for name in self.loads if name != self.entity)


STEPS: tuple[Step, ...] = (
    Step("staff", sync_staff, ALL_MODES, ("staff",)),
    Step("task", sync_task_list, FULL_MODES, ("task",)),
    Step("client", sync_clients, FULL_MODES, ("client", "client_contact")),
    Step("client_group", sync_client_groups, FULL_MODES, ("client_group", "client_group_member")),
    Step("job", sync_jobs, FULL_MODES, ("job", "job_task")),
    Step("timesheet", sync_timesheets, ALL_MODES, ("timesheet",), resumable=True),
)
STEP_BY_ENTITY = {step.entity: step for step in STEPS}


@dataclass
class EntityOutcome:
    """One step of a sync: what it committed per table, what it cost, how it ended."""

    entity: str
    run_id: str | None  # the step's own xpm_sync_runs row
    tables: dict[str, LoadResult] = field(default_factory=dict)  # per table the step loads (its own first)
    run_ids: dict[str, str] = field(default_factory=dict)  # per table: its xpm_sync_runs row
    api_calls: int = 0  # the step's calls (its children are read with it)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def result(self) -> LoadResult:
        """The step's counts over all its tables."""
        total = LoadResult()
        for counts in self.tables.values():
            total += counts
        return total

    def table(self, entity: str) -> LoadResult:
        return self.tables.get(entity, LoadResult())


@dataclass
class SyncReport:
    tenant_id: str
    mode: str
    outcomes: list[EntityOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    @property
    def api_calls(self) -> int:
        return sum(outcome.api_calls for outcome in self.outcomes)

    @property
    def total(self) -> LoadResult:
        result = LoadResult()
        for outcome in self.outcomes:
            result += outcome.result
        return result


def steps_for(mode: str, entities: Iterable[str] | None = None) -> list[Step]:
    """The steps a mode runs, optionally narrowed to some entities (a child names its parent's step)."""
    if entities is None:
        return [step for step in STEPS if mode in step.modes]
    chosen = []
    for name in entities:
        step = STEP_BY_ENTITY.get(name) or next((s for s in STEPS if name in s.loads), None)
        if step is None:
            raise ValueError(f"unknown entity {name!r}; choose from {', '.join(STEP_BY_ENTITY)}")
        if mode not in step.modes:
            hourly = ", ".join(s.entity for s in STEPS if HOURLY in s.modes)
            raise ValueError(f"the {mode} sync does not cover {step.entity} (hourly covers: {hourly})")
        if step not in chosen:
            chosen.append(step)
    return [step for step in STEPS if step in chosen]


def run_sync(ctx: SyncContext, entities: Iterable[str] | None = None, *, on_step=None) -> SyncReport:
    """Run each step as its own recorded run; a failed entity does not stop the others, except an
    authorisation failure, which would fail them all the same way."""
    report = SyncReport(ctx.tenant_id, ctx.mode)
    for step in steps_for(ctx.mode, entities):
        if on_step:
            on_step(step.entity)
        calls = ctx.calls()
        outcome = EntityOutcome(step.entity, None, tables={name: LoadResult() for name in step.loads})
        report.outcomes.append(outcome)
        try:
            run = start_run(ctx.engine, ctx.clock, tenant_id=ctx.tenant_id, entity=step.entity, mode=ctx.mode,
                            children=step.children, resumable=step.resumable,
                            orchestrator_run_id=ctx.orchestrator_run_id)
        except SyncBusy as exc:
            outcome.error = str(exc)
            continue
        outcome.run_id, outcome.run_ids = run.run_id, dict(run.run_ids)
        ctx.guard.sync_run_id = run.run_id
        try:
            step.run(ctx, run)
        except Exception as exc:  # recorded on the run; the caller sees it in the report
            outcome.tables = dict(run.tables)  # what was committed before the failure stays committed
            outcome.error = _one_line(exc)
            outcome.api_calls = ctx.calls() - calls
            run.fail(exc)
            if isinstance(exc, RemovalHeld):
                record_held(ctx.engine, exc.held)
            if isinstance(exc, XPMAuthError):
                break
            continue
        outcome.tables = dict(run.tables)
        outcome.api_calls = ctx.calls() - calls
        run.finish()
        if ctx.mode != HOURLY:  # a run that could have removed rows and stayed within the bounds
            clear_held(ctx.engine, ctx.tenant_id, [ENTITIES[name].table for name in step.loads], at=ctx.now)
    return report


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, RemovalHeld):
        return text
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
