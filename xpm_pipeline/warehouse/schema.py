"""Warehouse tables for every XPM entity, generated from the registry in ``entities``.

One table per entity: ``tenant_id`` plus XPM's key as the primary key, the typed business columns
(each with its registry doc as the column comment), and the pipeline's own columns:
``_synced_at`` (last time a sync wrote the row), ``_deleted_at`` (soft delete: XPM removed it or
flagged it deleted), and on jobs ``_completed_reason`` (why the pipeline marked a job Completed).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from xpm_pipeline.entities import ENTITIES, ColumnType, Entity
from xpm_pipeline.warehouse.control import metadata
from xpm_pipeline.warehouse.db import UtcDateTime
from xpm_pipeline.warehouse.migrate import migration


def identifier(type_: String) -> String:
    """A text column holding an identifier (a UUID, a tenant id, a job number): byte order on PostgreSQL.

    ``COLLATE "C"`` compares with ``memcmp`` and lets sorts use abbreviated keys, which PostgreSQL
    disables for libc locales such as ``C.UTF-8``/``en_US``: the index builds of a first load take
    about half the time (``benchmarks/load_bench.py``). Nobody needs identifiers in dictionary order,
    and for UTF-8 text byte order is code point order.
    """
    return type_.with_variant(type_.__class__(**{**_type_args(type_), "collation": "C"}), "postgresql")


def _type_args(type_: String) -> dict:
    return {"length": type_.length} if type_.length is not None else {}


SQL_TYPES = {
    ColumnType.TEXT: Text,
    ColumnType.UUID: lambda: String(36),
    ColumnType.INT: Integer,
    ColumnType.MONEY: lambda: Numeric(14, 2),
    ColumnType.DATE: Date,
    ColumnType.DATETIME: DateTime,
    ColumnType.BOOL: Boolean,
    ColumnType.YESNO: Boolean,
}

SYNCED_AT = "_synced_at"
DELETED_AT = "_deleted_at"
COMPLETED_REASON = "_completed_reason"

PIPELINE_COLUMN_DOCS = {
    "tenant_id": "XPM organisation (Xero-Tenant-Id) the row belongs to.",
    SYNCED_AT: "When a sync last inserted or changed this row (UTC).",
    DELETED_AT: "When the row was found deleted in XPM (soft delete; NULL while it exists).",
    COMPLETED_REASON: "Why the pipeline marked the job Completed (e.g. missing from XPM's active list).",
}

# Secondary indexes analysts and the syncs need (``tenant_id`` is appended to each); the primary key is
# XPM's key, then ``tenant_id``. The selective column leads: an equality or range on it finds the rows
# of one tenant just as well (``tenant_id`` is the next column), and a build sorts on a column whose
# values differ instead of one that is the same on every row of a tenant's load (about 2x faster).
# Queries on ``tenant_id`` alone use the ``entry_date`` index (time entries) or scan a small table.
_INDEXES: dict[str, tuple[str, ...]] = {
    "timesheet": ("entry_date", "job_number", "staff_uuid"),
    "job": ("job_number", "client_uuid"),
    "job_task": ("job_uuid",),
    "client_contact": ("client_uuid",),
    "client_group_member": ("client_uuid",),
}


def _entity_table(entity: Entity) -> Table:
    indexed = {*entity.key, *_INDEXES.get(entity.name, ())}
    columns = [Column("tenant_id", identifier(String(64)), nullable=False, comment=PIPELINE_COLUMN_DOCS["tenant_id"])]
    for spec in entity.columns:
        type_ = SQL_TYPES[spec.type]()
        if spec.type is ColumnType.UUID or (spec.name in indexed and isinstance(type_, String)):
            type_ = identifier(type_)
        columns.append(
            Column(
                spec.name,
                type_,
                nullable=not (spec.key or spec.required),
                comment=spec.doc,
            )
        )
    columns.append(Column(SYNCED_AT, UtcDateTime, nullable=False, comment=PIPELINE_COLUMN_DOCS[SYNCED_AT]))
    columns.append(Column(DELETED_AT, UtcDateTime, nullable=True, comment=PIPELINE_COLUMN_DOCS[DELETED_AT]))
    if entity.name == "job":
        columns.append(Column(COMPLETED_REASON, Text, nullable=True, comment=PIPELINE_COLUMN_DOCS[COMPLETED_REASON]))
    primary_key = PrimaryKeyConstraint(*entity.key, "tenant_id", name=f"{entity.table}_pkey")
    table = Table(entity.table, metadata, *columns, primary_key, comment=entity.doc)
    for column in _INDEXES.get(entity.name, ()):
        Index(f"ix_{entity.table}_{column}", table.c[column], table.c.tenant_id)
    return table


ENTITY_TABLES: dict[str, Table] = {name: _entity_table(entity) for name, entity in ENTITIES.items()}


def table_for(entity: Entity | str) -> Table:
    return ENTITY_TABLES[entity if isinstance(entity, str) else entity.name]


def column_docs(entity: Entity | str) -> dict[str, str]:
    """Every column's description, for Dagster metadata and the README's table reference."""
    table = table_for(entity)
    return {column.name: column.comment or "" for column in table.columns}


# --- sync bookkeeping -------------------------------------------------------------------------------

sync_runs = Table(
    "xpm_sync_runs",
    metadata,
    Column("run_id", String(36), primary_key=True, comment="Local UUID of this run of one entity."),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation synced."),
    Column("entity", String(40), nullable=False, comment="Entity name from the registry (client, timesheet, ...)."),
    Column("mode", String(20), nullable=False, comment="initial | hourly | nightly | resync (re-sync all)."),
    Column("status", String(20), nullable=False, comment="running | succeeded | failed."),
    Column("started_at", UtcDateTime, nullable=False, comment="When the run started (UTC)."),
    Column("ended_at", UtcDateTime, nullable=True, comment="When it ended; NULL while running or if killed."),
    Column("heartbeat_at", UtcDateTime, nullable=False, comment="Last sign of life; a running row older than its lease was abandoned."),
    Column("rows_inserted", BigInteger, nullable=False, default=0, comment="Rows inserted."),
    Column("rows_updated", BigInteger, nullable=False, default=0, comment="Rows changed (including revived)."),
    Column("rows_deleted", BigInteger, nullable=False, default=0, comment="Rows soft-deleted or marked Completed."),
    Column("api_calls", Integer, nullable=False, default=0, comment="XPM calls this run made."),
    Column("error", Text, nullable=True, comment="One-line failure cause; NULL on success."),
    Column("resumes_run_id", String(36), nullable=True, comment="The failed run whose checkpoints this one reused."),
    Column("orchestrator_run_id", String(64), nullable=True, comment="Dagster run id when run by Dagster."),
    comment="One row per sync run and entity: what it did, what it cost, how it ended.",
)
Index("ix_xpm_sync_runs_tenant_entity", sync_runs.c.tenant_id, sync_runs.c.entity, sync_runs.c.started_at)

sync_checkpoints = Table(
    "xpm_sync_checkpoints",
    metadata,
    Column("run_id", String(36), primary_key=True, comment="Run (xpm_sync_runs) the checkpoint belongs to."),
    Column("scope", String(64), primary_key=True, comment="Finished unit of work, e.g. a window 2026-01-01..2026-01-31."),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation."),
    Column("completed_at", UtcDateTime, nullable=False, comment="When the unit was committed."),
    Column("rows", BigInteger, nullable=False, default=0, comment="Rows the unit brought."),
    Column("api_calls", Integer, nullable=False, default=0, comment="XPM calls the unit cost."),
    comment="Finished windows of long runs, so a killed initial sync resumes without re-fetching them.",
)

timesheet_changes = Table(
    "xpm_timesheet_changes",
    metadata,
    Column("change_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True,
           comment="Sequence of the change."),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation."),
    Column("run_id", String(36), nullable=False, comment="Nightly run (xpm_sync_runs) that found the change."),
    Column("timesheet_uuid", String(36), nullable=False, comment="Time entry (xpm_timesheets.uuid)."),
    Column("change_type", String(10), nullable=False, comment="changed | added | deleted."),
    Column("field", String(64), nullable=True, comment="Column that changed (NULL for added/deleted)."),
    Column("old_value", Text, nullable=True, comment="Warehouse value before, as text."),
    Column("new_value", Text, nullable=True, comment="XPM value now, as text."),
    Column("detected_at", UtcDateTime, nullable=False, comment="When the nightly comparison found it."),
    comment="Field-level changes to time entries found by the nightly 15-month comparison.",
)
Index("ix_xpm_timesheet_changes_entry", timesheet_changes.c.tenant_id, timesheet_changes.c.timesheet_uuid)

SYNC_TABLES = (sync_runs, sync_checkpoints, timesheet_changes)


@migration(3, "sync bookkeeping: xpm_sync_runs, xpm_sync_checkpoints, xpm_timesheet_changes")
def _create_sync_tables(conn) -> None:
    metadata.create_all(conn, tables=list(SYNC_TABLES), checkfirst=False)
