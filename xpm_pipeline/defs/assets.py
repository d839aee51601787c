"""Tenant-partitioned assets: one per warehouse table, all produced by one multi-asset, ``xpm_sync``.

A run materializes one tenant (its partition) and any subset of the tables. The selected tables name
the sync steps to run (``sync.run.STEPS``: a step writes a parent table and its children, e.g. jobs
and tasks on jobs), and ``run_sync`` runs them in order, each recorded in ``xpm_sync_runs`` with this
Dagster run's id. The mode is the run's job's flow (``defs/flows.py``); run config may name it (initial |
hourly | nightly | resync) but not contradict the job.

Every materialization carries:

- ``dagster/row_count`` (live rows of this tenant), ``soft_deleted_rows``, ``dagster/table_name`` and
  ``dagster/column_schema`` (columns with their descriptions from the entity registry);
- ``inserted`` / ``updated`` (revived included) / ``deleted`` / ``unchanged`` of this table alone,
  ``sync_run_id`` (its ``xpm_sync_runs`` row) and ``api_calls``. A step reads a parent with its children
  (client contacts, group members, tasks on jobs come in their parent's answers), so the calls are the
  parent table's: a child reports ``api_calls`` 0 and ``read_with`` (the parent table) with
  ``step_api_calls``. Summing ``api_calls`` over a run's materializations gives the run's sync calls.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations at definition time.

from collections.abc import Iterator
from enum import Enum
from typing import Optional

import dagster as dg
from pydantic import Field
from sqlalchemy import Table

from xpm_pipeline.defs.flows import FlowMismatch, run_mode
from xpm_pipeline.defs.partitions import FLOW_TAG, tenant_check_spec, tenant_partitions
from xpm_pipeline.defs.queries import row_counts, timesheet_change_counts
from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, RESYNC, SyncContext
from xpm_pipeline.sync.guard import table_name
from xpm_pipeline.sync.removals import open_holds
from xpm_pipeline.sync.run import STEPS, EntityOutcome, run_sync, steps_for
from xpm_pipeline.warehouse.control import tenants as tenants_table
from xpm_pipeline.warehouse.schema import column_docs, table_for, timesheet_changes
from xpm_pipeline.xpm.tokens import TenantNotConnected

GROUP = "xpm"
SYNC_OP = "xpm_sync"


def asset_key(entity: str) -> dg.AssetKey:
    """An entity's asset is named after its warehouse table (``xpm_clients``)."""
    return dg.AssetKey(ENTITIES[entity].table)


TIMESHEET_CHANGES = dg.AssetKey(timesheet_changes.name)
TENANTS = dg.AssetKey(tenants_table.name)
ENTITY_OF_KEY = {asset_key(name): name for name in ENTITIES}

# Which assets each sync step writes; the timesheet step also logs the nightly comparison's changes.
STEP_ASSETS: dict[str, tuple[dg.AssetKey, ...]] = {
    step.entity: tuple(asset_key(e) for e in step.loads) + ((TIMESHEET_CHANGES,) if step.entity == "timesheet" else ())
    for step in STEPS
}
HOURLY_ASSETS = tuple(asset_key(step.entity) for step in STEPS if HOURLY in step.modes)
"""What the hourly flow writes (staff, timesheets): an hourly run selects exactly these."""


def column_schema(table: Table, docs: dict[str, str] | None = None) -> dg.TableSchema:
    docs = docs or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column.name,
                type=str(column.type),
                description=docs.get(column.name) or column.comment or None,
                constraints=dg.TableColumnConstraints(nullable=bool(column.nullable)),
            )
            for column in table.columns
        ]
    )


COLUMN_SCHEMAS: dict[dg.AssetKey, dg.TableSchema] = {
    **{asset_key(name): column_schema(table_for(name), column_docs(name)) for name in ENTITIES},
    TIMESHEET_CHANGES: column_schema(timesheet_changes),
    TENANTS: column_schema(tenants_table),
}
TABLE_NAMES = {key: key.path[-1] for key in COLUMN_SCHEMAS}


def _table_metadata(key: dg.AssetKey) -> dict:
    return {"dagster/table_name": TABLE_NAMES[key], "dagster/column_schema": COLUMN_SCHEMAS[key]}


def _entity_spec(entity: str, step: str) -> dg.AssetSpec:
    spec = ENTITIES[entity]
    parent = f" Read with its parent ({ENTITIES[spec.nested.parent].table})." if spec.nested else ""
    return dg.AssetSpec(
        asset_key(entity),
        description=f"{spec.doc}{parent} Warehouse table `{spec.table}`; one partition per XPM tenant.",
        deps=[asset_key(spec.nested.parent)] if spec.nested else [],
        group_name=GROUP,
        kinds={"sql"},
        tags={"xpm/step": step},
        metadata=_table_metadata(asset_key(entity)),
    )


