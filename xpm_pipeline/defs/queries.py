"""Warehouse queries the Dagster assets and checks report from. Plain SQLAlchemy, no Dagster.

They read only; every count is per tenant, so one tenant's check never looks at another's rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, exists, func, select
from sqlalchemy.engine import Engine

from xpm_pipeline.sync.runs import SUCCEEDED
from xpm_pipeline.warehouse.schema import sync_runs, table_for, timesheet_changes

SAMPLE = 5


@dataclass(frozen=True)
class RowCounts:
    live: int
    deleted: int


def row_counts(engine: Engine, entity: str, tenant_id: str) -> RowCounts:
    """Live and soft-deleted rows of one tenant in an entity table."""
    table = table_for(entity)
    query = select(
        func.count().filter(table.c._deleted_at.is_(None)),
        func.count().filter(table.c._deleted_at.is_not(None)),
    ).where(table.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        live, deleted = conn.execute(query).one()
    return RowCounts(int(live or 0), int(deleted or 0))


def timesheet_change_counts(engine: Engine, tenant_id: str, run_id: str | None = None) -> dict[str, int]:
    """Changes the nightly comparison logged (for one sync run, or all of the tenant's), by change type."""
    query = (
        select(
            timesheet_changes.c.change_type,
            func.count(),
            func.count(func.distinct(timesheet_changes.c.timesheet_uuid)),
        )
        .where(timesheet_changes.c.tenant_id == tenant_id)
        .group_by(timesheet_changes.c.change_type)
    )
    if run_id is not None:
        query = query.where(timesheet_changes.c.run_id == run_id)
    counts = {"changed": 0, "added": 0, "deleted": 0}
    entries = 0
    with engine.connect() as conn:
        for change_type, rows, distinct_entries in conn.execute(query):
            counts[change_type] = int(rows)
            entries += int(distinct_entries)
    counts["total"] = counts["changed"] + counts["added"] + counts["deleted"]
    counts["entries"] = entries
    return counts


@dataclass(frozen=True)
class Orphans:
    """Live time entries whose reference has no row at all (``missing``) or only a soft-deleted one."""

    target: str
    missing: int
    to_deleted: int
    sample: tuple[str, ...]


_REFERENCES = (
    # (name, timesheet column, referenced entity, referenced column)
    ("job", "job_number", "job", "job_number"),
    ("staff", "staff_uuid", "staff", "uuid"),
    ("task", "task_uuid", "job_task", "uuid"),
)


def orphan_time_entries(engine: Engine, tenant_id: str) -> list[Orphans]:
    """Referential integrity of ``xpm_timesheets``: time entries -> jobs, staff, tasks on jobs."""
    times = table_for("timesheet")
    results = []
    with engine.connect() as conn:
        for name, column, entity, target_column in _REFERENCES:
            target = table_for(entity)
            same = and_(target.c.tenant_id == times.c.tenant_id, target.c[target_column] == times.c[column])
            base = [times.c.tenant_id == tenant_id, times.c._deleted_at.is_(None), times.c[column].is_not(None)]
            missing_where = [*base, ~exists().where(same)]
            missing = conn.execute(select(func.count()).select_from(times).where(*missing_where)).scalar()
            sample = conn.execute(
                select(times.c.uuid).where(*missing_where).order_by(times.c.uuid).limit(SAMPLE)
            ).scalars().all()
            to_deleted = conn.execute(
                select(func.count()).select_from(times).where(
                    *base, exists().where(same, target.c._deleted_at.is_not(None)),
                    ~exists().where(same, target.c._deleted_at.is_(None)),
                )
            ).scalar()
            results.append(Orphans(name, int(missing or 0), int(to_deleted or 0), tuple(sample)))
    return results


def last_successes(engine: Engine, entities: Iterable[str]) -> dict[tuple[str, str], datetime]:
    """When the last successful sync run (any mode) of each (tenant, entity) ended."""
    query = (
        select(sync_runs.c.tenant_id, sync_runs.c.entity, func.max(sync_runs.c.ended_at))
        .where(sync_runs.c.status == SUCCEEDED, sync_runs.c.entity.in_(list(entities)))
        .group_by(sync_runs.c.tenant_id, sync_runs.c.entity)
    )
    with engine.connect() as conn:
        return {(tenant, entity): ended for tenant, entity, ended in conn.execute(query) if ended is not None}


def synced_tenants(engine: Engine) -> set[str]:
    """Tenants with at least one successful sync run: a reconnect of these needs no initial sync."""
    query = select(sync_runs.c.tenant_id).where(sync_runs.c.status == SUCCEEDED).distinct()
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())
