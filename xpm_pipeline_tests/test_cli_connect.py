"""`xpm-pipeline connect` as a practice admin meets it: consent, tenant choice, then the initial sync."""

from __future__ import annotations

import pytest

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run


@pytest.fixture(scope="module")
def sandbox():
    # A real clock here: a minute limit above the ~110 calls of an initial sync keeps the test from waiting.
    with SandboxServer(SandboxConfig(size="small", seed=21, tenants=2, minute_limit=10_000), port=0) as server:
        yield server


@pytest.fixture
def env(sandbox, tmp_path):
    return cli_env(sandbox, tmp_path, XPM_MINUTE_LIMIT="10000")


def test_connect_runs_the_initial_sync_once(env, sandbox):
    tenant = sandbox.tenant_ids[1]
    first = run("connect", "--yes", "--tenant", tenant, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert tenant in first.stdout and "hourly slot" in first.stdout
    assert f"initial sync of {tenant}" in first.stdout and "timesheet" in first.stdout and "failed" not in first.stdout
    counts = sandbox.tenant(tenant).counts()
    assert str(counts["times"]) in first.stdout  # every time entry inserted

    again = run("connect", "--yes", "--tenant", tenant, env=env)
    assert again.returncode == 0, again.stderr
    assert "synced before" in again.stdout and "initial sync of" not in again.stdout

    status = run("status", "--tenant", tenant, env=env)
    assert "timesheet" in status.stdout and "succeeded" in status.stdout


def test_connect_refuses_a_tenant_not_consented(env):
    message = one_line_error(run("connect", "--yes", "--no-sync", "--tenant", "no-such-tenant", env=env))
    assert "no-such-tenant is not one this login may connect" in message  # and it lists the ones it may


def test_connect_without_app_credentials_says_what_to_set(env):
    broken = {**env, "XPM_CLIENT_ID": ""}
    assert "XPM_CLIENT_ID" in one_line_error(run("connect", "--yes", env=broken))
