"""A held removal as a user meets it: `sync` fails with how to accept, `status` shows it, and
`sync --accept-removals` lets that one run remove, recording who."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.sync.removals import held_removals
from xpm_pipeline_tests.cli_support import cli_env, run


@pytest.fixture
def sandbox():
    with SandboxServer(SandboxConfig(size="small", seed=5, tenants=1), port=0) as server:
        yield server


def test_held_removal_shown_by_status_and_accepted_from_the_cli(sandbox, tmp_path):
    env = cli_env(sandbox, tmp_path)
    tenant = sandbox.tenant_ids[0]
    assert run("connect", "--yes", "--no-sync", env=env).returncode == 0
    assert run("sync", "--tenant", tenant, "--mode", "initial", "--entity", "staff", env=env).returncode == 0
    sandbox.state.tenant(tenant).staff.clear()  # XPM's staff list comes back empty

    held = run("sync", "--tenant", tenant, "--mode", "nightly", "--entity", "staff", env=env)
    assert held.returncode == 1
    (line,) = [line for line in held.stderr.splitlines() if line.strip()]
    assert line.startswith("error: staff: held: the nightly sync would remove 6 of 6 live rows of xpm_staff")
    assert f"--tenant {tenant} --mode nightly --accept-removals xpm_staff" in line
    shown = run("status", "--tenant", tenant, env=env)
    assert shown.returncode == 0 and "REMOVAL HELD on xpm_staff" in shown.stdout

    bad = run("sync", "--tenant", tenant, "--accept-removals", "xpm_nothing", env=env)
    assert bad.returncode == 2 and "unknown table 'xpm_nothing'" in bad.stderr

    accepted = run("sync", "--tenant", tenant, "--mode", "nightly", "--entity", "staff",
                   "--accept-removals", "xpm_staff", "--accepted-by", "bob", env=env)
    assert accepted.returncode == 0, accepted.stderr
    assert "REMOVAL HELD" not in run("status", "--tenant", tenant, env=env).stdout
    engine = create_engine(env["XPM_WAREHOUSE_URL"])
    with engine.connect() as conn:
        row = conn.execute(select(held_removals.c.status, held_removals.c.decided_by)).one()
    engine.dispose()
    assert tuple(row) == ("accepted", "bob")
