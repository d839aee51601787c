"""Kill tests: SIGKILL `xpm-pipeline export drain` at every named kill point (and at random moments),
restart it, and prove every change reached XPM exactly once with nothing stuck.

Real processes, a real sandbox and the real clock: the killed worker's lease is 1 s, so the restarted
drain settles its item (read back from XPM) a second later. Default suite: one run per kill point on
each dialect; ``slow`` (``.ci/run``): ``KILL_RUNS`` runs per point, each killing at a different item.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import select

from xpm_pipeline.config import Settings
from xpm_pipeline.export import enqueue
from xpm_pipeline.export import tables as T
from xpm_pipeline.killpoints import ENV as KILL_ENV
from xpm_pipeline.runtime import open_runtime
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import TokenCipher
from xpm_pipeline.xpm.connect import connect
from xpm_pipeline_tests.kill_support import fresh_warehouse, runs_for
from xpm_pipeline_tests.export.support import (
    client_updates,
    entries_with_note,
    job_updates,
    task_updates,
    timesheet_creates,
)

EXPORT_POINTS = (
    "export.after_claim",
    "export.after_sending_commit",
    "export.after_response",
    "export.before_done_commit",
    "export.after_reconcile_read",
)
LEASE = "1"
CHANGES = 8  # timesheet creates 4, job 2, client 1, task 1


@dataclass
class Outcome:
    killed: bool  # the first drain died by SIGKILL
    restarts: int
    kills: int = 0  # drains that died by SIGKILL, restarts included
    sends: dict[str, int] = field(default_factory=dict)


def _env(sandbox: SandboxServer, url: str, home, key: str) -> dict:
    return {
        **os.environ,
        "XPM_API_BASE_URL": sandbox.base_url,
        "XPM_CLIENT_ID": sandbox.client_id,
        "XPM_CLIENT_SECRET": sandbox.client_secret,
        "XPM_TOKEN_KEY": key,
        "XPM_WAREHOUSE_URL": url,
        "XPM_HOME": str(home),
        "XPM_MINUTE_LIMIT": "100000",
        "COLUMNS": "200",
    }


def _drain(env: dict, kill_at: str | None = None) -> subprocess.Popen:
    child_env = dict(env)
    child_env.pop(KILL_ENV, None)
    if kill_at:
        child_env[KILL_ENV] = kill_at
    return subprocess.Popen(
        [sys.executable, "-m", "xpm_pipeline.cli", "export", "drain", "--tenant", env["XPM_TENANT"], "--lease", LEASE],
        env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _statuses(engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(select(T.queue.c.item_id, T.queue.c.status)).all())


def kill_and_recover(url: str, tmp_path, *, kill_at: str | tuple[str, ...] = (), kill_after: float | None = None) -> Outcome:
    """One run: queue CHANGES changes, kill a drain (at a point, or after a delay), restart until done.
    ``kill_at``: the kill point of the first drain, then of each restart in turn (``name`` or ``name:N``)."""
    plan = [kill_at] if isinstance(kill_at, str) else list(kill_at)
    config = SandboxConfig(size="small", seed=3, tenants=1, minute_limit=100_000)
    with SandboxServer(config, port=0) as sandbox:
        tenant = sandbox.tenant_ids[0]
        key = TokenCipher.generate_key()
        env = {**_env(sandbox, url, tmp_path / "home", key), "XPM_TENANT": tenant}
        runtime = open_runtime(Settings.from_env(env))
        try:
            connect(runtime.tokens, auto_consent=True)
            today = date.today()
            changes = (timesheet_creates(sandbox, tenant, 4, today, prefix="kill") + job_updates(sandbox, tenant, 2)
                       + client_updates(sandbox, tenant, 1) + task_updates(sandbox, tenant, 1))
            assert len(changes) == CHANGES
            enqueue(runtime.engine, tenant, changes)

            child = _drain(env, plan.pop(0) if plan else None)
            if kill_after is not None:
                time.sleep(kill_after)
                if child.poll() is None:
                    os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=120)
            killed = child.returncode == -signal.SIGKILL
            kills = int(killed)
            restarts = 0
            while set(_statuses(runtime.engine).values()) - {"done"}:
                restarts += 1
                assert restarts <= 4, _statuses(runtime.engine)
                time.sleep(float(LEASE) + 0.2)  # the killed worker's lease ends
                planned = plan.pop(0) if plan else None
                again = _drain(env, planned)
                out, err = again.communicate(timeout=120)
                if planned and again.returncode == -signal.SIGKILL:
                    kills += 1
                    continue
                assert again.returncode == 0, err
            _assert_exactly_once(sandbox, tenant, changes, runtime.engine)
            sends: dict[str, int] = {}
            for entry in sandbox.request_log:
                if entry["method"] != "GET" and "/practicemanager/" in entry["path"]:
                    sends[entry["path"].split("/3.1/")[-1]] = sends.get(entry["path"].split("/3.1/")[-1], 0) + 1
            return Outcome(killed=killed, restarts=restarts, kills=kills, sends=sends)
        finally:
            runtime.close()


def _assert_exactly_once(sandbox, tenant, changes, engine) -> None:
    state = sandbox.tenant(tenant)
    with engine.connect() as conn:
        items = {(r.kind, r.entity_key): r for r in conn.execute(select(T.queue)).all()}
    for change in changes:
        item = items[(change["kind"], change["key"])]
        assert item.status == "done", (change, item.status, item.last_error)
        fields = change["fields"]
        if change["kind"] == "timesheet":
            entries = entries_with_note(sandbox, tenant, fields["Note"])
            assert len(entries) == 1, (fields["Note"], len(entries))  # exactly once
            assert item.remote_id == entries[0].uuid
        elif change["kind"] == "job":
            assert state.jobs[change["key"]].budget == Decimal(fields["Budget"])
        elif change["kind"] == "client":
            assert state.clients[change["key"]].phone == fields["Phone"]
        else:
            assert state.job_tasks[change["key"]].estimated_minutes == fields["EstimatedMinutes"]


def _nth(point: str, run: int) -> str:
    """Kill at a different item each run (the reconcile point is reached once, at the first in-doubt item)."""
    if point == "export.after_reconcile_read":
        return point
    return f"{point}:{run % CHANGES + 1}"


@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_kill_at_each_point_loses_and_duplicates_nothing(warehouse_url, tmp_path, point):
    if point == "export.after_reconcile_read":
        # reach the read-back: kill once after sending, then kill the restart right after its read
        outcome = _kill_then_kill_reconcile(warehouse_url, tmp_path)
        assert outcome.kills == 2  # the restart really died after reading XPM back
    else:
        outcome = kill_and_recover(warehouse_url, tmp_path, kill_at=_nth(point, 0))
    assert outcome.killed


def _kill_then_kill_reconcile(url, tmp_path) -> Outcome:
    """First drain dies after committing `sending`; the restarted one dies right after reading XPM back;
    a third settles everything."""
    return kill_and_recover(url, tmp_path, kill_at=("export.after_response:2", "export.after_reconcile_read"))


@pytest.mark.slow
@pytest.mark.parametrize("point", EXPORT_POINTS)
def test_kill_at_each_point_many_times(warehouse_url, tmp_path, point):
    killed = 0
    for run in range(runs_for(warehouse_url)):
        home = tmp_path / f"run{run}"
        home.mkdir()
        url = fresh_warehouse(warehouse_url, home, run)
        kill_at = ((f"export.after_response:{run % CHANGES + 1}", "export.after_reconcile_read")
                   if point == "export.after_reconcile_read" else _nth(point, run))
        outcome = kill_and_recover(url, home, kill_at=kill_at)
        killed += outcome.killed and outcome.kills == (2 if point == "export.after_reconcile_read" else 1)
    assert killed == runs_for(warehouse_url)
    print(json.dumps({"point": point, "runs": runs_for(warehouse_url), "kills": killed, "losses": 0, "duplicates": 0}))


@pytest.mark.slow
def test_kill_at_random_moments(warehouse_url, tmp_path):
    rng = random.Random(7)
    killed = 0
    for run in range(runs_for(warehouse_url)):
        home = tmp_path / f"run{run}"
        home.mkdir()
        url = fresh_warehouse(warehouse_url, home, run)
        outcome = kill_and_recover(url, home, kill_after=rng.uniform(0.8, 2.2))
        killed += outcome.killed
    print(json.dumps({"point": "random", "runs": runs_for(warehouse_url), "kills": killed, "losses": 0, "duplicates": 0}))
