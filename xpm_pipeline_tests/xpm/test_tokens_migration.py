"""Migration 24 brings a warehouse made before the refresh lease to it; its stored consents keep working."""

from __future__ import annotations

from sqlalchemy import delete, inspect, text

from xpm_pipeline.secrets import Secret
from xpm_pipeline.warehouse import migrate as m
from xpm_pipeline.warehouse.control import schema_migrations
from xpm_pipeline.warehouse.refresh_lease import VERSION
from xpm_pipeline_tests.xpm.test_tokens import Env

LEASE_COLUMNS = ("refresh_generation", "refresh_holder", "refresh_since", "refresh_lease_until")


def test_migration_24_adds_the_lease_to_existing_grants(warehouse_url):
    env = Env(warehouse_url)
    grant_id, _ = env.connect("t1")
    with env.engine.begin() as conn:  # back to the table as it was before version 24
        for column in LEASE_COLUMNS:
            conn.execute(text(f"ALTER TABLE xpm_oauth_grants DROP COLUMN {column}"))
        conn.execute(delete(schema_migrations).where(schema_migrations.c.version == VERSION))

    assert m.migrate(env.engine, clock=env.clock) == [VERSION]
    columns = {c["name"]: c for c in inspect(env.engine).get_columns("xpm_oauth_grants")}
    assert set(LEASE_COLUMNS) <= set(columns)
    if env.engine.dialect.name == "postgresql":
        assert all(columns[name]["comment"] for name in LEASE_COLUMNS)
    row = env.grant_row(grant_id)
    assert (row.refresh_generation, row.refresh_holder, row.refresh_lease_until) == (0, None, None)

    env.clock.advance(3600)
    assert env.store.access_token("t1") == Secret("access-2")
    assert env.grant_row(grant_id).refresh_generation == 1
    assert m.migrate(env.engine, clock=env.clock) == []
