"""Fixtures of the sync tests: a two-practice sandbox and a migrated warehouse on one simulated clock."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.migrate import migrate
from xpm_pipeline_tests.support import sandbox_client

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def sandbox(clock):
    with SandboxServer(SandboxConfig(size="small", seed=11, tenants=2, clock=clock), port=0) as server:
        yield server


@pytest.fixture
def engine(warehouse_url, clock):
    engine = make_engine(warehouse_url)
    migrate(engine, clock=clock)
    yield engine
    engine.dispose()


@pytest.fixture
def tenant(sandbox):
    return sandbox.tenant_ids[0]


@pytest.fixture
def client(sandbox, tenant, clock):
    with sandbox_client(sandbox, tenant, clock) as xpm:
        yield xpm