SYNC_SPECS = [_entity_spec(entity, step.entity) for step in STEPS for entity in step.loads] + [
    dg.AssetSpec(
        TIMESHEET_CHANGES,
        description="Field-level changes to time entries that the nightly 15-month comparison found "
        "(xpm_timesheet_changes). Materialized with the timesheets; other modes log no changes.",
        deps=[asset_key("timesheet")],
        group_name=GROUP,
        kinds={"sql"},
        tags={"xpm/step": "timesheet"},
        metadata=_table_metadata(TIMESHEET_CHANGES),
    )
]

NIGHTLY_COMPARISON = tenant_check_spec(
    "nightly_comparison",
    TIMESHEET_CHANGES,
    "How many changed, added and deleted time entries the nightly comparison found for the tenant "
    "(metadata); informational, it passes whenever the timesheet step succeeded.",
)

tenants_asset = dg.AssetSpec(
    TENANTS,
    description="XPM organisations connected with `xpm-pipeline connect` (control table xpm_tenants, kept by "
    "the connect flow, not by Dagster). Its partitions are the tenants; run failures are recorded on it as "
    "observations per tenant, and the refresh-token check runs on it.",
    group_name="xpm_control",
    kinds={"sql"},
    partitions_def=tenant_partitions,
    metadata=_table_metadata(TENANTS),
)


REMOVALS_CHECK = "removals_not_held"
REMOVAL_SPECS = [
    tenant_check_spec(
        REMOVALS_CHECK,
        asset_key(entity),
        f"No removal of {ENTITIES[entity].table} is held: the last sync did not stop because one XPM answer would "
        "have removed more than the bound (sync.guard). When it fails, check XPM, then accept with run config "
        "accept_removals (or `xpm-pipeline sync --accept-removals TABLE`).",
    )
    for step in STEPS for entity in step.loads
]


class SyncMode(str, Enum):
    """The sync modes as a config enum: Dagster's config accepts an optional enum, not an optional Literal."""

    initial = INITIAL
    hourly = HOURLY
    nightly = NIGHTLY
    resync = RESYNC


class SyncConfig(dg.Config):
    mode: Optional[SyncMode] = Field(
        default=None,
        description="Leave out: the job's flow decides (xpm_initial_job initial, xpm_hourly_job hourly, "
        "xpm_nightly_job and xpm_full_sync_job nightly; elsewhere nightly). initial: everything (on connect); "
        "hourly: new time entries and staff only (select xpm_staff and xpm_timesheets); nightly: changes, the "
        "15-month timesheet comparison, missing jobs -> Completed (the 'full sync'); resync: re-read everything "
        "of the selected tables ('re-sync all', xpm_full_sync_job only). A mode the job does not run is refused.",
    )
    accept_removals: list[str] = Field(
        default_factory=list,
        description="Tables (e.g. xpm_staff) whose held removal this run may make, after a person checked XPM: "
        "the removal guard stops a sync that would remove more than 20 % (and more than 10 rows) or every row "
        "of a table. Recorded in xpm_held_removals with accepted_by.",
    )
    accepted_by: str = Field(default="", description="Who accepts the removals (default: this Dagster run).")


def selected_steps(selected: set[dg.AssetKey]) -> list[str]:
    """The sync steps (in run order) that write any of the selected assets."""
    return [step.entity for step in STEPS if selected & set(STEP_ASSETS[step.entity])]


@dg.multi_asset(
    name=SYNC_OP,
    specs=SYNC_SPECS,
    check_specs=[NIGHTLY_COMPARISON, *REMOVAL_SPECS],
    partitions_def=tenant_partitions,
    can_subset=True,
    description="Sync one tenant's selected XPM tables into the warehouse (sync.run.run_sync).",
)
def xpm_sync(context: dg.AssetExecutionContext, config: SyncConfig, xpm: XPMResource) -> Iterator[dg.MaterializeResult]:
    tenant_id = context.partition_key
    try:
        mode = run_mode(config.mode and config.mode.value, context.job_def.tags.get(FLOW_TAG), context.job_def.name)
    except FlowMismatch as exc:
        raise dg.Failure(description=str(exc)) from None
    selected = set(context.selected_asset_keys)
    entities = selected_steps(selected)
    try:
        steps_for(mode, entities)
    except ValueError as exc:  # e.g. an hourly run that selected jobs
        raise dg.Failure(description=f"{exc}; select only {', '.join(k.to_user_string() for k in HOURLY_ASSETS)}"
                         if mode == HOURLY else str(exc)) from None
    try:
        accepted = frozenset(table_name(name) for name in config.accept_removals)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None
    with xpm.runtime() as runtime:
        try:
            client = runtime.client(tenant_id)
        except TenantNotConnected as exc:
            raise dg.Failure(description=str(exc)) from None
        with client:
            ctx = SyncContext(runtime.engine, client, tenant_id, mode, clock=runtime.clock,
                              orchestrator_run_id=context.run.run_id, accept_removals=accepted,
                              accepted_by=config.accepted_by or f"dagster run {context.run.run_id}")
            report = run_sync(ctx, entities, on_step=lambda name: context.log.info(
                f"{mode} sync of {name} for tenant {tenant_id}"))
        for outcome in report.outcomes:
            if not outcome.ok:
                context.log.error(f"{outcome.entity} failed: {outcome.error}")
                continue
            for key in STEP_ASSETS[outcome.entity]:
                if key not in selected:
                    continue
                if key == TIMESHEET_CHANGES:
                    yield _changes_result(context, runtime.engine, tenant_id, mode, outcome)
                else:
                    metadata = _table_result_metadata(runtime.engine, tenant_id, key, mode, outcome)
                    yield dg.MaterializeResult(asset_key=key, metadata=metadata)
        if mode != HOURLY:  # the hourly sync only adds rows: nothing to hold
            yield from _removal_checks(context, runtime.engine, tenant_id)
    failed = [outcome for outcome in report.outcomes if not outcome.ok]
    if failed:
        raise dg.Failure(
            description=f"{mode} sync of tenant {tenant_id}: "
            + "; ".join(f"{o.entity}: {o.error}" for o in failed),
            metadata={"failed_steps": [o.entity for o in failed], "tenant_id": tenant_id,
                      "api_calls": report.api_calls},
        )


