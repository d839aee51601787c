"""Time entries: no modified date, no deleted flag, so each mode reads them differently.

- initial / re-sync: calendar-month windows from 3 years back to 1 year ahead. Each month commits on
  its own and is checkpointed, so a killed sync resumes at the first unfinished month.
- hourly: one recent window; only entries the warehouse does not have are inserted.
- nightly: the last 15 months (to a year ahead) in as few calls as XPM allows, compared field by field
  with the warehouse in one pandas comparison; the differences are applied and every changed field is
  logged in ``xpm_timesheet_changes``.

An entry missing from a re-read window was deleted, re-dated, or XPM's list was wrong: only
``time.api/get`` tells, so it is never deleted for its absence alone. Missing entries wait in
``xpm_unconfirmed_removals`` and are read back within a nightly budget, the longest-waiting first (an
entry of a job XPM said was deleted goes with the job). This holds when ``time.api/list`` filters by
``<Date>`` (the default); if it filters by creation time (``SyncOptions.time_filter="created"``), a
window does not hold every entry dated in it, so absence proves nothing and nothing waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd
from sqlalchemy import and_, insert, select

from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.killpoints import killpoint
from xpm_pipeline.quota import background_reads
from xpm_pipeline.sync.compare import compare_entity
from xpm_pipeline.sync.context import HOURLY, SyncContext
from xpm_pipeline.sync.jobs import REASON_DELETED
from xpm_pipeline.sync.removals import settle_waiting, waiting_keys
from xpm_pipeline.sync.runs import SyncRun
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.warehouse.load import LoadResult, insert_new_only, load_entity, mark_deleted
from xpm_pipeline.warehouse.schema import table_for, timesheet_changes
from xpm_pipeline.xpm.errors import XPMNotFound
from xpm_pipeline.xpm.parse import Rows
from xpm_pipeline.xpm.windows import DateWindow, add_months, month_windows, split_range

TIMESHEET = ENTITIES["timesheet"]


def sync_timesheets(ctx: SyncContext, run: SyncRun) -> LoadResult:
    if ctx.mode == HOURLY:
        return _hourly(ctx, run)
    if ctx.full:
        return _by_month(ctx, run)
    return _nightly(ctx, run)


def initial_windows(ctx: SyncContext) -> list[DateWindow]:
    return month_windows(add_months(ctx.today, -ctx.options.initial_back_months), add_months(ctx.today, ctx.options.ahead_months))


def _by_month(ctx: SyncContext, run: SyncRun) -> LoadResult:
    """Each month is loaded and checkpointed on its own. Entries a month's answer lacks are not deleted
    there: they join the entries waiting for confirmation, which are read back at the end (as nightly)."""
    total = LoadResult()
    windows = initial_windows(ctx)
    for done, window in enumerate(windows):
        ctx.report("time entries by month", done, len(windows))
        scope = f"timesheet {window}"
        if run.is_done(scope):
            continue
        calls = ctx.calls()
        rows = ctx.client.time_entries(window)
        killpoint("sync.after_window_fetch")
        with write_transaction(ctx.engine) as conn:
            result = load_entity(conn, "timesheet", ctx.tenant_id, rows, synced_at=ctx.now)
            if ctx.options.time_filter == "date":  # a window filtered by creation proves nothing by absence
                _note_missing(conn, ctx, window, set(rows.column("uuid")))
        killpoint("sync.after_window_load")  # loaded, not yet checkpointed: the month is read again
        run.checkpoint(scope, result=result, api_calls=ctx.calls() - calls)
        total += result
    calls = ctx.calls()
    with ctx.engine.connect() as conn:
        waiting = waiting_keys(conn, ctx.tenant_id, TIMESHEET.name)
    confirmation = _confirm_deletions(ctx, [], waiting, set())
    with write_transaction(ctx.engine) as conn:
        result = _apply_confirmation(conn, ctx, confirmation, pd.DataFrame())
    run.add(result, api_calls=ctx.calls() - calls)
    ctx.report("time entries by month", len(windows), len(windows))
    return total + result


def _note_missing(conn, ctx: SyncContext, window: DateWindow, listed: set[str]) -> None:
    """The window's live entries its answer lacks start waiting for confirmation; listed ones stop."""
    table = table_for(TIMESHEET)
    stored = set(conn.execute(select(table.c.uuid).where(
        table.c.tenant_id == ctx.tenant_id, table.c._deleted_at.is_(None),
        table.c.entry_date.between(window.start, window.end))).scalars())
    waiting = set(waiting_keys(conn, ctx.tenant_id, TIMESHEET.name))
    settle_waiting(conn, ctx.tenant_id, TIMESHEET.name, resolved=waiting & listed, waiting=stored - listed,
                   at=ctx.now)


