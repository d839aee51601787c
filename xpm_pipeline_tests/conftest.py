"""Shared fixtures: a fresh warehouse database per test (SQLite file, or its own Postgres database)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "XPM_TEST_POSTGRES_URL"

# The whole-suite secrets scan (also in the pyproject's addopts; registered once either way).
pytest_plugins = ["xpm_pipeline_tests.secret_scan"]


def _admin_url() -> str | None:
    return os.environ.get(POSTGRES_ENV) or None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A brand-new Postgres database for this test only, dropped afterwards."""
    admin = _admin_url()
    if not admin:
        pytest.skip(f"{POSTGRES_ENV} not set")
    base = make_url(admin).set(drivername="postgresql+psycopg")
    name = f"xpm_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{(tmp_path / 'warehouse.db').as_posix()}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request) -> str:
    """Run the test on both warehouse dialects."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
