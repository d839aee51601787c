"""Kill tests for the inbound syncs: SIGKILL a real sync process at a named kill point, sync again, and
prove the warehouse equals XPM with no duplicate and no finished month fetched twice.

Points: ``sync.after_window_fetch`` (a month read, not loaded), ``sync.after_window_load`` (loaded, not
checkpointed: that one month is read again), ``sync.nightly_before_commit`` (the whole nightly comparison
applied but not committed: none of it may survive). Default suite: one run per point on each dialect;
``slow``: ``XPM_KILL_RUNS`` runs per point, each killing at a different month.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import api_base_from
from xpm_pipeline.demo import PersonEdits
from xpm_pipeline.killpoints import ENV as KILL_ENV
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.sync.context import INITIAL, NIGHTLY, SyncContext
from xpm_pipeline.sync.run import run_sync
from xpm_pipeline.sync.timesheets import initial_windows
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.migrate import migrate
from xpm_pipeline.warehouse.schema import sync_checkpoints, timesheet_changes
from xpm_pipeline_tests.kill_support import fresh_warehouse, runs_for
from xpm_pipeline_tests.support import sandbox_client
from xpm_pipeline_tests.sync.test_scenarios import _CHILD, assert_no_duplicate_keys, assert_warehouse_equals_xpm

MONTHS = 49  # 36 back + this month + 12 ahead


def _run_child(sandbox, tenant, url, mode, kill_at) -> int:
    args = {"api": api_base_from(sandbox.base_url), "tenant": tenant, "db": url, "mode": mode,
            "entities": ["timesheet"], "token": sandbox.issue_token(tenant)["access_token"]}
    child = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env={**os.environ, KILL_ENV: kill_at},
                           capture_output=True, text=True, timeout=300)
    if child.returncode != -signal.SIGKILL:  # say why the child ended otherwise
        print(child.stderr[-3000:], file=sys.stderr)
    return child.returncode


def _checkpoints(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sync_checkpoints)).scalar()


def kill_initial_and_resume(url: str, point: str, month: int) -> dict:
    clock = ManualClock(datetime.now(timezone.utc))  # the child's bookkeeping uses the real clock
    engine = make_engine(url)
    migrate(engine, clock=clock)
    try:
        with SandboxServer(SandboxConfig(size="small", seed=11, tenants=1, clock=clock), port=0) as sandbox:
            tenant = sandbox.tenant_ids[0]
            code = _run_child(sandbox, tenant, url, INITIAL, f"{point}:{month}")
            assert code == -signal.SIGKILL, code
            checkpointed = _checkpoints(engine)
            assert checkpointed == month - 1  # the killed month was not checkpointed
            done_before = _done_scopes(engine)
            clock.advance(16 * 60)  # past the killed run's lease
            seen = len(sandbox.request_log)
            with sandbox_client(sandbox, tenant, clock) as client:
                report = run_sync(SyncContext(engine, client, tenant, INITIAL, clock=clock), ["timesheet"])
                assert report.ok
                refetched = [e for e in sandbox.request_log[seen:] if e["path"].endswith("time.api/list")]
                # finished months are never read again (windows from the resume's "today": one shifts at midnight)
                windows = initial_windows(SyncContext(engine, client, tenant, INITIAL, clock=clock))
                expected = sum(1 for w in windows if f"timesheet {w}" not in done_before)
                assert len(refetched) == expected
                assert_no_duplicate_keys(engine, tenant)
                assert_warehouse_equals_xpm_timesheets(engine, client, tenant, clock)
            return {"checkpointed": checkpointed, "refetched": len(refetched), "expected": expected}
    finally:
        engine.dispose()


def _done_scopes(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(sync_checkpoints.c.scope)).scalars())


def assert_warehouse_equals_xpm_timesheets(engine, client, tenant, clock):
    from xpm_pipeline.entities import ENTITIES
    from xpm_pipeline.sync.compare import compare_entity
    from xpm_pipeline.xpm.parse import Rows
    from xpm_pipeline_tests.sync.test_scenarios import _live

    truth = Rows(ENTITIES["timesheet"])
    for window in initial_windows(SyncContext(None, client, tenant, INITIAL, clock=clock)):
        truth.extend(client.time_entries(window))
    comparison = compare_entity("timesheet", _live(engine, "timesheet", tenant), truth.to_frame())
    assert not comparison, comparison.counts


def kill_nightly_and_resume(url: str) -> None:
    clock = ManualClock(datetime.now(timezone.utc))
    engine = make_engine(url)
    migrate(engine, clock=clock)
    try:
        with SandboxServer(SandboxConfig(size="small", seed=11, tenants=1, clock=clock), port=0) as sandbox:
            tenant = sandbox.tenant_ids[0]
            with sandbox_client(sandbox, tenant, clock) as client:
                assert run_sync(SyncContext(engine, client, tenant, INITIAL, clock=clock)).ok
                PersonEdits(sandbox.base_url, tenant, engine).make_all(clock.now().date())
                with engine.connect() as conn:
                    logged_before = conn.execute(select(func.count()).select_from(timesheet_changes)).scalar()
                code = _run_child(sandbox, tenant, url, NIGHTLY, "sync.nightly_before_commit")
                assert code == -signal.SIGKILL, code
                with engine.connect() as conn:  # nothing of the killed comparison survived
                    assert conn.execute(select(func.count()).select_from(timesheet_changes)).scalar() == logged_before
                clock.advance(16 * 60)
                assert run_sync(SyncContext(engine, client, tenant, NIGHTLY, clock=clock)).ok
                assert_warehouse_equals_xpm(engine, client, tenant, clock)
                with engine.connect() as conn:
                    assert conn.execute(select(func.count()).select_from(timesheet_changes)).scalar() > logged_before
    finally:
        engine.dispose()


@pytest.mark.parametrize("point", ["sync.after_window_fetch", "sync.after_window_load"])
def test_initial_sync_killed_mid_way_resumes_exactly(warehouse_url, point):
    kill_initial_and_resume(warehouse_url, point, month=17)


def test_nightly_killed_before_commit_leaves_nothing_half_applied(warehouse_url):
    kill_nightly_and_resume(warehouse_url)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["sync.after_window_fetch", "sync.after_window_load"])
def test_initial_sync_killed_at_many_months(warehouse_url, point, tmp_path):
    for run in range(runs_for(warehouse_url)):
        url = fresh_warehouse(warehouse_url, tmp_path, run)
        outcome = kill_initial_and_resume(url, point, month=1 + (run * 7) % MONTHS)
        assert outcome["refetched"] == outcome["expected"]
    print(json.dumps({"point": point, "runs": runs_for(warehouse_url), "kills": runs_for(warehouse_url), "duplicates": 0}))


@pytest.mark.slow
def test_nightly_killed_many_times(warehouse_url, tmp_path):
    for run in range(runs_for(warehouse_url)):
        kill_nightly_and_resume(fresh_warehouse(warehouse_url, tmp_path, run))
    print(json.dumps({"point": "sync.nightly_before_commit", "runs": runs_for(warehouse_url), "kills": runs_for(warehouse_url)}))