def _hourly(ctx: SyncContext, run: SyncRun) -> LoadResult:
    calls = ctx.calls()
    window = DateWindow(ctx.today - timedelta(days=ctx.options.hourly_back_days),
                        ctx.today + timedelta(days=ctx.options.hourly_ahead_days))
    rows = ctx.client.time_entries(window)
    result = insert_new_only(ctx.engine, "timesheet", ctx.tenant_id, rows, synced_at=ctx.now)
    run.add(result, api_calls=ctx.calls() - calls)
    return result


def nightly_range(ctx: SyncContext) -> DateWindow:
    return DateWindow(add_months(ctx.today, -ctx.options.nightly_back_months), add_months(ctx.today, ctx.options.ahead_months))


def _nightly(ctx: SyncContext, run: SyncRun) -> LoadResult:
    calls = ctx.calls()
    span = nightly_range(ctx)
    fetched = Rows(TIMESHEET)
    windows = split_range(span.start, span.end)
    with background_reads():  # the nightly reconcile gives way to exports when the day's budget runs low
        for done, window in enumerate(windows):
            ctx.report("time entries: reading 15 months", done, len(windows) + 1)
            fetched.extend(ctx.client.time_entries(window))
    ctx.report("time entries: comparing every field", len(windows), len(windows) + 1)
    new = fetched.to_frame()
    old = _warehouse_frame(ctx, span)
    comparison = compare_entity(TIMESHEET, old, new)
    with ctx.engine.connect() as conn:
        waiting = waiting_keys(conn, ctx.tenant_id, TIMESHEET.name)
    confirmation = _confirm_deletions(ctx, comparison.deleted["uuid"].tolist(), waiting, set(new["uuid"]))
    to_write = pd.concat([comparison.added, comparison.changed], ignore_index=True)
    deleted_keys = confirmation.deleted
    with write_transaction(ctx.engine) as conn:
        result = _apply_confirmation(conn, ctx, confirmation, to_write)
        _log_changes(conn, ctx, run, comparison, deleted_keys)
        killpoint("sync.nightly_before_commit")  # all applied but not committed: nothing of it survives
    ctx.report("time entries: comparing every field", len(windows) + 1, len(windows) + 1)
    run.add(result, api_calls=ctx.calls() - calls)
    return result


@dataclass
class Confirmation:
    """What the nightly learnt of entries missing from XPM's list."""

    moved: list[pd.DataFrame] = field(default_factory=list)  # re-dated (or still there): updated, not deleted
    deleted: list[str] = field(default_factory=list)  # time.api/get said not found
    resolved: list[str] = field(default_factory=list)  # no longer waiting: confirmed, or back in the list
    waiting: list[str] = field(default_factory=list)  # past tonight's budget: stay live, confirmed later


def _confirm_deletions(ctx: SyncContext, missing: list[str], waiting: list[str], listed: set[str]) -> Confirmation:
    """An entry missing from the window was deleted, or re-dated out of it, or XPM's list was wrong.
    Only ``time.api/get`` tells which, so no entry is deleted without it: within tonight's budget the
    longest-waiting entries are read first; the rest stay live and wait for a later night (their date may
    leave the window meanwhile: they are remembered in ``xpm_unconfirmed_removals``, not re-found)."""
    outcome = Confirmation()
    if ctx.options.time_filter != "date":
        return outcome
    outcome.resolved = [key for key in waiting if key in listed]  # back in XPM's list
    candidates = list(dict.fromkeys([key for key in waiting if key not in listed] + missing))
    on_deleted_jobs = _on_jobs_deleted_in_xpm(ctx, candidates)  # job.api/get said not found: their time went too
    outcome.deleted += on_deleted_jobs
    outcome.resolved += on_deleted_jobs
    candidates = [key for key in candidates if key not in set(on_deleted_jobs)]
    budget = max(ctx.options.confirm_missing_time, 0)
    for uuid in candidates[:budget]:
        try:
            outcome.moved.append(ctx.client.get("timesheet", uuid)["timesheet"].to_frame())
        except XPMNotFound:
            outcome.deleted.append(uuid)
        outcome.resolved.append(uuid)
    outcome.waiting = candidates[budget:]
    return outcome


