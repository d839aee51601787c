"""Bulk loads of XPM entities into the warehouse: one transaction each, counts exact, no needless writes.

    load_entity(engine, "timesheet", tenant_id, rows, synced_at=now,
                delete_missing=Scope("entry_date", between=(window.start, window.end)))
    insert_new_only(engine, "staff", tenant_id, rows, synced_at=now)          # hourly: add, never touch
    mark_deleted(engine, "job_task", tenant_id, [task_uuid, ...], at=now)     # soft delete by key

What a load does, in one transaction (a failure anywhere leaves the table exactly as it was):

1. Serialise with other loads of the same tenant and entity (other tenants run in parallel).
2. If the tenant has no rows yet, every row is an insert: stream them straight into the table.
3. Otherwise stage the rows in a temporary table and write only the rows that are new, were soft-deleted,
   or differ in a business column (NULL-safe). An identical reload writes nothing at all: no row
   versions, (almost) no WAL, no ``_synced_at`` bump. Counts come from the same snapshot as the writes.
4. With ``delete_missing``, live rows inside the scope that the load lacks get ``_deleted_at`` (soft
   delete); rows that come back are revived (``_deleted_at`` cleared).

Rows are a parse ``Rows``, a pandas DataFrame or a ``{column: list}`` mapping with the entity's registry
columns; a key given twice keeps its last row. Everything is driven by ``entities.ENTITIES``: there is no
per-entity code. PostgreSQL uses binary COPY (see ``pg_bulk``); SQLite uses executemany (``sqlite_bulk``);
both run the same statements (``merge_sql``) and give the same results.

``bind`` may be an Engine (the load opens and commits its own write transaction) or a Connection (the load
joins the caller's transaction, or begins one on it), so a sync can load several entities atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Engine

from xpm_pipeline.entities import ENTITIES, Entity
from xpm_pipeline.warehouse import merge_sql
from xpm_pipeline.warehouse.db import write_transaction
from xpm_pipeline.warehouse.load_batch import Batch, coerce, prepare
from xpm_pipeline.warehouse.load_writers import Writer, writer_for
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline.warehouse.scope import Scope

__all__ = ["LoadResult", "OnRemoval", "Scope", "insert_new_only", "load_entity", "mark_deleted"]

OnRemoval = Callable[..., None]
"""``on_removal(conn, entity, removing, added=n)``: called inside a load's transaction after it soft-deleted
rows, before the commit (``sync.guard.RemovalGuard``); raising rolls the whole load back."""


@dataclass(frozen=True)
class LoadResult:
    """What a load did. Every input row (after de-duplication) is exactly one of inserted, updated,
    unchanged or revived; ``deleted`` counts stored rows the load soft-deleted."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    revived: int = 0

    @property
    def changed(self) -> int:
        """Rows written: zero for an identical reload."""
        return self.inserted + self.updated + self.deleted + self.revived

    def __add__(self, other: "LoadResult") -> "LoadResult":
        return LoadResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def load_entity(
    bind: Engine | Connection,
    entity: Entity | str,
    tenant_id: str,
    rows: Any,
    *,
    synced_at: datetime,
    delete_missing: Scope | None = None,
    on_removal: OnRemoval | None = None,
) -> LoadResult:
    """Upsert ``rows`` for one tenant; with ``delete_missing``, soft-delete the scope's rows they lack
    (each removal reported to ``on_removal`` before the commit)."""
    entity = _entity(entity)
    synced_at = _utc(synced_at, "synced_at")
    batch = prepare(entity, rows)
    if delete_missing is not None:
        delete_missing.check(entity)
    with _load(bind, entity, tenant_id) as writer:
        batch = writer.accept(batch)
        if len(batch) and not writer.tenant_has_rows():
            writer.insert_fresh(batch, synced_at)
            result = LoadResult(inserted=len(batch))
        else:
            result = _merge(writer, batch, synced_at, delete_missing)
        if on_removal is not None and result.deleted:
            on_removal(writer.conn, entity, result.deleted, added=result.inserted + result.revived)
        writer.finish(result.inserted)
    return result


def insert_new_only(
    bind: Engine | Connection, entity: Entity | str, tenant_id: str, rows: Any, *, synced_at: datetime
) -> LoadResult:
    """Insert the rows whose key the tenant does not have; never update, revive or delete a stored row.

    For the hourly sync, which only looks for new timesheets and staff: rows it already holds are the
    nightly sync's business. Stored rows (live or soft-deleted) count as ``unchanged``.
    """
    entity = _entity(entity)
    synced_at = _utc(synced_at, "synced_at")
    batch = prepare(entity, rows)
    with _load(bind, entity, tenant_id) as writer:
        batch = writer.accept(batch)
        if len(batch) and not writer.tenant_has_rows():
            writer.insert_fresh(batch, synced_at)
            inserted = len(batch)
        else:
            stage = _stage_batch(writer, batch)
            inserted = writer.rowcount(
                merge_sql.insert_new(writer.insert, writer.target, stage, entity, tenant_id, synced_at)
            )
            writer.drop(stage)
        writer.finish(inserted)
    return LoadResult(inserted=inserted, unchanged=len(batch) - inserted)


