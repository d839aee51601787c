"""Pending edits win in the warehouse until XPM has them.

Queuing a job or client update shows its values in the warehouse at once (``apply_locally``), and
while the item is open (pending, sending, in doubt) a sync that brings XPM's older value for those
fields keeps the pending value instead (``protect_pending``); other fields, and new jobs and tasks,
arrive as usual. Once the item is done, the next sync reads XPM's value — which is then ours.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from xpm_pipeline.entities import ENTITIES, Column, write_column
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.changes import KINDS, Change, ChangeKind, typed_values
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline.xpm.parse import CONVERTERS, Rows

PROTECTED_KINDS = ("job", "client")
"""Kinds whose pending updates are shown and protected in the warehouse (the issue's scope: job and
client fields). Timesheet and task changes appear when a sync reads them back from XPM."""


def _protected(spec: ChangeKind) -> bool:
    return spec.kind in PROTECTED_KINDS and spec.op == "update" and spec.key_field is not None


def _key_column(spec: ChangeKind) -> Column:
    column = write_column(spec.write, spec.key_field)
    assert column is not None, spec
    return column


def _key_value(column: Column, key: str) -> str:
    return CONVERTERS[column.type](key)


def apply_locally(conn: Connection, tenant_id: str, change: Change) -> int:
    """Show a queued job/client update in the warehouse row it changes (rows updated: 0 or 1)."""
    spec = change.spec
    if not _protected(spec):
        return 0
    values = typed_values(spec, dict(change.fields))
    if not values:
        return 0
    target = ENTITIES[spec.write.target_entity]
    table = table_for(target.name)
    key_column = _key_column(spec)
    return conn.execute(
        update(table)
        .where(table.c.tenant_id == tenant_id, table.c[key_column.name] == _key_value(key_column, change.key))
        .values(**values)
    ).rowcount or 0


def pending_overrides(conn: Connection, tenant_id: str, entity: str) -> tuple[str, dict[Any, dict[str, Any]]]:
    """For ``entity``: the key column, and per key the column values of open updates (oldest first,
    so a later update's value wins)."""
    specs = [s for s in KINDS.values() if _protected(s) and s.write.target_entity == entity]
    if not specs:
        return "", {}
    key_columns = {_key_column(s).name for s in specs}
    assert len(key_columns) == 1, key_columns
    q = T.queue.c
    rows = conn.execute(
        select(q.kind, q.op, q.entity_key, q.payload)
        .where(
            q.tenant_id == tenant_id,
            q.status.in_(T.OPEN_STATUSES),
            q.kind.in_([s.kind for s in specs]),
            q.op == "update",
        )
        .order_by(q.item_id)
    ).all()
    overrides: dict[Any, dict[str, Any]] = {}
    for kind, op, key, payload in rows:
        spec = KINDS[(kind, op)]
        key_column = _key_column(spec)
        values = typed_values(spec, json.loads(payload))
        overrides.setdefault(_key_value(key_column, key), {}).update(values)
    return key_columns.pop(), overrides


def protect_pending(conn: Connection, tenant_id: str, rows: Rows) -> int:
    """Replace, in rows about to be loaded, the fields that have an open export with its value.
    Returns how many rows were touched. Call inside the load's transaction."""
    key_name, overrides = pending_overrides(conn, tenant_id, rows.entity.name)
    if not overrides:
        return 0
    keys = rows.column(key_name)
    touched = 0
    for index, key in enumerate(keys):
        values = overrides.get(key)
        if not values:
            continue
        touched += 1
        for column, value in values.items():
            rows.data[column][index] = value
    return touched


def protected_fields(conn: Connection, tenant_id: str, entity: str) -> dict[Any, set[str]]:
    """Which columns of which rows are held by an open export (for status and tests)."""
    _, overrides = pending_overrides(conn, tenant_id, entity)
    return {key: set(values) for key, values in overrides.items()}


def protected_entities() -> Iterable[str]:
    return sorted({s.write.target_entity for s in KINDS.values() if _protected(s)})

