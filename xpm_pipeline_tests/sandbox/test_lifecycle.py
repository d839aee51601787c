"""Determinism, the state file, the CLI, and the large size (slow)."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.sandbox.conftest import START, Api, http, make_config

READS = [
    ("client.api/list", {"detailed": "true"}), ("client.api/paged-list", {"pageSize": "10"}),
    ("clientgroup.api/list", {}), ("staff.api/list", {}), ("task.api/list", {}),
    ("job.api/current", {"detailed": "true"}), ("job.api/list", {"from": "20260101", "to": "20261231"}),
    ("time.api/list", {"from": "20251124", "to": "20261123"}),
]


def snapshot(sb: SandboxServer) -> list[bytes]:
    out = []
    for tenant in sb.tenant_ids:
        api = Api(sb, tenant)
        out += [api.get(path, **params).content for path, params in READS]
        group = next(iter(api.tenant.groups))
        out.append(api.get(f"clientgroup.api/get/{group}").content)
    return out


def test_same_seed_same_bytes_other_seed_other_data():
    with SandboxServer(make_config(clock=ManualClock(START))) as one, \
            SandboxServer(make_config(clock=ManualClock(START))) as two, \
            SandboxServer(make_config(clock=ManualClock(START), seed=2)) as other:
        assert one.tenant_ids == two.tenant_ids != other.tenant_ids
        assert one.client_id == two.client_id
        assert snapshot(one) == snapshot(two)
        assert snapshot(one)[0] != snapshot(other)[0]
        # Writes draw new UUIDs from a seeded stream too: the same writes give the same answers.
        answers = []
        for sb in (one, two):
            api = Api(sb)
            job = next(j for j in api.tenant.jobs.values() if j.tasks)
            body = (f"<Timesheet><Job>{job.job_number}</Job><TaskUUID>{job.tasks[0].uuid}</TaskUUID><StaffUUID>"
                    f"{next(iter(api.tenant.staff))}</StaffUUID><Date>20261120</Date><Minutes>5</Minutes></Timesheet>")
            answers.append(api.send("POST", "time.api/add", body).content)
        assert answers[0] == answers[1]


DIGEST = """
import hashlib, httpx
from xpm_pipeline.clock import ManualClock
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
with SandboxServer(SandboxConfig(size="small", seed=5, tenants=2, clock=ManualClock("{start}"))) as sb:
    digest = hashlib.sha256()
    for tenant in sb.tenant_ids:
        token = sb.issue_token(tenant)["access_token"]
        for path in ("client.api/list?detailed=true", "job.api/current?detailed=true",
                     "time.api/list?from=20251124&to=20261123", "clientgroup.api/list"):
            digest.update(httpx.get(sb.api_url + path, headers={{"Authorization": "Bearer " + token,
                                                                 "Xero-Tenant-Id": tenant}}).content)
    print(digest.hexdigest())
