"""The set-based statements of a load, written once in SQLAlchemy Core for both dialects.

Everything compares a staging table (this load's rows) with the entity table, restricted to one tenant:

- ``diff``: staged rows that are new, soft-deleted, or differ in a business column. Comparisons are
  NULL-safe (``IS DISTINCT FROM`` on PostgreSQL, ``IS NOT`` on SQLite) so NULL -> NULL is no change.
  Only these rows are written: an identical reload writes nothing (no WAL, no ``_synced_at`` bump).
- ``upsert``: writes the diff rows (insert, or update + clear ``_deleted_at``).
- ``soft_delete_missing``: stamps ``_deleted_at`` on live rows inside the scope that the load lacks.
- ``insert_new``: inserts staged rows whose key the tenant does not have yet (hourly sync).
- ``soft_delete_keys``: stamps ``_deleted_at`` on the staged keys.

``_synced_at`` moves with every real change to a row (insert, update, revival, soft delete), so
"rows changed since T" is ``_synced_at > T`` for downstream readers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement, Insert, Select, Table, Update, and_, exists, func, literal, null, or_, select, true, tuple_, update,
)

from xpm_pipeline.entities import Entity
from xpm_pipeline.warehouse.db import UtcDateTime
from xpm_pipeline.warehouse.schema import DELETED_AT, SYNCED_AT

IS_NEW = "_is_new"
WAS_DELETED = "_was_deleted"


def business_columns(entity: Entity) -> tuple[str, ...]:
    """Columns an update may change: everything in the registry except the key."""
    return tuple(name for name in entity.column_names if name not in entity.key)


def _same_key(left: Table, right: Table, entity: Entity) -> ColumnElement[bool]:
    return and_(*(left.c[name] == right.c[name] for name in entity.key))


def _tenant(target: Table, tenant_id: str) -> ColumnElement[bool]:
    return target.c.tenant_id == literal(tenant_id, target.c.tenant_id.type)


def diff(target: Table, stage: Table, entity: Entity, tenant_id: str) -> Select:
    """Staged rows to write, with whether each is new and whether it revives a soft-deleted row."""
    stored = target.alias("stored")
    missing = stored.c[entity.key[0]].is_(None)
    was_deleted = stored.c[DELETED_AT].is_not(None)
    business = business_columns(entity)
    differs = []
    if business:  # one row comparison: cheaper than a chain of per-column ORs
        staged_values, stored_values = tuple_(*(stage.c[n] for n in business)), tuple_(*(stored.c[n] for n in business))
        differs.append(staged_values.is_distinct_from(stored_values))
    joined = stage.outerjoin(stored, and_(_tenant(stored, tenant_id), _same_key(stage, stored, entity)))
    return (
        select(*(stage.c[name] for name in entity.column_names), missing.label(IS_NEW), was_deleted.label(WAS_DELETED))
        .select_from(joined)
        .where(or_(missing, was_deleted, *differs))
    )


def diff_counts(changed) -> Select:
    """(new, revived, all) over a diff subquery or CTE."""
    return select(
        func.count().filter(changed.c[IS_NEW]),
        func.count().filter(changed.c[WAS_DELETED]),
        func.count(),
    ).select_from(changed)


def upsert(
    insert: Callable[[Table], Insert],
    target: Table,
    source,
    entity: Entity,
    tenant_id: str,
    synced_at: datetime,
) -> Insert:
    """Insert ``source``'s rows; a key that exists is overwritten and revived.

    ``insert`` is the dialect's ``insert`` (``postgresql.insert`` or ``sqlite.insert``: both have
    ``on_conflict_do_update``). The ``WHERE true`` keeps SQLite's parser from reading ``ON CONFLICT``
    as a join constraint of the ``SELECT``.
    """
    statement = insert(target).from_select(
        _target_columns(entity), _stamped(target, source, entity.column_names, tenant_id, synced_at)
    )
    updates = {name: statement.excluded[name] for name in business_columns(entity)}
    updates[SYNCED_AT] = statement.excluded[SYNCED_AT]
    updates[DELETED_AT] = null()
    return statement.on_conflict_do_update(index_elements=["tenant_id", *entity.key], set_=updates)


def insert_new(
    insert: Callable[[Table], Insert], target: Table, stage: Table, entity: Entity, tenant_id: str, synced_at: datetime
) -> Insert:
    """Insert staged rows the tenant lacks; existing rows (live or soft-deleted) are left as they are."""
    stored = target.alias("stored")
    absent = ~exists().where(_tenant(stored, tenant_id), _same_key(stage, stored, entity))
    rows = _stamped(target, stage, entity.column_names, tenant_id, synced_at).where(absent)
    statement = insert(target).from_select(_target_columns(entity), rows)
    return statement.on_conflict_do_nothing(index_elements=["tenant_id", *entity.key])


def soft_delete_missing(
    target: Table, stage: Table, entity: Entity, tenant_id: str, in_scope: ColumnElement[bool], at: datetime
) -> Update:
    """Stamp live rows in scope whose key is not staged."""
    staged = exists().where(_same_key(stage, target, entity))
    return _soft_delete(target, tenant_id, at, in_scope, ~staged)


def soft_delete_keys(target: Table, keys: Table, entity: Entity, tenant_id: str, at: datetime) -> Update:
    """Stamp live rows whose key is staged in ``keys``."""
    return _soft_delete(target, tenant_id, at, exists().where(_same_key(keys, target, entity)))


def _soft_delete(target: Table, tenant_id: str, at: datetime, *conditions) -> Update:
    return (
        update(target)
        .where(_tenant(target, tenant_id), target.c[DELETED_AT].is_(None), *conditions)
        .values({DELETED_AT: literal(at, UtcDateTime), SYNCED_AT: literal(at, UtcDateTime)})
    )


def in_scope(target: Table, column: str | None, between=None, values: Table | None = None) -> ColumnElement[bool]:
    """The scope's condition on stored rows (``values``: a staged one-column table for ``within``)."""
    if column is None:
        return true()
    stored = target.c[column]
    if values is not None:
        return stored.in_(select(values.c[column]))
    low, high = between
    conditions = []
    if low is not None:
        conditions.append(stored >= literal(low, stored.type))
    if high is not None:
        conditions.append(stored <= literal(high, stored.type))
    return and_(true(), *conditions)


def _target_columns(entity: Entity) -> list[str]:
    return ["tenant_id", *entity.column_names, SYNCED_AT, DELETED_AT]


def _stamped(target: Table, source, names: Sequence[str], tenant_id: str, synced_at: datetime) -> Select:
    return select(
        literal(tenant_id, target.c.tenant_id.type),
        *(source.c[name] for name in names),
        literal(synced_at, UtcDateTime),
        null(),
    ).where(true())