def _removal_checks(context, engine, tenant_id: str) -> Iterator[dg.AssetCheckResult]:
    """One result per selected table: failing while the guard holds a removal of it."""
    holds = {held.table_name: held for held in open_holds(engine, tenant_id)}
    for check_key in sorted(context.selected_asset_check_keys, key=str):
        if check_key.name != REMOVALS_CHECK:
            continue
        table = ENTITIES[ENTITY_OF_KEY[check_key.asset_key]].table
        held = holds.get(table)
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key, check_name=REMOVALS_CHECK, passed=held is None,
            metadata={"tenant_id": tenant_id, **({"removing": held.removing, "live_rows": held.live_rows,
                                                   "held_at": held.held_at.isoformat()} if held else {})},
            description=held.reason if held else f"no removal of {table} is held",
        )


def _calls(outcome: EntityOutcome, entity: str | None) -> dict:
    """The step's calls on its own table; a child (or the change log) was read with the parent."""
    if entity == outcome.entity:
        return {"api_calls": outcome.api_calls}
    return {"api_calls": 0, "read_with": ENTITIES[outcome.entity].table, "step_api_calls": outcome.api_calls}


def _table_result_metadata(engine, tenant_id: str, key: dg.AssetKey, mode: str, outcome: EntityOutcome) -> dict:
    entity = ENTITY_OF_KEY[key]
    counts = row_counts(engine, entity, tenant_id)
    loaded = outcome.table(entity)
    return {
        "dagster/row_count": counts.live,
        "soft_deleted_rows": counts.deleted,
        **_table_metadata(key),
        "tenant_id": tenant_id,
        "mode": mode,
        "inserted": loaded.inserted,
        "updated": loaded.updated + loaded.revived,
        "deleted": loaded.deleted,
        "unchanged": loaded.unchanged,
        **_calls(outcome, entity),
        "sync_run_id": outcome.run_ids.get(entity, ""),
    }


def _changes_result(context, engine, tenant_id: str, mode: str, outcome: EntityOutcome) -> dg.MaterializeResult:
    found = timesheet_change_counts(engine, tenant_id, outcome.run_id)
    stored = timesheet_change_counts(engine, tenant_id)
    compared = mode == NIGHTLY
    change_metadata = {
        "changes_found": found["total"],
        "changed_fields": found["changed"],
        "added_entries": found["added"],
        "deleted_entries": found["deleted"],
        "entries_changed": found["entries"],
    }
    check_results = []
    if dg.AssetCheckKey(TIMESHEET_CHANGES, NIGHTLY_COMPARISON.name) in context.selected_asset_check_keys:
        check_results.append(
            dg.AssetCheckResult(
                asset_key=TIMESHEET_CHANGES,
                check_name=NIGHTLY_COMPARISON.name,
                passed=True,
                metadata={**change_metadata, "mode": mode, "compared": compared, "tenant_id": tenant_id},
                description=(
                    f"the nightly comparison found {found['total']} change(s) in {found['entries']} time entries"
                    if compared else f"no comparison in {mode} mode (the nightly sync compares)"
                ),
            )
        )
    return dg.MaterializeResult(
        asset_key=TIMESHEET_CHANGES,
        metadata={
            "dagster/row_count": stored["total"],
            **_table_metadata(TIMESHEET_CHANGES),
            "tenant_id": tenant_id,
            "mode": mode,
            **change_metadata,
            "inserted": found["total"],  # change rows appended by this run; the log is never updated
            "updated": 0,
            "deleted": 0,
            "unchanged": 0,
            **_calls(outcome, None),
            "sync_run_id": outcome.run_id or "",  # the timesheet run that logged the changes
        },
        check_results=check_results,
    )
