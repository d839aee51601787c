"""The `xpm-pipeline` command as a user runs it: real processes, a real sandbox, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(SandboxConfig(size="small", seed=5, tenants=2), port=0) as server:
        yield server


@pytest.fixture
def env(sandbox, tmp_path):
    return cli_env(sandbox, tmp_path)


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("sandbox", "keygen", "connect", "disconnect", "tenants", "sync", "demo"):
        assert command in result.stdout


def test_keygen_prints_a_fernet_key():
    result = run("keygen")
    assert result.returncode == 0
    Fernet(result.stdout.strip().encode())


def test_connect_tenants_sync_disconnect(env, sandbox):
    connected = run("connect", "--yes", "--no-sync", "--tenant", sandbox.tenant_ids[0], env=env)
    assert connected.returncode == 0, connected.stderr
    assert sandbox.tenant_ids[0] in connected.stdout and sandbox.tenant_ids[1] not in connected.stdout

    listed = run("tenants", env=env)
    assert listed.returncode == 0 and sandbox.tenant_ids[0] in listed.stdout

    synced = run("sync", "--tenant", sandbox.tenant_ids[0], "--mode", "initial", "--entity", "staff",
                 "--entity", "task", env=env)
    assert synced.returncode == 0, synced.stderr
    assert "staff" in synced.stdout and "task" in synced.stdout and "ok" in synced.stdout

    again = run("sync", "--tenant", sandbox.tenant_ids[0], "--mode", "hourly", env=env)
    assert again.returncode == 0, again.stderr

    gone = run("disconnect", "--tenant", sandbox.tenant_ids[0], env=env)
    assert gone.returncode == 0, gone.stderr
    assert "not connected" in one_line_error(run("sync", "--tenant", sandbox.tenant_ids[0], env=env))


def test_secrets_never_reach_the_output(env, sandbox):
    connected = run("connect", "--yes", "--no-sync", env=env)
    assert connected.returncode == 0
    for stream in (connected.stdout, connected.stderr):
        assert env["XPM_CLIENT_SECRET"] not in stream and env["XPM_TOKEN_KEY"] not in stream


@pytest.mark.parametrize(
    "args, overrides, expected",
    [
        (("sync", "--tenant", "nobody", "--mode", "initial"), {}, "not connected"),
        (("sync", "--tenant", "x", "--mode", "weekly"), {}, "initial, hourly or nightly"),
        (("sync", "--tenant", "x", "--mode", "hourly", "--entity", "client"), {}, "hourly sync does not cover client"),
        (("sync", "--tenant", "x", "--entity", "invoices"), {}, "unknown entity"),
        (("tenants",), {"XPM_TOKEN_KEY": ""}, "XPM_TOKEN_KEY"),
        (("tenants",), {"XPM_DAILY_LIMIT": "lots"}, "XPM_DAILY_LIMIT must be an integer"),
        (("tenants",), {"XPM_API_BASE_URL": "ftp://nowhere"}, "XPM_API_BASE_URL: not an http(s) URL"),
        (("tenants",), {"XPM_TOKEN_KEY": "short"}, "XPM_TOKEN_KEY"),
        (("demo", "--size", "huge"), {}, "small, medium or large"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(env, args, overrides, expected):
    message = one_line_error(run(*args, env={**env, **overrides}))
    assert expected in message


def test_demo_runs_end_to_end(tmp_path):
    result = run("demo", "--size", "small", "--home", str(tmp_path / "demo"), timeout=300)
    assert result.returncode == 0, result.stderr
    for text in ("initial sync", "hourly sync", "nightly sync", "xpm_timesheets", "xpm_timesheet_changes",
                 "Export queue before the drain", "Export queue after the drain"):
        assert text in result.stdout


@pytest.mark.slow
def test_sandbox_serve_large_starts_and_serves_a_year_of_time(tmp_path):
    """The acceptance check as a user would run it: the command, its one line, then a year of time."""
    import re
    import select
    import signal
    import time
    from datetime import date

    from xpm_pipeline.config import api_base_from
    from xpm_pipeline.xpm.windows import DateWindow
    from xpm_pipeline_tests.support import admin

    process = subprocess.Popen(
        [sys.executable, "-m", "xpm_pipeline.cli", "sandbox", "serve", "--size", "large", "--port", "0",
         "--minute-limit", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        started = time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no start line within a minute"
        line = process.stdout.readline()
        seconds = time.monotonic() - started
        match = re.fullmatch(r"XPM sandbox: (http://\S+) client_id=(\S+) client_secret=(\S+)\n", line)
        assert match, line
        base_url = match.group(1)

        class Server:  # just enough of SandboxServer for the support helpers
            pass

        server = Server()
        server.base_url = base_url
        tenant = admin(server, "GET", "tenants")[0]["tenant_id"]
        token = admin(server, "POST", f"tenants/{tenant}/token")["access_token"]

        from xpm_pipeline.secrets import Secret
        from xpm_pipeline.xpm.client import XPMClient

        class Static:
            def access_token(self, tenant_id):
                return Secret(token)

            def force_refresh(self, tenant_id, rejected):
                return Secret(token)

        today = date.today()
        with XPMClient(base_url=api_base_from(base_url), tenant_id=tenant, tokens=Static()) as client:
            fetched = time.monotonic()
            rows = client.time_entries(DateWindow(today.replace(year=today.year - 1), today))
            fetch_seconds = time.monotonic() - fetched
        print(f"\nsandbox serve --size large: ready in {seconds:.1f} s; 1-year window: {len(rows):,} entries "
              f"fetched and parsed in {fetch_seconds:.1f} s")
        assert len(rows) > 50_000
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
