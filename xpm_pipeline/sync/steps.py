"""Per-entity sync steps for the reference data: clients (with contacts), client groups (with members),
staff and the task list. Jobs and time entries have steps of their own modules.

Each step reads XPM through the tenant's client and loads in ONE transaction, so a failure leaves the
warehouse as it was; it reports its counts and API calls on the run.
"""

from __future__ import annotations

from sqlalchemy import func, select

from xpm_pipeline.export.protect import protect_pending
from xpm_pipeline.sync.context import HOURLY, SyncContext
from xpm_pipeline.sync.runs import SyncRun, TableResults, last_checkpoint, last_success, per_table, successes_since
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.warehouse.load import LoadResult, Scope, insert_new_only, load_entity, mark_deleted
from xpm_pipeline.xpm.parse import Rows
from xpm_pipeline.warehouse.schema import table_for


def _finish(ctx: SyncContext, run: SyncRun, result: LoadResult | TableResults, calls_before: int):
    run.add(result, api_calls=ctx.calls() - calls_before)
    return result


def sync_clients(ctx: SyncContext, run: SyncRun) -> TableResults:
    """Clients change-tracked by ``modifiedsince``; a full re-read on initial, re-sync, and every N nights
    (XPM may not flag a client modified when only a contact changed). Deleted clients stay, flagged."""
    calls = ctx.calls()
    full = _full_client_read_due(ctx)
    since = None if full else last_success(ctx.engine, ctx.tenant_id, "client")
    if since is not None:
        since -= ctx.options.client_overlap
    parsed = ctx.client.clients(modified_since=since, detailed=True)
    clients, contacts = parsed["client"], parsed["client_contact"]
    contact_scope = Scope.all() if since is None else Scope("client_uuid", within=clients.column("uuid"))
    with write_transaction(ctx.engine) as conn:
        protect_pending(conn, ctx.tenant_id, clients)  # queued edits not yet in XPM keep their values
        result = per_table()
        result["client"] = load_flagged(conn, ctx, clients)
        result["client_contact"] = load_flagged(conn, ctx, contacts, delete_missing=contact_scope)
    if since is None:  # remembered, so the next full read is due N nights from now
        run.checkpoint(FULL_CLIENT_READ, result=result, api_calls=ctx.calls() - calls)
        return result
    return _finish(ctx, run, result, calls)


FULL_CLIENT_READ = "client: full read"


def load_flagged(conn, ctx: SyncContext, rows: Rows, *, delete_missing: Scope | None = None) -> LoadResult:
    """Load an entity XPM flags as deleted rather than dropping (clients, contacts).

    Live rows are loaded as usual. A flagged row is inserted once if new, then soft-deleted
    (``_deleted_at``); it is never revived and re-deleted on later loads, so an unchanged XPM
    answer changes nothing. A row whose flag is cleared in XPM comes back with the live rows.
    """
    entity = rows.entity
    live, flagged = split_rows(rows, entity.deleted_flag)
    first_seen_flagged = insert_new_only(conn, entity, ctx.tenant_id, flagged, synced_at=ctx.now)
    loaded = load_entity(conn, entity, ctx.tenant_id, live, synced_at=ctx.now, delete_missing=delete_missing)
    keys = flagged.column(entity.key[0])
    marked = mark_deleted(conn, entity, ctx.tenant_id, keys, at=ctx.now) if keys else 0
    # One report for the table, of rows that were live before: a flagged row first seen now never was.
    ctx.guard(conn, entity, loaded.deleted + marked - first_seen_flagged.inserted, added=loaded.inserted + loaded.revived)
    return first_seen_flagged + loaded + LoadResult(deleted=marked)


def split_rows(rows: Rows, flag: str | None) -> tuple[Rows, Rows]:
    """(rows whose flag is not set, rows whose flag is set)."""
    if flag is None:
        return rows, Rows(rows.entity)
    flags = rows.column(flag)
    live, flagged = Rows(rows.entity), Rows(rows.entity)
    for name, values in rows.data.items():
        live.data[name] = [value for value, set_ in zip(values, flags) if not set_]
        flagged.data[name] = [value for value, set_ in zip(values, flags) if set_]
    return live, flagged


def _full_client_read_due(ctx: SyncContext) -> bool:
    if ctx.full:
        return True
    last_full = last_checkpoint(ctx.engine, ctx.tenant_id, FULL_CLIENT_READ)
    if last_full is None:
        return True
    nights = successes_since(ctx.engine, ctx.tenant_id, "client", "nightly", last_full)
    return nights + 1 >= ctx.options.full_client_every_nights


def sync_client_groups(ctx: SyncContext, run: SyncRun) -> TableResults:
    """Groups from the list; members from each group's ``get`` (the only complete source of membership)."""
    calls = ctx.calls()
    groups = ctx.client.client_groups()["client_group"]
    members = None
    for uuid in groups.column("uuid"):
        rows = ctx.client.client_group(uuid)["client_group_member"]
        if members is None:
            members = rows
        else:
            members.extend(rows)
    with write_transaction(ctx.engine) as conn:
        result = per_table()
        result["client_group"] = load_entity(conn, "client_group", ctx.tenant_id, groups, synced_at=ctx.now,
                                             delete_missing=Scope.all(), on_removal=ctx.guard)
        member_rows = members if members is not None else {"group_uuid": [], "client_uuid": []}
        result["client_group_member"] = load_entity(conn, "client_group_member", ctx.tenant_id, member_rows,
                                                    synced_at=ctx.now, delete_missing=Scope.all(), on_removal=ctx.guard)
    return _finish(ctx, run, result, calls)


def sync_staff(ctx: SyncContext, run: SyncRun) -> LoadResult:
    """Hourly only adds new staff; other modes re-read the list and soft-delete who left it."""
    calls = ctx.calls()
    staff = ctx.client.staff()["staff"]
    if ctx.mode == HOURLY:
        result = insert_new_only(ctx.engine, "staff", ctx.tenant_id, staff, synced_at=ctx.now)
    else:
        result = load_entity(ctx.engine, "staff", ctx.tenant_id, staff, synced_at=ctx.now, delete_missing=Scope.all(),
                             on_removal=ctx.guard)
    return _finish(ctx, run, result, calls)


def sync_task_list(ctx: SyncContext, run: SyncRun) -> LoadResult:
    calls = ctx.calls()
    tasks = ctx.client.task_list()["task"]
    result = load_entity(ctx.engine, "task", ctx.tenant_id, tasks, synced_at=ctx.now, delete_missing=Scope.all(),
                         on_removal=ctx.guard)
    return _finish(ctx, run, result, calls)


def live_row_count(ctx: SyncContext, entity: str) -> int:
    """Rows of the tenant not soft-deleted (for reports and checks)."""
    table = table_for(entity)
    with ctx.engine.connect() as conn:
        return int(conn.execute(
            select(func.count()).select_from(table).where(table.c.tenant_id == ctx.tenant_id, table.c._deleted_at.is_(None))
        ).scalar())
