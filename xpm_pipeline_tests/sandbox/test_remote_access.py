"""The sandbox's reach: `sandbox serve` listens beyond this machine only when asked (--allow-remote, with a
warning), and the /_sandbox/ admin interface (tokens, clock, faults) answers only this machine unless
the sandbox was started that way."""

from __future__ import annotations

import ipaddress
import select
import signal
import subprocess
import sys

import pytest

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.sandbox.admin import is_loopback
from xpm_pipeline_tests.cli_support import one_line_error, run
from xpm_pipeline_tests.sandbox.conftest import http


def _remote_address() -> str | None:
    """A non-loopback IPv4 address of this machine (connecting to it from here is not loopback)."""
    try:
        found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return next((a for a in found if ipaddress.ip_address(a).version == 4 and not ipaddress.ip_address(a).is_loopback),
                None)


REMOTE = _remote_address()
needs_remote = pytest.mark.skipif(REMOTE is None, reason="this machine has no non-loopback IPv4 address")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "10.0.0.1", "128.0.0.1", "::ffff:10.0.0.1", "fe80::1",
                                  "example.com", "127.0.0.1.example.com"])
def test_other_addresses_are_not_loopback(host):
    assert not is_loopback(host)


def _admin_status(host: str, port: int, method: str, path: str, body=None) -> tuple[int, dict]:
    response = http.request(method, f"http://{host}:{port}/_sandbox/{path}", json=body)
    return response.status_code, response.json()


@needs_remote
@pytest.mark.parametrize("allow_remote", [False, True])
def test_admin_answers_other_machines_only_when_allowed(allow_remote):
    opened = {"allow_remote": True} if allow_remote else {}  # the default is what is under test
    with SandboxServer(SandboxConfig(size="small", tenants=1), host="0.0.0.0", port=0, **opened) as server:
        tenant = server.tenant_ids[0]
        for method, path, body in (("GET", "tenants", None), ("POST", f"tenants/{tenant}/token", None),
                                   ("POST", "clock", {"advance_seconds": 60}),
                                   ("POST", "faults", {"path": "staff.api/list", "kind": "reset"})):
            assert _admin_status("127.0.0.1", server.port, method, path, body)[0] in (200, 201)
            status, answer = _admin_status(REMOTE, server.port, method, path, body)
            if allow_remote:
                assert status in (200, 201), answer
            else:
                assert status == 403 and "--allow-remote" in answer["error"], answer
        if not allow_remote:
            assert len(server.faults.list()) == 1  # only the loopback client's fault was added
        # XPM and identity paths answer everyone either way: only the admin interface is this machine's
        assert http.get(f"http://{REMOTE}:{server.port}/connections").status_code == 401


def test_serve_refuses_a_remote_host_without_allow_remote():
    refused = run("sandbox", "serve", "--host", "0.0.0.0", "--port", "0", timeout=30)
    assert refused.returncode == 2
    line = one_line_error(refused)
    assert "'0.0.0.0' is not a loopback address" in line and "--allow-remote" in line
    assert refused.stdout == ""


def test_serve_with_allow_remote_warns_in_one_line_and_serves():
    process = subprocess.Popen(
        [sys.executable, "-m", "xpm_pipeline.cli", "sandbox", "serve", "--host", "0.0.0.0", "--port", "0",
         "--allow-remote"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no start line within a minute"
        banner = process.stdout.readline()
        assert banner.startswith("XPM sandbox: http://0.0.0.0:"), banner
        port = int(banner.split()[2].rsplit(":", 1)[1])
        assert _admin_status("127.0.0.1", port, "GET", "tenants")[0] == 200
        if REMOTE is not None:
            assert _admin_status(REMOTE, port, "GET", "tenants")[0] == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: the sandbox listens on '0.0.0.0'"), stderr
    assert "/_sandbox/" in lines[0]