def _apply_confirmation(conn, ctx: SyncContext, confirmation: "Confirmation", to_write: pd.DataFrame) -> LoadResult:
    """In the caller's transaction: load what XPM holds (``to_write`` and the entries read back), delete
    what it confirmed deleted (through the removal guard), and keep the rest waiting."""
    to_write = pd.concat([to_write, *confirmation.moved], ignore_index=True) if confirmation.moved else to_write
    result = load_entity(conn, "timesheet", ctx.tenant_id, to_write, synced_at=ctx.now) if len(to_write) else LoadResult()
    if confirmation.deleted:
        result += LoadResult(deleted=mark_deleted(conn, "timesheet", ctx.tenant_id, confirmation.deleted, at=ctx.now,
                                                  on_removal=ctx.guard))
    settle_waiting(conn, ctx.tenant_id, TIMESHEET.name, resolved=confirmation.resolved, waiting=confirmation.waiting,
                   at=ctx.now)
    return result


def _on_jobs_deleted_in_xpm(ctx: SyncContext, keys: list[str]) -> list[str]:
    """Entries among ``keys`` whose job XPM answered "not found" for (a deleted job's time vanishes with it)."""
    if not keys:
        return []
    times, jobs = table_for(TIMESHEET), table_for("job")
    found: list[str] = []
    with ctx.engine.connect() as conn:
        for start in range(0, len(keys), 500):
            found += conn.execute(
                select(times.c.uuid)
                .join(jobs, and_(jobs.c.tenant_id == times.c.tenant_id, jobs.c.job_number == times.c.job_number))
                .where(times.c.tenant_id == ctx.tenant_id, times.c.uuid.in_(keys[start:start + 500]),
                       jobs.c._deleted_at.is_not(None), jobs.c._completed_reason == REASON_DELETED)
            ).scalars().all()
    return sorted(found)


def _warehouse_frame(ctx: SyncContext, span: DateWindow) -> pd.DataFrame:
    """The live rows of the range as the comparison's "old" side (only the registry's columns)."""
    table = table_for(TIMESHEET)
    query = select(*(table.c[name] for name in TIMESHEET.column_names)).where(
        table.c.tenant_id == ctx.tenant_id,
        table.c.entry_date.between(span.start, span.end),
        table.c._deleted_at.is_(None),
    )
    with ctx.engine.connect() as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.fetchall(), columns=list(TIMESHEET.column_names))


def _log_changes(conn, ctx: SyncContext, run: SyncRun, comparison, deleted_keys: list[str]) -> None:
    """One audit row per changed field, plus one per added and deleted entry."""
    now = ctx.now
    base = {"tenant_id": ctx.tenant_id, "run_id": run.run_id, "detected_at": now}
    rows = [
        {**base, "timesheet_uuid": uuid, "change_type": "changed", "field": field, "old_value": old, "new_value": new}
        for uuid, field, old, new in comparison.changes[["uuid", "field", "old_value", "new_value"]].itertuples(index=False)
    ]
    rows += [{**base, "timesheet_uuid": uuid, "change_type": "added", "field": None, "old_value": None, "new_value": None}
             for uuid in comparison.added["uuid"]]
    rows += [{**base, "timesheet_uuid": uuid, "change_type": "deleted", "field": None, "old_value": None, "new_value": None}
             for uuid in deleted_keys]
    for start in range(0, len(rows), 5000):
        conn.execute(insert(timesheet_changes), rows[start : start + 5000])
