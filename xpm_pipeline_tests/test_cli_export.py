"""`xpm-pipeline export add | drain | dry-run | retry-dead` and `xpm-pipeline queue`, as a user runs them."""

from __future__ import annotations

import json
from datetime import date

import pytest

from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline_tests.cli_support import cli_env, one_line_error, run
from xpm_pipeline_tests.export.support import entries_with_note, job_updates, timesheet_creates


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(SandboxConfig(size="small", seed=8, tenants=1), port=0) as server:
        yield server


@pytest.fixture
def env(sandbox, tmp_path):
    env = cli_env(sandbox, tmp_path)
    connected = run("connect", "--yes", "--no-sync", env=env)
    assert connected.returncode == 0, connected.stderr
    return env


def _file(tmp_path, changes, name="changes.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return str(path)


def test_add_dry_run_queue_drain_round_trip(env, sandbox, tmp_path):
    tenant = sandbox.tenant_ids[0]
    today = date.today()
    changes = job_updates(sandbox, tenant, 2, budget="800.00") + timesheet_creates(
        sandbox, tenant, 3, today, prefix=f"cli-{tmp_path.name}")
    path = _file(tmp_path, changes)

    added = run("export", "add", "--tenant", tenant, "--file", path, env=env)
    assert added.returncode == 0, added.stderr
    assert "queued 5 new" in added.stdout
    again = run("export", "add", "--tenant", tenant, "--file", path, env=env)
    assert "queued 0 new, merged 2 into waiting items, 3 already queued" in again.stdout

    dry = run("export", "dry-run", "--tenant", tenant, env=env)
    assert dry.returncode == 0, dry.stderr
    assert "5 item(s), 5 call(s); 5 go now" in dry.stdout
    assert dry.stdout.index("timesheet create") < dry.stdout.index("job update")  # priority order
    assert not any(e["method"] != "GET" for e in sandbox.request_log if "/practicemanager/" in e["path"]
                   and e["tenant_id"] == tenant and "cli-" + tmp_path.name in str(e))  # dry run calls nothing

    listed = run("queue", "--tenant", tenant, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "pending 5" in listed.stdout and "timesheets 3" in listed.stdout and "job updates 2" in listed.stdout

    drained = run("export", "drain", "--tenant", tenant, env=env)
    assert drained.returncode == 0, drained.stderr
    assert "sent 5: 5 done, 0 dead" in drained.stdout and "queue empty" in drained.stdout
    for change in changes[2:]:
        assert len(entries_with_note(sandbox, tenant, change["fields"]["Note"])) == 1

    done = run("queue", "--tenant", tenant, "--status", "done", env=env)
    assert done.returncode == 0 and "done 5" in done.stdout and "OK" in done.stdout


def test_queueing_and_planning_need_no_xpm_credentials(env, sandbox, tmp_path):
    """add, dry-run, queue and retry-dead only read and write the warehouse; drain calls XPM and needs the app."""
    tenant = sandbox.tenant_ids[0]
    no_app = {**env, "XPM_CLIENT_ID": "", "XPM_CLIENT_SECRET": "", "XPM_TOKEN_KEY": ""}
    path = _file(tmp_path, job_updates(sandbox, tenant, 1, budget="900.00"))

    added = run("export", "add", "--tenant", tenant, "--file", path, env=no_app)
    assert added.returncode == 0, added.stderr
    assert "queued 1 new" in added.stdout
    dry = run("export", "dry-run", "--tenant", tenant, env=no_app)
    assert dry.returncode == 0, dry.stderr
    assert "1 item(s), 1 call(s)" in dry.stdout
    for args in (("queue",), ("queue", "--tenant", tenant)):
        listed = run(*args, env=no_app)
        assert listed.returncode == 0, listed.stderr
        assert "pending 1" in listed.stdout
    retried = run("export", "retry-dead", "--tenant", tenant, env=no_app)
    assert retried.returncode == 0 and "0 dead item(s) back in the queue" in retried.stdout
    assert "unknown tenant 'nobody'" in one_line_error(run("export", "add", "--tenant", "nobody", "--file", path,
                                                            env=no_app))

    drain = run("export", "drain", "--tenant", tenant, env={**env, "XPM_CLIENT_ID": "", "XPM_CLIENT_SECRET": ""})
    assert "XPM_CLIENT_ID and XPM_CLIENT_SECRET must be set" in one_line_error(drain)
    assert "pending 1" in run("queue", "--tenant", tenant, env=env).stdout  # the refused drain sent nothing


def test_dead_items_show_why_and_can_be_retried(env, sandbox, tmp_path):
    tenant = sandbox.tenant_ids[0]
    path = _file(tmp_path, [{"kind": "job", "op": "update", "key": "ZZ000000", "fields": {"Budget": "1.00"}}])
    assert run("export", "add", "--tenant", tenant, "--file", path, env=env).returncode == 0
    drained = run("export", "drain", "--tenant", tenant, env=env)
    assert "1 dead" in drained.stdout
    dead = run("queue", "--tenant", tenant, env=env)
    assert "dead 1" in dead.stdout and "ZZ000000" in dead.stdout
    retried = run("export", "retry-dead", "--tenant", tenant, env=env)
    assert "1 dead item(s) back in the queue" in retried.stdout
    assert "pending 1" in run("queue", "--tenant", tenant, env=env).stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("export", "add", "--tenant", "{tenant}", "--file", "{bad}"), "changes.jsonl line 2: field 'Minutes'"),
        (("export", "add", "--tenant", "nope", "--file", "{good}"), "unknown tenant 'nope'"),
        (("export", "add", "--tenant", "{tenant}", "--file", "/no/such/file.jsonl"), "cannot read the change file"),
        (("export", "drain", "--tenant", "nope"), "tenant nope is not connected"),
        (("export", "dry-run", "--tenant", "nope"), "unknown tenant 'nope'"),
        (("export", "retry-dead", "--tenant", "nope"), "unknown tenant 'nope'"),
        (("queue", "--tenant", "nope"), "unknown tenant 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_queues_nothing(env, sandbox, tmp_path, args, expected):
    tenant = sandbox.tenant_ids[0]
    good = timesheet_creates(sandbox, tenant, 2, date.today(), prefix="bad-input")
    bad = [good[0], dict(good[1], fields=dict(good[1]["fields"], Minutes="lots"))]
    paths = {"good": _file(tmp_path, good, "good.jsonl"), "bad": _file(tmp_path, bad)}
    argv = [a.format(tenant=tenant, **paths) for a in args]
    assert expected in one_line_error(run(*argv, env=env))
    listed = run("queue", "--tenant", tenant, env=env)
    assert "pending 0" in listed.stdout  # nothing from a refused file was queued


def test_queue_rejects_an_unknown_status(env):
    result = run("queue", "--status", "lost", env=env)
    assert result.returncode != 0 and "unknown status lost" in result.stderr


def test_status_shows_runs_quota_queue_schedule_and_tokens(env, sandbox, tmp_path):
    tenant = sandbox.tenant_ids[0]
    synced = run("sync", "--tenant", tenant, "--mode", "initial", "--entity", "staff", env=env)
    assert synced.returncode == 0, synced.stderr
    path = _file(tmp_path, job_updates(sandbox, tenant, 1))
    assert run("export", "add", "--tenant", tenant, "--file", path, env=env).returncode == 0
    shown = run("status", "--tenant", tenant, env=env)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "next hourly sync" in out and "next nightly" in out
    assert "API calls today: 1 reads, 0 writes of 10000" in out
    assert "export queue: job updates 1" in out
    assert "tokens: active; access token valid until" in out
    assert "staff" in out and "initial" in out and "succeeded" in out
    assert "unknown tenant 'nope'" in run("status", "--tenant", "nope", env=env).stderr

