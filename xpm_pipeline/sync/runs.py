"""Sync bookkeeping in ``xpm_sync_runs`` / ``xpm_sync_checkpoints``: one row per run and entity.

Why it matters: the initial sync of a large practice makes ~50 calls over several minutes. A run that
is killed half way must resume without re-fetching the windows it committed, and a second process must
not sync the same tenant and entity at the same time. Both are decided here, from the database, so the
CLI and Dagster runs agree.

- A run holds a lease (its ``heartbeat_at``), renewed at every checkpoint. Starting a run while another
  live one holds the lease for the same tenant and entity fails with a one-line error.
- A run that stopped without finishing (killed: ``running`` with an expired lease; or ``failed``)
  leaves checkpoints; the next run of the same mode adopts them (``resumes_run_id``) and skips those
  scopes. A run that succeeded starts the next one afresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
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


@dataclass
class SyncRun:
    """A started run; ``checkpoint`` and ``finish``/``fail`` write through to the database at once."""

    engine: Engine
    clock: Clock
    run_id: str
    tenant_id: str
    entity: str
    mode: str
    done_scopes: frozenset[str] = frozenset()
    resumes_run_id: str | None = None
    lease: timedelta = DEFAULT_LEASE
    total: LoadResult = field(default_factory=LoadResult)  # what this run committed so far

    def is_done(self, scope: str) -> bool:
        return scope in self.done_scopes

    def checkpoint(self, scope: str, *, result: LoadResult, api_calls: int) -> None:
        """Record a committed unit of work (call after its load committed) and renew the lease."""
        now = self.clock.now()
        with write_transaction(self.engine) as conn:
            conn.execute(
                insert(sync_checkpoints).values(
                    run_id=self.run_id, scope=scope, tenant_id=self.tenant_id, completed_at=now,
                    rows=result.inserted + result.updated + result.revived, api_calls=api_calls,
                )
            )
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.run_id == self.run_id)
                .values(heartbeat_at=now, **_count_increments(result, api_calls))
            )
        self.total += result

    def add(self, result: LoadResult, *, api_calls: int = 0) -> None:
        """Add work done outside checkpoints to the run's totals."""
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.run_id == self.run_id)
                .values(heartbeat_at=self.clock.now(), **_count_increments(result, api_calls))
            )
        self.total += result

    def finish(self) -> None:
        self._end(SUCCEEDED, None)

    def fail(self, error: BaseException | str) -> None:
        text = str(error) if not isinstance(error, str) else error
        line = redact(text.splitlines()[0] if text else type(error).__name__)[:500]
        self._end(FAILED, line)

    def _end(self, status: str, error: str | None) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(sync_runs)
                .where(sync_runs.c.run_id == self.run_id)
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
    resumable: bool = False,
    orchestrator_run_id: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
) -> SyncRun:
    """Open a run row; with ``resumable``, adopt the checkpoints of the last unfinished run of this mode."""
    now = clock.now()
    with write_transaction(engine) as conn:
        same = and_(sync_runs.c.tenant_id == tenant_id, sync_runs.c.entity == entity)
        live = conn.execute(
            select(sync_runs.c.run_id, sync_runs.c.started_at, sync_runs.c.heartbeat_at)
            .where(same, sync_runs.c.status == RUNNING)
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
        run_id = str(uuid.uuid4())
        conn.execute(
            insert(sync_runs).values(
                run_id=run_id, tenant_id=tenant_id, entity=entity, mode=mode, status=RUNNING,
                started_at=now, heartbeat_at=now, resumes_run_id=resumed_from,
                orchestrator_run_id=orchestrator_run_id,
            )
        )
    return SyncRun(engine, clock, run_id, tenant_id, entity, mode, done, resumed_from, lease)


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
