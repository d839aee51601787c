"""Migration 2 creates every entity table of the registry, with keys, indexes and pipeline columns."""

from __future__ import annotations

from sqlalchemy import inspect, text

import xpm_pipeline.warehouse.migrate as m
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.warehouse import entity_migrations
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.schema import DELETED_AT, SYNCED_AT, ENTITY_TABLES


def test_migration_2_creates_every_entity_table(warehouse_url):
    engine = make_engine(warehouse_url)
    assert "xpm_pipeline.warehouse.entity_migrations" in m.MIGRATION_MODULES
    assert entity_migrations.VERSION == 2 and 2 in m.migrate(engine)
    assert m.migrate(engine) == []
    insp = inspect(engine)
    assert {e.table for e in ENTITIES.values()} <= set(insp.get_table_names())
    for entity in ENTITIES.values():
        columns = {c["name"]: c for c in insp.get_columns(entity.table)}
        assert list(columns) == [c.name for c in ENTITY_TABLES[entity.name].columns]
        assert not columns[SYNCED_AT]["nullable"] and columns[DELETED_AT]["nullable"]
        assert insp.get_pk_constraint(entity.table)["constrained_columns"] == [*entity.key, "tenant_id"]
        declared = {tuple(c.name for c in index.columns) for index in ENTITY_TABLES[entity.name].indexes}
        assert {tuple(i["column_names"]) for i in insp.get_indexes(entity.table)} == declared
    assert "_completed_reason" in {c["name"] for c in insp.get_columns("xpm_jobs")}
    if engine.dialect.name == "postgresql":
        assert "modified date" in insp.get_table_comment("xpm_timesheets")["text"]
        assert all(c["comment"] for c in insp.get_columns("xpm_timesheets"))
    engine.dispose()


def test_migration_2_is_not_reapplied_over_existing_tables(warehouse_url):
    engine = make_engine(warehouse_url)
    m.migrate(engine)
    assert 2 in m.applied_versions(engine) and m.pending(engine) == []
    engine.dispose()


def _old_shape(conn, table) -> None:
    """What migration 2 created before migration 22: tenant first, the database's collation."""
    from xpm_pipeline.entities import ENTITIES

    entity = ENTITIES[next(name for name, t in ENTITY_TABLES.items() if t is table)]
    for column in table.columns:
        declared = column.type.compile(dialect=conn.dialect)
        if 'COLLATE "C"' in declared:
            old = declared.replace('COLLATE "C"', 'COLLATE "default"')
            conn.execute(text(f"ALTER TABLE {table.name} ALTER COLUMN {column.name} TYPE {old}"))
    conn.execute(text(f"ALTER TABLE {table.name} DROP CONSTRAINT {table.primary_key.name}"))
    conn.execute(text(f"ALTER TABLE {table.name} ADD CONSTRAINT {table.primary_key.name} PRIMARY KEY (tenant_id, {', '.join(entity.key)})"))
    for index in table.indexes:
        conn.execute(text(f"DROP INDEX {index.name}"))
        columns = [c.name for c in index.columns]
        conn.execute(text(f"CREATE INDEX {index.name} ON {table.name} (tenant_id, {columns[0]})"))


def test_migration_22_rekeys_a_warehouse_created_before_it(warehouse_url):
    """An older PostgreSQL warehouse gets key-first primary keys, byte-order identifiers and its views back;
    its rows stay, and loading into it still upserts on (tenant_id, key)."""
    from datetime import datetime, timezone

    from xpm_pipeline.warehouse import key_order
    from xpm_pipeline.warehouse.control import schema_migrations
    from xpm_pipeline.warehouse.load import load_entity
    from xpm_pipeline.xpm.parse import Rows

    engine = make_engine(warehouse_url)
    m.migrate(engine)
    if engine.dialect.name != "postgresql":
        assert key_order.VERSION in m.applied_versions(engine)  # a no-op on SQLite, still recorded
        engine.dispose()
        return
    at = datetime(2026, 1, 5, tzinfo=timezone.utc)
    first = Rows(ENTITIES["staff"], {c.name: [None] for c in ENTITIES["staff"].columns})
    first.data["uuid"] = ["0b7f0000-0000-4000-8000-000000000001"]
    first.data["name"] = ["Ann"]
    load_entity(engine, "staff", "tenant-a", first, synced_at=at)
    with engine.begin() as conn:
        for view in key_order._VIEWS_ON_ENTITY_TABLES:
            conn.execute(text(f"DROP VIEW {view}"))
        for table in ENTITY_TABLES.values():
            _old_shape(conn, table)
        conn.execute(schema_migrations.delete().where(schema_migrations.c.version == key_order.VERSION))
    assert inspect(engine).get_pk_constraint("xpm_staff")["constrained_columns"] == ["tenant_id", "uuid"]

    assert m.migrate(engine) == [key_order.VERSION]
    insp = inspect(engine)
    for entity in ENTITIES.values():
        assert insp.get_pk_constraint(entity.table)["constrained_columns"] == [*entity.key, "tenant_id"]
        declared = {tuple(c.name for c in index.columns) for index in ENTITY_TABLES[entity.name].indexes}
        assert {tuple(i["column_names"]) for i in insp.get_indexes(entity.table)} == declared
    with engine.connect() as conn:
        collations = dict(conn.execute(text(
            "SELECT a.attname, c.collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation "
            "WHERE a.attrelid = 'xpm_timesheets'::regclass AND a.attnum > 0"
        )).all())
    assert collations["uuid"] == collations["tenant_id"] == collations["staff_uuid"] == collations["job_number"] == "C"
    assert collations["note"] == "default"
    assert {"v_timesheets_enriched", "v_sync_status", "v_export_queue"} <= set(insp.get_view_names())
    assert all(c["comment"] for c in insp.get_columns("xpm_timesheets"))
    second = Rows(ENTITIES["staff"], {k: list(v) for k, v in first.data.items()})
    second.data["name"] = ["Ann B"]
    result = load_entity(engine, "staff", "tenant-a", second, synced_at=at.replace(day=6))
    assert (result.inserted, result.updated) == (0, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM xpm_staff")).scalars().all() == ["Ann B"]
    assert m.migrate(engine) == []
    engine.dispose()
