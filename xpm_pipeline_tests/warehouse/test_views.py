"""The analyst views as psql and sqlite3 users meet them: every view and column explained (comments on
PostgreSQL, the README table on SQLite, both from view_docs), hours that add up, the tenant's name, and
migration 25 bringing older warehouses along. On both dialects."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, text

import xpm_pipeline.warehouse.migrate as m
from xpm_pipeline.clock import ManualClock
from xpm_pipeline.warehouse.control import oauth_grants, tenants
from xpm_pipeline.warehouse.db import make_engine, write_transaction
from xpm_pipeline.warehouse.load import load_entity
from xpm_pipeline.warehouse.view_docs import VIEW_DOCS, readme_section, readme_table
from xpm_pipeline.warehouse.view_upgrade import VERSION
from xpm_pipeline.warehouse.views import ALL_VIEWS
from xpm_pipeline_tests.warehouse.test_load import timesheets

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
TENANT, NAME = "tenant-views", "Views & Co Chartered Accountants"
README = Path(__file__).resolve().parents[2] / "README.md"


def migrated(url: str):
    engine = make_engine(url)
    m.migrate(engine, clock=ManualClock(START))
    return engine


@pytest.fixture
def engine(warehouse_url):
    engine = migrated(warehouse_url)
    yield engine
    engine.dispose()


def register_tenant(engine, tenant_id: str = TENANT, name: str = NAME) -> None:
    with write_transaction(engine) as conn:
        conn.execute(insert(oauth_grants).values(
            grant_id=f"g-{tenant_id}", client_id="c", scopes="practicemanager", refresh_token_enc=None,
            access_token_enc=None, refresh_issued_at=START, status="active", created_at=START, updated_at=START))
        conn.execute(insert(tenants).values(
            tenant_id=tenant_id, tenant_name=name, tenant_type="PRACTICEMANAGER", connection_id=f"c-{tenant_id}",
            grant_id=f"g-{tenant_id}", slot=0, status="active", connected_at=START))


def load_minutes(engine, *minutes: int, tenant: str = TENANT) -> None:
    rows = timesheets(*({"uuid": f"ts-{i}", "minutes": value} for i, value in enumerate(minutes)))
    load_entity(engine, "timesheet", tenant, rows, synced_at=START)


def view_columns(conn, view: str) -> list[str]:
    return list(conn.execute(text(f"SELECT * FROM {view} WHERE 1 = 0")).keys())


def test_views_and_their_documentation_agree(engine):
    with engine.connect() as conn:
        for view in ALL_VIEWS:
            assert view_columns(conn, view) == list(VIEW_DOCS[view].columns), view
    assert set(VIEW_DOCS) == set(ALL_VIEWS)
    assert all(doc.comment and all(doc.columns.values()) for doc in VIEW_DOCS.values())


def test_every_view_and_view_column_carries_its_comment_on_postgres(postgres_url):
    """SQLite has no comments: the README lists them instead (test_readme_lists_every_view_column)."""
    engine = migrated(postgres_url)
    with engine.connect() as conn:
        for view in ALL_VIEWS:
            assert conn.execute(text(f"SELECT obj_description('{view}'::regclass, 'pg_class')")).scalar() == \
                VIEW_DOCS[view].comment
            comments = dict(conn.execute(text(
                "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
                f"WHERE a.attrelid = '{view}'::regclass AND a.attnum > 0 AND NOT a.attisdropped")).all())
            assert comments == VIEW_DOCS[view].columns, view
    engine.dispose()


def test_readme_lists_every_view_column():
    assert readme_section(README.read_text(encoding="utf-8")) == readme_table(), (
        "README.md's view table is stale: run `python -m xpm_pipeline.warehouse.view_docs README.md`")


def test_hours_are_rounded_and_sum_as_a_person_expects(engine):
    register_tenant(engine)
    load_minutes(engine, *([20, 40] * 82), 60)  # thirds of an hour: 0.33 + 0.67, 82 times, and one whole hour
    with engine.connect() as conn:
        hours = conn.execute(text("SELECT minutes, hours FROM v_timesheets_enriched WHERE tenant_id = :t"),
                             {"t": TENANT}).all()
        total = conn.execute(text("SELECT SUM(hours) FROM v_timesheets_enriched WHERE tenant_id = :t"),
                             {"t": TENANT}).scalar()
        if engine.dialect.name == "sqlite":
            kinds = set(conn.execute(text("SELECT DISTINCT typeof(hours) FROM v_timesheets_enriched")).scalars())
    expected = {20: Decimal("0.33"), 40: Decimal("0.67"), 60: Decimal("1.00")}
    assert {(minutes, Decimal(str(value)).quantize(Decimal("0.01"))) for minutes, value in hours} == set(expected.items())
    if engine.dialect.name == "postgresql":
        assert all(str(value) == str(expected[minutes]) for minutes, value in hours)  # NUMERIC(12,2): two places
        assert str(total) == "83.00"
    else:
        assert kinds == {"real"}  # never the integer 1 for a whole hour
        assert all(value == float(expected[minutes]) for minutes, value in hours)
        assert f"{total:.15g}" == "83"  # as the sqlite3 shell prints it: 83.0
        assert abs(total - 83) < 1e-9


def test_timesheets_carry_the_tenant_name(engine):
    register_tenant(engine)
    load_minutes(engine, 30)
    load_minutes(engine, 45, tenant="tenant-unregistered")
    with engine.connect() as conn:
        names = dict(conn.execute(text("SELECT tenant_id, tenant_name FROM v_timesheets_enriched")).all())
    assert names == {TENANT: NAME, "tenant-unregistered": None}  # an unknown tenant's time is still listed


def test_migration_25_brings_an_older_warehouse_along(warehouse_url, monkeypatch):
    """A warehouse migrated before 25 has the old views (unrounded hours, no tenant name, no comments)."""
    engine = make_engine(warehouse_url)
    older = [step for step in m.load_migrations() if step.version < VERSION]
    monkeypatch.setattr(m, "MIGRATIONS", older)
    monkeypatch.setattr(m, "MIGRATION_MODULES", [])
    m.migrate(engine)
    with write_transaction(engine) as conn:  # the views as they were before migration 25
        conn.execute(text("DROP VIEW v_timesheets_enriched"))
        conn.execute(text("CREATE VIEW v_timesheets_enriched AS SELECT tenant_id, uuid AS timesheet_uuid, minutes, "
                          "minutes / 60.0 AS hours FROM xpm_timesheets WHERE _deleted_at IS NULL"))
    register_tenant(engine)
    load_minutes(engine, 20)
    monkeypatch.undo()
    assert m.migrate(engine) == [step.version for step in m.load_migrations() if step.version >= VERSION]
    with engine.connect() as conn:
        for view in ALL_VIEWS:
            assert view_columns(conn, view) == list(VIEW_DOCS[view].columns)
        row = conn.execute(text("SELECT tenant_name, hours FROM v_timesheets_enriched")).one()
    assert row.tenant_name == NAME and Decimal(str(row.hours)) == Decimal("0.33")
    engine.dispose()
