"""Quota fixtures: a warehouse with the quota tables (both dialects), a manual clock, a ledger factory.

Postgres: one database for the whole quota suite, emptied before each test, instead of the shared
``postgres_url`` (a database per test): CREATE/DROP DATABASE costs about a second each, which would
be most of this suite's run time. Isolation is the same for these tables.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.quota import QuotaLedger, QuotaLimits, create_quota_tables
from xpm_pipeline.warehouse.db import make_engine, write_transaction
from xpm_pipeline.xpm.client import CallInfo, CallResult

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
TENANT = "tenant-a"
OTHER = "tenant-b"


def read(tenant: str = TENANT, path: str = "staff.api/list") -> CallInfo:
    return CallInfo(tenant_id=tenant, method="GET", path=path, direction="read", entity="staff")


def write(tenant: str = TENANT, path: str = "time.api/add") -> CallInfo:
    return CallInfo(tenant_id=tenant, method="POST", path=path, direction="write", entity="timesheet")


OK = CallResult(status_code=200)


def quota_engine(url: str):
    engine = make_engine(url)
    with write_transaction(engine) as conn:
        create_quota_tables(conn)
    return engine


@pytest.fixture(scope="session")
def quota_postgres_url():
    admin = os.environ.get("XPM_TEST_POSTGRES_URL")
    if not admin:
        pytest.skip("XPM_TEST_POSTGRES_URL not set")
    base = make_url(admin).set(drivername="postgresql+psycopg")
    name = f"xpm_quota_{uuid.uuid4().hex[:12]}"
    server = create_engine(base, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    quota_engine(url).dispose()
    try:
        yield url
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def quota_url(request, tmp_path) -> str:
    """An empty quota schema on each dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'quota.db').as_posix()}"
    url = request.getfixturevalue("quota_postgres_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE xpm_quota_ledger, xpm_quota_state, xpm_quota_limits RESTART IDENTITY"))
    engine.dispose()
    return url


@pytest.fixture
def engine(quota_url):
    engine = quota_engine(quota_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def make_ledger(engine, clock):
    """``make_ledger(**limits)``: a ledger on the manual clock with exact windows (margin 0)."""
    extra_engines = []

    def build(*, separate_process: bool = False, ledger_kwargs: dict | None = None, **limits) -> QuotaLedger:
        # A second engine stands in for another OS process: its own connection pool, same database.
        target = engine
        if separate_process:
            target = make_engine(engine.url.render_as_string(hide_password=False))
            extra_engines.append(target)
        kwargs = {"margin": 0.0, **(ledger_kwargs or {})}
        return QuotaLedger(target, clock=clock, limits=QuotaLimits(**limits), **kwargs)

    yield build
    for extra in extra_engines:
        extra.dispose()


def spend(ledger: QuotaLedger, calls: int, call_factory=read, result: CallResult = OK) -> list[datetime]:
    """Make ``calls`` calls through the observer protocol; returns when each was admitted."""
    admitted = []
    for _ in range(calls):
        call = call_factory()
        ledger.before_call(call)
        admitted.append(ledger.admission_for(call).at)
        ledger.after_call(call, result)
    return admitted
