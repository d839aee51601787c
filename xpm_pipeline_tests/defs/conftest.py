"""Fixtures for the Dagster layer: a sandbox with three practices, the XPM_* environment pointing at it,
the tenants connected (OAuth consent by script), and a temporary Dagster instance configured like
``dagster.yaml`` (SQLite storage, the same queued run coordinator)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import dagster as dg
import pytest

from xpm_pipeline.clock import Clock, ManualClock
from xpm_pipeline.config import Settings
from xpm_pipeline.definitions import make_definitions
from xpm_pipeline.defs.instance import local_instance_config
from xpm_pipeline.defs.partitions import tenant_partitions
from xpm_pipeline.defs.resources import XPMResource, local_resource
from xpm_pipeline.runtime import Runtime, open_runtime
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import TokenCipher
from xpm_pipeline.xpm.connect import connect
from xpm_pipeline_tests.secret_scan import scan_instance

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def clocked_resource(clock: Clock, **fields) -> XPMResource:
    """The production resource with the test's clock (shared with the sandbox); settings from XPM_*."""
    return local_resource(clock, **fields)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sandbox(clock) -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(size="small", seed=1, tenants=3, clock=clock), port=0) as server:
        yield server


@pytest.fixture
def warehouse(request, sqlite_url) -> str:
    """The warehouse URL: SQLite, or Postgres for tests marked ``BOTH_DIALECTS``."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_url")
    return sqlite_url


BOTH_DIALECTS = pytest.mark.parametrize(
    "warehouse", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
"""Run a test on the embedded SQLite warehouse and, with XPM_TEST_POSTGRES_URL, on Postgres."""


@pytest.fixture
def xpm_env(monkeypatch, tmp_path, sandbox, warehouse) -> Settings:
    """XPM_* as an operator would set them for the code location, pointing at the sandbox."""
    for name in ("XPM_IDENTITY_URL", "XPM_DAILY_LIMIT", "XPM_DAILY_RESERVE", "XPM_MINUTE_LIMIT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XPM_HOME", str(tmp_path / "xpm"))
    monkeypatch.setenv("XPM_API_BASE_URL", sandbox.base_url)
    monkeypatch.setenv("XPM_CLIENT_ID", sandbox.client_id)
    monkeypatch.setenv("XPM_CLIENT_SECRET", sandbox.client_secret)
    monkeypatch.setenv("XPM_TOKEN_KEY", TokenCipher.generate_key())
    monkeypatch.setenv("XPM_WAREHOUSE_URL", warehouse)
    return Settings.from_env()


@pytest.fixture
def runtime(xpm_env, clock) -> Iterator[Runtime]:
    runtime = open_runtime(xpm_env, clock=clock)
    yield runtime
    runtime.close()


@pytest.fixture
def tenants(runtime, sandbox) -> list[str]:
    """Every sandbox practice connected through the OAuth flow (consent by script), sorted."""
    _, connections = connect(runtime.tokens, auto_consent=True)
    ids = sorted(c.tenant_id for c in connections)
    assert ids == sorted(sandbox.tenant_ids)
    return ids


@pytest.fixture
def xpm(clock) -> XPMResource:
    return clocked_resource(clock)


@pytest.fixture
def defs(xpm) -> dg.Definitions:
    return make_definitions(xpm)


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    """A throwaway instance: SQLite storage in tmp, the production run coordinator and tag limits."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home), overrides=local_instance_config()) as instance:
        yield instance
        scan_instance(instance)  # the secrets scan reads every event the instance stored


@pytest.fixture
def partitioned(instance, tenants) -> list[str]:
    """The connected tenants as partitions (what the tenant sensor does; tested in test_sensors)."""
    instance.add_dynamic_partitions(tenant_partitions.name, tenants)
    return tenants
