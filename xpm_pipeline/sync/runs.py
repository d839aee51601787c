"""Sync bookkeeping in ``xpm_sync_runs`` / ``xpm_sync_checkpoints``: one row per run and entity.

Why it matters: the initial sync of a large practice makes ~50 calls over several minutes. A run that
is killed half way must resume without re-fetching the windows it committed, and a second process must
not sync the same tenant and entity at the same time. Both are decided here, from the database, so the
CLI and Dagster runs agree.

- A run holds a lease (its ``heartbeat_at``), renewed at every checkpoint. Starting a run while another
  live one holds the lease for the same tenant and entity fails with a one-line error.
- A step that loads child tables with its parent (client -> client_contact, client_group ->
  client_group_member, job -> job_task) writes one row per table, started and ended together, so each
  table has its own inserted/updated/deleted. The parent's row holds the lease, the checkpoints and the
  step's API calls (a child's rows arrive in the parent's answers: its row records 0 calls), so summing
  ``api_calls`` over rows never counts a call twice.
- A run that stopped without finishing (killed: ``running`` with an expired lease; or ``failed``)
  leaves checkpoints; the next run of the same mode adopts them (``resumes_run_id``) and skips those
  scopes. A run that succeeded starts the next one afresh.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Engine

from xpm_pipeline.clock import Clock
from xpm_pipeline.secrets import redact
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.warehouse.load import LoadResult
from xpm_pipeline.warehouse.schema import sync_checkpoints, sync_runs

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
DEFAULT_LEASE = timedelta(minutes=15)


class SyncBusy(RuntimeError):
    """Another live run is syncing this tenant and entity."""


TableResults = Mapping[str, LoadResult]
"""What a step loaded, per table (entity name): ``{"job": LoadResult(...), "job_task": LoadResult(...)}``."""


def per_table() -> defaultdict[str, LoadResult]:
    """Counts of a step that loads several tables: ``loaded["job_task"] += load_entity(...)``."""
    return defaultdict(LoadResult)


@dataclass
class SyncRun:
    """A started run; ``checkpoint`` and ``finish``/``fail`` write through to the database at once.

    ``run_id`` is the row of the step's own entity; ``run_ids`` maps every table the step loads (its
    entity first, then children) to its row, and ``tables`` holds what the run committed per table.
    """

    engine: Engine
    clock: Clock
    run_id: str
    tenant_id: str
    entity: str
    mode: str
    done_scopes: frozenset[str] = frozenset()
    resumes_run_id: str | None = None
    lease: timedelta = DEFAULT_LEASE
    run_ids: dict[str, str] = field(default_factory=dict)
    tables: dict[str, LoadResult] = field(default_factory=dict)  # what this run committed so far, per table

    def __post_init__(self) -> None:
        self.run_ids = {self.entity: self.run_id, **self.run_ids}
        self.tables = {name: self.tables.get(name, LoadResult()) for name in self.run_ids}

    @property
    def total(self) -> LoadResult:
        """What the run committed over all its tables."""
        result = LoadResult()
        for counts in self.tables.values():
            result += counts
        return result

    def is_done(self, scope: str) -> bool:
        return scope in self.done_scopes

    def checkpoint(self, scope: str, *, result: LoadResult | TableResults, api_calls: int) -> None:
        """Record a committed unit of work (call after its load committed) and renew the lease.

        ``result`` is a ``LoadResult`` of the run's own entity, or one per table the step loads."""
        results = self._per_table(result)
        now = self.clock.now()
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(sync_checkpoints).values(
                    run_id=self.run_id, scope=scope, tenant_id=self.tenant_id, completed_at=now,
                    rows=sum(r.inserted + r.updated + r.revived for r in results.values()), api_calls=api_calls,
                )
            )
            self._record(conn, results, api_calls, now)

    def add(self, result: LoadResult | TableResults, *, api_calls: int = 0) -> None:
        """Add work done outside checkpoints to the run's totals (per table, as ``checkpoint``)."""
        results = self._per_table(result)
        with write_transaction(self.engine) as conn:
            self._record(conn, results, api_calls, self.clock.now())

    def finish(self) -> None:
        self._end(SUCCEEDED, None)

    def fail(self, error: BaseException | str) -> None:
        text = str(error) if not isinstance(error, str) else error
        line = redact(text.splitlines()[0] if text else type(error).__name__)[:500]
        self._end(FAILED, line)

    def _per_table(self, result: LoadResult | TableResults) -> dict[str, LoadResult]:
        results = {self.entity: result} if isinstance(result, LoadResult) else dict(result)
        unknown = sorted(set(results) - set(self.run_ids))
        if unknown:
            raise ValueError(f"the {self.entity} run does not load {', '.join(unknown)}; "
                             f"name it among the step's tables (sync.run.STEPS loads)")
        return results

    def _record(self, conn, results: dict[str, LoadResult], api_calls: int, now: datetime) -> None:
        """Counts on each table's row; the calls and the lease on the step's own row."""
        for name, run_id in self.run_ids.items():
            counts = results.get(name)
            if name != self.entity and counts is None:
                continue
            calls = api_calls if name == self.entity else 0
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.run_id == run_id)
                .values(heartbeat_at=now, **_count_increments(counts or LoadResult(), calls))
            )
        for name, counts in results.items():
            self.tables[name] += counts

    def _end(self, status: str, error: str | None) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.run_id.in_(list(self.run_ids.values())))
                .values(status=status, ended_at=self.clock.now(), error=error)
            )


