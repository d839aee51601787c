"""Migration 2 creates every entity table of the registry, with keys, indexes and pipeline columns."""

from __future__ import annotations

from sqlalchemy import inspect

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
        assert insp.get_pk_constraint(entity.table)["constrained_columns"] == ["tenant_id", *entity.key]
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
