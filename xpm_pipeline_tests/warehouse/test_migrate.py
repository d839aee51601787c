"""The migration runner: ordered, recorded, open for later registrations, safe under concurrency."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from sqlalchemy import inspect, select, text

from xpm_pipeline.clock import ManualClock
import xpm_pipeline.warehouse.migrate as m
from xpm_pipeline.warehouse.control import schema_migrations, tenant_slot
from xpm_pipeline.warehouse.db import make_engine


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register test-only migrations on top of migration 1 alone, without touching the real registry."""
    monkeypatch.setattr(m, "MIGRATIONS", [step for step in m.MIGRATIONS if step.version == 1])
    monkeypatch.setattr(m, "MIGRATION_MODULES", [])
    return m


def test_first_migration_creates_control_tables_with_comments(warehouse_url):
    engine = make_engine(warehouse_url)
    clock = ManualClock()
    assert m.applied_versions(engine) == []
    assert 1 in m.migrate(engine, clock=clock)
    assert m.migrate(engine, clock=clock) == []
    assert 1 in m.applied_versions(engine)
    names = set(inspect(engine).get_table_names())
    assert {"xpm_oauth_grants", "xpm_tenants", "xpm_schema_migrations"} <= names
    with engine.connect() as conn:
        row = conn.execute(select(schema_migrations).where(schema_migrations.c.version == 1)).one()
    assert row.applied_at == clock.now() and "control tables" in row.name
    if engine.dialect.name == "postgresql":
        insp = inspect(engine)
        assert "OAuth" in insp.get_table_comment("xpm_tenants")["text"]
        comments = {c["name"]: c["comment"] for c in insp.get_columns("xpm_tenants")}
        assert all(comments.values()), comments


def test_later_migrations_register_and_apply_in_order(warehouse_url, scratch_registry):
    engine = make_engine(warehouse_url)
    order = []

    @m.migration(3, "three")
    def _three(conn):
        order.append(3)
        conn.execute(text("CREATE TABLE t3 (id INTEGER)"))

    @m.migration(2, "two")
    def _two(conn):
        order.append(2)
        conn.execute(text("CREATE TABLE t2 (id INTEGER)"))

    assert m.migrate(engine) == [1, 2, 3]
    assert order == [2, 3]
    assert m.applied_versions(engine) == [1, 2, 3]
    assert m.pending(engine) == []


def test_failed_migration_leaves_nothing_and_is_retried(warehouse_url, scratch_registry):
    engine = make_engine(warehouse_url)
    attempts = []

    @m.migration(2, "flaky")
    def _flaky(conn):
        conn.execute(text("CREATE TABLE half_done (id INTEGER)"))
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        m.migrate(engine)
    assert m.applied_versions(engine) == [1]
    assert "half_done" not in inspect(engine).get_table_names()
    assert m.migrate(engine) == [2]


def test_registry_refuses_conflicting_versions(scratch_registry):
    with pytest.raises(m.MigrationError):
        m.register(1, "something else", lambda conn: None)
    with pytest.raises(m.MigrationError):
        m.register(0, "zero", lambda conn: None)


def test_unknown_applied_version_is_refused(warehouse_url):
    engine = make_engine(warehouse_url)
    m.migrate(engine)
    with engine.begin() as conn:
        conn.execute(schema_migrations.insert().values(version=999, name="future", applied_at=ManualClock().now()))
    with pytest.raises(m.MigrationError, match="999"):
        m.migrate(engine)


def test_concurrent_migrators_apply_each_migration_once(warehouse_url, scratch_registry):
    engine = make_engine(warehouse_url)
    runs = []

    @m.migration(2, "counted")
    def _counted(conn):
        runs.append(1)
        conn.execute(text("CREATE TABLE counted (id INTEGER)"))

    errors = []
    barrier = threading.Barrier(4)

    def go():
        try:
            barrier.wait()
            m.migrate(make_engine(warehouse_url))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert runs == [1]
    assert m.applied_versions(engine) == [1, 2]


def _migrate_in_child(url, barrier):
    barrier.wait()
    m.migrate(make_engine(url))


def test_concurrent_processes_migrate_a_fresh_database(warehouse_url):
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_migrate_in_child, args=(warehouse_url, barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert m.applied_versions(make_engine(warehouse_url)) == [step.version for step in m.load_migrations()]


def test_tenant_slot_is_stable_crc32():
    assert tenant_slot("2c7b2a4e-0000-4000-8000-000000000001") == tenant_slot("2c7b2a4e-0000-4000-8000-000000000001")
    assert {tenant_slot(f"t{i}") for i in range(50)} == {0, 1, 2, 3}
    import zlib

    assert tenant_slot("abc") == zlib.crc32(b"abc") % 4