def _count_increments(result: LoadResult, api_calls: int) -> dict:
    return {
        "rows_inserted": sync_runs.c.rows_inserted + result.inserted,
        "rows_updated": sync_runs.c.rows_updated + result.updated + result.revived,
        "rows_deleted": sync_runs.c.rows_deleted + result.deleted,
        "api_calls": sync_runs.c.api_calls + api_calls,
    }


def start_run(
    engine: Engine,
    clock: Clock,
    *,
    tenant_id: str,
    entity: str,
    mode: str,
    children: Sequence[str] = (),
    resumable: bool = False,
    orchestrator_run_id: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> SyncRun:
    """Open a run row for ``entity`` and one for each child table the step loads with it; with
    ``resumable``, adopt the checkpoints of the last unfinished run of this mode."""
    now = clock.now()
    tables = [entity, *(child for child in children if child != entity)]
    with write_transaction(engine) as conn:
        same = and_(sync_runs.c.tenant_id == tenant_id, sync_runs.c.entity == entity)
        live = conn.execute(
            select(sync_runs.c.run_id, sync_runs.c.started_at, sync_runs.c.heartbeat_at)
            .where(sync_runs.c.tenant_id == tenant_id, sync_runs.c.entity.in_(tables), sync_runs.c.status == RUNNING)
            .with_for_update()
        ).all()
        for row in live:
            if row.heartbeat_at + lease > now:
                raise SyncBusy(
                    f"another {entity} sync of tenant {tenant_id} is running (run {row.run_id}, started "
                    f"{row.started_at:%Y-%m-%d %H:%M:%S} UTC); wait for it or let its lease expire"
                )
        if live:  # lease expired: the process died without a word
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.run_id.in_([row.run_id for row in live]))
                .values(status=FAILED, ended_at=now, error="abandoned: the process stopped without finishing")
            )
        resumed_from, done = None, frozenset()
        if resumable:
            last = conn.execute(
                select(sync_runs.c.run_id, sync_runs.c.status)
                .where(same, sync_runs.c.mode == mode)
                .order_by(sync_runs.c.started_at.desc(), sync_runs.c.run_id.desc())
                .limit(1)
            ).first()
            if last is not None and last.status == FAILED:
                resumed_from = last.run_id
                done = frozenset(_scopes_of_chain(conn, last.run_id))
        run_ids = {name: str(uuid.uuid4()) for name in tables}
        conn.execute(
            insert(sync_runs),
            [
                dict(run_id=run_ids[name], tenant_id=tenant_id, entity=name, mode=mode, status=RUNNING,
                     started_at=now, heartbeat_at=now, resumes_run_id=resumed_from if name == entity else None,
                     orchestrator_run_id=orchestrator_run_id)
                for name in tables
            ],
        )
    return SyncRun(engine, clock, run_ids[entity], tenant_id, entity, mode, done, resumed_from, lease, run_ids=run_ids)


def _scopes_of_chain(conn, run_id: str) -> Iterable[str]:
    """Checkpoints of a failed run and of the failed runs it resumed, back to a fresh start."""
    scopes: set[str] = set()
    seen: set[str] = set()
    current: str | None = run_id
    while current and current not in seen:
        seen.add(current)
        scopes.update(conn.execute(select(sync_checkpoints.c.scope).where(sync_checkpoints.c.run_id == current)).scalars())
        current = conn.execute(select(sync_runs.c.resumes_run_id).where(sync_runs.c.run_id == current)).scalar()
    return scopes


def last_success(engine: Engine, tenant_id: str, entity: str, modes: Iterable[str] | None = None) -> datetime | None:
    """When the last successful run of this entity started (a cursor for change feeds)."""
    query = select(func.max(sync_runs.c.started_at)).where(
        sync_runs.c.tenant_id == tenant_id, sync_runs.c.entity == entity, sync_runs.c.status == SUCCEEDED
    )
    if modes is not None:
        query = query.where(sync_runs.c.mode.in_(list(modes)))
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def successes_since(engine: Engine, tenant_id: str, entity: str, mode: str, since: datetime | None) -> int:
    """How many successful ``mode`` runs of the entity started after ``since`` (None: ever)."""
    query = select(func.count()).where(
        sync_runs.c.tenant_id == tenant_id, sync_runs.c.entity == entity, sync_runs.c.status == SUCCEEDED,
        sync_runs.c.mode == mode,
    )
    if since is not None:
        query = query.where(sync_runs.c.started_at > since)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def last_checkpoint(engine: Engine, tenant_id: str, scope: str) -> datetime | None:
    """When a unit of work with this scope name last completed for the tenant."""
    query = select(func.max(sync_checkpoints.c.completed_at)).where(
        sync_checkpoints.c.tenant_id == tenant_id, sync_checkpoints.c.scope == scope
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar()
