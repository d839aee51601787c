"""Jobs and their tasks. XPM has no change feed and no deleted flag for jobs, so each night:

- ``job.api/current`` (detailed) gives every active job with its tasks: loaded as they are, and tasks
  missing from an active job are soft-deleted (deleted in XPM);
- ``job.api/list`` over the last few weeks catches jobs created lately, even if already closed (initial
  and re-sync read it over the whole time-entry history, so old time entries find their closed jobs);
- a job the warehouse holds as active that is in neither answer has left the active list: it is
  confirmed with ``job.api/get`` while the nightly budget allows (its real state, or "not found" =
  deleted), and otherwise marked ``Completed`` with its tasks, ``_completed_reason`` saying why.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, select, update

from xpm_pipeline.export.protect import protect_pending
from xpm_pipeline.sync.context import SyncContext
from xpm_pipeline.sync.guard import COMPLETED as COMPLETED_KIND
from xpm_pipeline.sync.runs import SyncRun, TableResults, per_table
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.warehouse.load import LoadResult, Scope, load_entity, mark_deleted
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline.xpm.errors import XPMNotFound
from xpm_pipeline.xpm.parse import Rows
from xpm_pipeline.xpm.windows import add_months, split_range

COMPLETED = "Completed"
REASON_MISSING = "missing from XPM's active job list (job.api/current); not confirmed"
REASON_DELETED = "deleted in XPM (job.api/get: not found)"


def _merge_rows(row_sets: list[dict[str, Rows]]) -> dict[str, Rows]:
    """One batch per entity from several answers (a key seen twice: the loader keeps the last row)."""
    merged: dict[str, Rows] = {}
    for row_set in row_sets:
        for name, rows in row_set.items():
            if name in merged:
                merged[name].extend(rows)
            else:
                merged[name] = rows
    return merged


def sync_jobs(ctx: SyncContext, run: SyncRun) -> TableResults:
    calls = ctx.calls()
    answers = [ctx.client.current_jobs(detailed=True)]
    current_uuids = set(answers[0]["job"].column("uuid"))
    for window in _created_windows(ctx):
        answers.append(ctx.client.jobs_created(window, detailed=True))
    seen = _merge_rows([answer.rows for answer in answers])
    gone = _active_jobs_missing(ctx, set(seen["job"].column("uuid")))

    confirmed, deleted, unconfirmed = [], [], []
    for job_uuid, job_number in gone:
        if len(confirmed) + len(deleted) >= ctx.options.confirm_missing_jobs:
            unconfirmed.append(job_uuid)
            continue
        try:
            confirmed.append(ctx.client.job(job_number))
        except XPMNotFound:
            deleted.append(job_uuid)
    if confirmed:
        seen = _merge_rows([seen, *(answer.rows for answer in confirmed)])

    loaded_uuids = set(seen["job"].column("uuid"))
    with write_transaction(ctx.engine) as conn:
        protect_pending(conn, ctx.tenant_id, seen["job"])  # queued edits not yet in XPM keep their values
        result = per_table()
        result["job"] = load_entity(conn, "job", ctx.tenant_id, seen["job"], synced_at=ctx.now)
        result["job_task"] = load_entity(conn, "job_task", ctx.tenant_id, seen["job_task"], synced_at=ctx.now,
                                         delete_missing=Scope("job_uuid", within=sorted(loaded_uuids)),
                                         on_removal=ctx.guard)
        _clear_reason(conn, ctx, current_uuids)
        for confirmed_answer in confirmed:
            job = confirmed_answer["job"].records()[0]
            if job["uuid"] not in current_uuids:
                _set_reason(conn, ctx, [job["uuid"]], f"left XPM's active job list; XPM state: {job['state']}")
        completed_jobs, completed_tasks = _mark_completed(conn, ctx, unconfirmed, REASON_MISSING)
        result["job"] += completed_jobs
        result["job_task"] += completed_tasks
        if deleted:
            _set_reason(conn, ctx, deleted, REASON_DELETED)
            result["job"] += LoadResult(deleted=mark_deleted(conn, "job", ctx.tenant_id, deleted, at=ctx.now,
                                                             on_removal=ctx.guard))
            job_tasks = table_for("job_task")
            task_keys = conn.execute(
                select(job_tasks.c.uuid).where(job_tasks.c.tenant_id == ctx.tenant_id, job_tasks.c.job_uuid.in_(deleted))
            ).scalars().all()
            result["job_task"] += LoadResult(deleted=mark_deleted(conn, "job_task", ctx.tenant_id, task_keys, at=ctx.now,
                                                                  on_removal=ctx.guard))
    run.add(result, api_calls=ctx.calls() - calls)
    return result


def _created_windows(ctx: SyncContext):
    """Initial and re-sync also bring the jobs created over the time-entry history (closed ones too,
    so every time entry finds its job); nightly looks at the last few weeks only."""
    if ctx.full:
        return split_range(add_months(ctx.today, -ctx.options.initial_back_months), ctx.today)
    return split_range(ctx.today - timedelta(days=ctx.options.recent_jobs_days), ctx.today)


def _active_jobs_missing(ctx: SyncContext, seen: set[str]) -> list[tuple[str, str]]:
    jobs = table_for("job")
    with ctx.engine.connect() as conn:
        rows = conn.execute(
            select(jobs.c.uuid, jobs.c.job_number).where(
                jobs.c.tenant_id == ctx.tenant_id,
                jobs.c._deleted_at.is_(None),
                jobs.c.state.is_distinct_from(COMPLETED),
            ).order_by(jobs.c.job_number)
        ).all()
    return [(row.uuid, row.job_number) for row in rows if row.uuid not in seen]


def _clear_reason(conn, ctx: SyncContext, uuids: set[str]) -> None:
    """A job back on the active list (reopened) loses the reason it was marked completed."""
    if not uuids:
        return
    jobs = table_for("job")
    conn.execute(
        update(jobs)
        .where(jobs.c.tenant_id == ctx.tenant_id, jobs.c.uuid.in_(sorted(uuids)), jobs.c._completed_reason.is_not(None))
        .values(_completed_reason=None)
    )


def _set_reason(conn, ctx: SyncContext, uuids: list[str], reason: str) -> None:
    jobs = table_for("job")
    conn.execute(
        update(jobs)
        .where(jobs.c.tenant_id == ctx.tenant_id, jobs.c.uuid.in_(uuids), jobs.c._completed_reason.is_distinct_from(reason))
        .values(_completed_reason=reason)
    )


def _mark_completed(conn, ctx: SyncContext, uuids: list[str], reason: str) -> tuple[LoadResult, LoadResult]:
    """The heuristic: a job gone from the active list is Completed, and so are its tasks (counts: jobs, tasks)."""
    if not uuids:
        return LoadResult(), LoadResult()
    jobs, tasks = table_for("job"), table_for("job_task")
    marked = conn.execute(
        update(jobs)
        .where(jobs.c.tenant_id == ctx.tenant_id, jobs.c.uuid.in_(uuids), jobs.c.state.is_distinct_from(COMPLETED))
        .values(state=COMPLETED, _completed_reason=reason, _synced_at=ctx.now)
    ).rowcount
    ctx.guard(conn, "job", marked, kind=COMPLETED_KIND)
    tasks_marked = conn.execute(
        update(tasks)
        .where(and_(tasks.c.tenant_id == ctx.tenant_id, tasks.c.job_uuid.in_(uuids), tasks.c.completed.is_not(True)))
        .values(completed=True, _synced_at=ctx.now)
    ).rowcount
    ctx.guard(conn, "job_task", tasks_marked, kind=COMPLETED_KIND)
    return LoadResult(updated=marked), LoadResult(updated=tasks_marked)
