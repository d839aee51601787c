"""Migration 22: entity tables keyed for fast bulk loads on PostgreSQL.

Warehouses created before it have ``PRIMARY KEY (tenant_id, uuid)``, secondary indexes that start
with ``tenant_id`` and identifiers in the database's collation. The registry now declares XPM's key
first, the selective column first in each secondary index and ``COLLATE "C"`` on identifiers
(``schema.identifier``); a first load's index builds take about half the time. This migration brings
older PostgreSQL warehouses to that shape (uniqueness is unchanged: the same columns, in a new order)
and does nothing where migration 2 already created it.

SQLite warehouses keep the order they were created with: SQLite cannot change a primary key without
copying the table, collations there are byte order already, and the order only steers query plans.
"""

from __future__ import annotations

from sqlalchemy import Connection, Table, text
from sqlalchemy.schema import CreateIndex

from xpm_pipeline.warehouse.db import dialect_name
from xpm_pipeline.warehouse.migrate import migration
from xpm_pipeline.warehouse.schema import ENTITY_TABLES
from xpm_pipeline.warehouse.views import VIEWS, create_views

VERSION = 22
NAME = "entity keys: identifiers in byte order, XPM's key first in primary keys and indexes"

_VIEWS_ON_ENTITY_TABLES = (*VIEWS, "v_export_queue")
"""Views to drop while a column's collation changes (PostgreSQL refuses it under a view)."""


@migration(VERSION, NAME)
def reorder_entity_keys(conn: Connection) -> None:
    if dialect_name(conn) != "postgresql":
        return
    stale = [table for table in ENTITY_TABLES.values() if _needs_reorder(conn, table)]
    if not stale:
        return
    for view in _VIEWS_ON_ENTITY_TABLES:
        conn.execute(text(f"DROP VIEW IF EXISTS {view}"))
    for table in stale:
        _reorder(conn, table)
    create_views(conn, _VIEWS_ON_ENTITY_TABLES)


def _needs_reorder(conn: Connection, table: Table) -> bool:
    declared = [column.name for column in table.primary_key.columns]
    actual = conn.execute(
        text(
            "SELECT a.attname FROM pg_index i "
            "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position) ON true "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = CAST(:table AS regclass) AND i.indisprimary ORDER BY k.position"
        ),
        {"table": table.name},
    ).scalars().all()
    return list(actual) != declared or bool(_recollate(conn, table))


def _recollate(conn: Connection, table: Table) -> list[str]:
    """``ALTER COLUMN ... TYPE`` clauses for the identifier columns not yet in the declared collation."""
    current = dict(
        conn.execute(
            text(
                "SELECT a.attname, c.collname FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation "
                "WHERE a.attrelid = CAST(:table AS regclass) AND a.attnum > 0 AND NOT a.attisdropped"
            ),
            {"table": table.name},
        ).all()
    )
    clauses = []
    for column in table.columns:
        declared = column.type.compile(dialect=conn.dialect)
        if 'COLLATE "C"' in declared and current.get(column.name) != "C":
            clauses.append(f"ALTER COLUMN {column.name} TYPE {declared}")
    return clauses


def _reorder(conn: Connection, table: Table) -> None:
    recollate = _recollate(conn, table)
    if recollate:
        conn.execute(text(f"ALTER TABLE {table.name} {', '.join(recollate)}"))
    primary_key = table.primary_key.name
    conn.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT IF EXISTS {primary_key}"))
    # Spelled out: SQLAlchemy's AddConstraint would take the key out of every later CREATE TABLE of ``table``.
    key = ", ".join(column.name for column in table.primary_key.columns)
    conn.execute(text(f"ALTER TABLE {table.name} ADD CONSTRAINT {primary_key} PRIMARY KEY ({key})"))
    for index in table.indexes:
        conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
        conn.execute(CreateIndex(index))