"""


def test_determinism_across_processes_and_hash_seeds():
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", DIGEST.format(start=START)], env=env, capture_output=True,
                             text=True, timeout=60, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_state_file_round_trip(tmp_path, clock):
    path = tmp_path / "sandbox.state"
    with SandboxServer(make_config(clock=clock, state_path=path)) as sb:
        api = Api(sb)
        job = next(j for j in api.tenant.jobs.values() if j.tasks)
        body = (f"<Timesheet><Job>{job.job_number}</Job><TaskUUID>{job.tasks[0].uuid}</TaskUUID><StaffUUID>"
                f"{next(iter(api.tenant.staff))}</StaffUUID><Date>20261120</Date><Minutes>42</Minutes>"
                "<Note>Kept</Note></Timesheet>")
        new_uuid = api.ok(api.send("POST", "time.api/add", body)).findtext("Time/UUID")
        client = next(iter(api.tenant.clients.values()))
        api.admin("PATCH", f"tenants/{api.tenant_id}/clients/{client.uuid}", {"phone": "09 000 0000"})
        before = snapshot(sb)
        ids, client_id, token = sb.tenant_ids, sb.client_id, api.token
        assert api.admin("POST", "state/save").json() == {"saved": str(path)}
    assert path.exists()
    # A different seed on the command line does not matter: the file wins.
    with SandboxServer(make_config(clock=clock, state_path=path, seed=99)) as again:
        assert again.tenant_ids == ids and again.client_id == client_id
        api = Api(again, token=token)  # tokens and connections survive too
        assert api.xml(f"time.api/get/{new_uuid}").findtext("Time/Note") == "Kept"
        assert snapshot(again) == before
        assert again.state.tenant(ids[0]).clients[client.uuid].phone == "09 000 0000"
        # The model still works after loading: indexes, locks and writes.
        api.ok(api.send("DELETE", f"time.api/delete/{new_uuid}"))


def test_state_file_must_be_a_sandbox_state(tmp_path):
    bogus = tmp_path / "bogus.state"
    bogus.write_bytes(b"not a pickle")
    with pytest.raises(ValueError):
        SandboxServer(make_config(state_path=bogus)).start()


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xpm_pipeline.sandbox.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_serve_prints_one_line_and_stops_cleanly(tmp_path, signum):
    state = tmp_path / "cli.state"
    proc = _cli("serve", "--port", "0", "--tenants", "2", "--seed", "3", "--state", str(state),
                "--minute-limit", "100", "--day-window", "fixed", "--time-filter", "created")
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"XPM sandbox: (http://127\.0\.0\.1:\d+) client_id=([0-9A-F]{32}) client_secret=(\S+)\n", line)
        assert match, line
        tenants = http.get(match[1] + "/_sandbox/tenants").json()
        assert len(tenants) == 2
        token = http.post(f"{match[1]}/_sandbox/tenants/{tenants[0]['tenant_id']}/token").json()
        answer = http.get(match[1] + "/practicemanager/3.1/staff.api/list", headers={
            "Authorization": f"Bearer {token['access_token']}", "Xero-Tenant-Id": tenants[0]["tenant_id"]})
        assert answer.status_code == 200 and answer.headers["x-minlimit-remaining"] == "99"
    finally:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "" and state.exists()


@pytest.mark.parametrize("args, message", [
    (["--size", "huge"], "--size must be one of small|medium|large"),
    (["--port", "abc"], "--port must be an integer"),
    (["--port", "70000"], "--port must be 0-65535"),
    (["--tenants", "0"], "--tenants must be 1-50"),
    (["--day-window", "weekly"], "--day-window must be one of rolling|fixed"),
    (["--daily-limit", "-5"], "--daily-limit must be >= 1"),
])
def test_cli_bad_flags_give_one_line(args, message):
    proc = _cli("serve", *args)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert err.strip().count("\n") == 0 and message in err, err


def test_cli_port_in_use():
    with SandboxServer(make_config()) as sb:
        proc = _cli("serve", "--port", str(sb.port))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and err.strip().count("\n") == 0 and "cannot listen" in err


@pytest.mark.slow
def test_large_size_start_and_one_year_window():
    started = time.perf_counter()
    config = SandboxConfig(size="large", seed=1, tenants=1, daily_limit=100_000, minute_limit=100_000,
                           clock=ManualClock(START))
    with SandboxServer(config) as sb:
        start_seconds = time.perf_counter() - started
        counts = sb.tenant().counts()
        api = Api(sb)
        started = time.perf_counter()
        answer = api.get("time.api/list", **{"from": "20251124", "to": "20261123"})
        window_seconds = time.perf_counter() - started
        assert answer.status_code == 200
        entries = answer.content.count(b"<Time>")
        digest = hashlib.sha256(answer.content).hexdigest()[:12]
        print(f"\nlarge: start {start_seconds:.2f} s ({counts}); 1-year time.api/list: {entries} entries, "
              f"{len(answer.content) / 1e6:.1f} MB in {window_seconds:.2f} s (sha256 {digest})")
    assert counts["clients"] == 5000 and counts["current_jobs"] == 3000 and counts["staff"] == 150
    assert counts["tasks"] == 60 and counts["times"] == 300_000
    assert 60_000 <= entries <= 90_000
    assert start_seconds < 60 and window_seconds < 60
