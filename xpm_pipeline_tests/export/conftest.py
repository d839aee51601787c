"""Export fixtures: a sandbox practice, a warehouse (both dialects) with the tenant connected through the
real OAuth flow, and the runtime's quota-observed client, all on one simulated clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import IdentityEndpoints, Settings, api_base_from
from xpm_pipeline.runtime import Runtime, open_runtime
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import Secret, TokenCipher
from xpm_pipeline.xpm.connect import connect

START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def sandbox_config(clock) -> SandboxConfig:
    return SandboxConfig(size="small", seed=5, tenants=1, clock=clock)


@pytest.fixture
def sandbox(sandbox_config) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_config, port=0) as server:
        yield server


def settings_for(sandbox: SandboxServer, warehouse_url: str, home, **overrides) -> Settings:
    values = dict(
        home=home,
        warehouse_url=warehouse_url,
        api_base_url=api_base_from(sandbox.base_url),
        identity=IdentityEndpoints.same_origin(sandbox.base_url),
        client_id=sandbox.client_id,
        client_secret=Secret(sandbox.client_secret),
        token_key=Secret(TokenCipher.generate_key()),
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(sandbox, warehouse_url, tmp_path) -> Settings:
    return settings_for(sandbox, warehouse_url, tmp_path / "xpm")


@pytest.fixture
def runtime(settings, clock) -> Iterator[Runtime]:
    runtime = open_runtime(settings, clock=clock)
    connect(runtime.tokens, auto_consent=True)
    yield runtime
    runtime.close()


@pytest.fixture
def tenant(sandbox) -> str:
    return sandbox.tenant_ids[0]


@pytest.fixture
def client(runtime, tenant):
    with runtime.client(tenant) as xpm:
        yield xpm
