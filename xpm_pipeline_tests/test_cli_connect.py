"""`xpm-pipeline connect` as a practice admin meets it: consent, tenant choice, then the initial sync."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run
from xpm_pipeline_tests.secret_scan import observe
from xpm_pipeline_tests.support import consent_on_sandbox_page


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


class WaitingConnect:
    """``xpm-pipeline connect`` without --yes, as a person starts it: it prints the authorize URL and waits
    for the browser. The test plays the browser (and whatever else reaches the callback port)."""

    def __init__(self, env: dict, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xpm_pipeline.cli", "connect", "--no-sync", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200", **env})
        self.printed: list[str] = []
        for line in self.process.stderr:
            self.printed.append(line)
            if line.startswith("http"):
                self.authorize_url = line.strip()
                break
        else:
            raise AssertionError("connect printed no authorize URL: " + "".join(self.printed))
        self.started = time.monotonic()  # the callback server is listening from here on
        redirect = urlsplit(parse_qs(urlsplit(self.authorize_url).query)["redirect_uri"][0])
        self.callback = (redirect.hostname, redirect.port)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        err = "".join(self.printed) + err
        observe("xpm-pipeline connect stdout", out)
        observe("xpm-pipeline connect stderr", err)
        return self.process.returncode, out, err

    def __enter__(self) -> "WaitingConnect":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


def test_an_idle_connection_to_the_callback_port_does_not_stall_consent(env, sandbox):
    with WaitingConnect(env, "--timeout", "120") as waiting, socket.create_connection(waiting.callback):
        # The idle connection stays open (sending nothing) while the person consents and is redirected.
        answer = httpx.get(consent_on_sandbox_page(waiting.authorize_url), timeout=30)
        assert answer.status_code == 200 and "connected" in answer.text
        status, out, err = waiting.finish()
    assert status == 0, err
    assert all(tenant in out for tenant in sandbox.tenant_ids)


def test_connect_gives_up_at_timeout_with_an_idle_connection_open(env):
    with WaitingConnect(env, "--timeout", "2") as waiting, socket.create_connection(waiting.callback):
        status, _, err = waiting.finish()
        waited = time.monotonic() - waiting.started
    assert status == 2  # the CLI's exit status for a failure it explains
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        "error: no answer from the consent page within 2 s; run connect again"]
    assert "Traceback" not in err
    assert 2 <= waited < 2 + 60  # not held by the idle connection (which kept the old server forever); generous for a loaded CI