def mark_deleted(
    bind: Engine | Connection, entity: Entity | str, tenant_id: str, keys: Iterable[Any], *, at: datetime,
    on_removal: OnRemoval | None = None,
) -> int:
    """Soft-delete the tenant's rows with these keys (scalars, or tuples for a composite key).

    Rows already soft-deleted keep their original ``_deleted_at``; unknown keys are ignored. Returns the
    number of rows newly marked.
    """
    entity = _entity(entity)
    at = _utc(at, "at")
    key_columns = _key_columns(entity, keys)
    if not key_columns[0]:
        return 0
    with _load(bind, entity, tenant_id) as writer:
        stage = writer.stage(entity.key, key_columns, entity.key)
        marked = writer.rowcount(merge_sql.soft_delete_keys(writer.target, stage, entity, tenant_id, at))
        writer.drop(stage)
        if on_removal is not None and marked:
            on_removal(writer.conn, entity, marked)
    return marked


# --- steps ---------------------------------------------------------------------------------------------


def _merge(writer: Writer, batch: Batch, synced_at: datetime, scope: Scope | None) -> LoadResult:
    stage = _stage_batch(writer, batch)
    new, revived, written = writer.write_diff(stage, synced_at)
    deleted = 0 if scope is None else _soft_delete_missing(writer, stage, scope, synced_at)
    writer.drop(stage)
    updated = written - new - revived
    return LoadResult(
        inserted=new, updated=updated, unchanged=len(batch) - written, deleted=deleted, revived=revived
    )


def _soft_delete_missing(writer: Writer, stage, scope: Scope, at: datetime) -> int:
    entity, target = writer.entity, writer.target
    values = between = None
    if scope.within is not None:
        column = entity.column(scope.column)
        distinct = list(dict.fromkeys(coerce(column, list(scope.within))))  # "2025-01-01" == date(2025, 1, 1)
        values = writer.stage([column.name], [distinct], [column.name])
    elif scope.between is not None:
        column = entity.column(scope.column)
        between = tuple(coerce(column, list(scope.between)))
    condition = merge_sql.in_scope(target, scope.column, between=between, values=values)
    deleted = writer.rowcount(merge_sql.soft_delete_missing(target, stage, entity, writer.tenant_id, condition, at))
    if values is not None:
        writer.drop(values)
    return deleted


def _stage_batch(writer: Writer, batch: Batch):
    names = writer.entity.column_names
    return writer.stage(names, [batch.columns[name] for name in names], writer.entity.key)


@contextmanager
def _load(bind: Engine | Connection, entity: Entity, tenant_id: str) -> Iterator[Writer]:
    if not isinstance(tenant_id, str) or not tenant_id:
        raise ValueError("tenant_id must be a non-empty string")
    with _transaction(bind) as conn:
        writer = writer_for(conn, entity, table_for(entity), tenant_id)
        writer.begin()
        yield writer


@contextmanager
def _transaction(bind: Engine | Connection) -> Iterator[Connection]:
    if isinstance(bind, Engine):
        with write_transaction(bind) as conn:
            yield conn
    elif bind.in_transaction():
        yield bind
    else:
        with bind.begin():
            yield bind


def _entity(entity: Entity | str) -> Entity:
    if isinstance(entity, Entity):
        return entity
    try:
        return ENTITIES[entity]
    except KeyError:
        raise ValueError(f"unknown entity {entity!r}; known: {sorted(ENTITIES)}") from None


def _utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (use the injected Clock)")
    return value.astimezone(timezone.utc)


def _key_columns(entity: Entity, keys: Iterable[Any]) -> list[list]:
    width = len(entity.key)
    rows = [key if isinstance(key, tuple) else (key,) for key in keys]
    if any(len(row) != width for row in rows):
        raise ValueError(f"{entity.name} keys are {entity.key}: give {width}-tuples")
    if any(value is None for row in rows for value in row):
        raise ValueError(f"{entity.name}: a key has an empty value")
    rows = list(dict.fromkeys(rows))
    return [coerce(entity.column(name), [row[i] for row in rows]) for i, name in enumerate(entity.key)]
