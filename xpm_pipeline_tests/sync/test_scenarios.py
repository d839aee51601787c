"""The three inbound syncs against the sandbox, on SQLite and on Postgres.

The warehouse is compared with what XPM itself answers (read back through the client), using the same
registry-typed comparison the nightly sync uses, so "equal" means equal field by field.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pandas as pd
import pytest
from sqlalchemy import func, select

from xpm_pipeline.clock import ManualClock
from xpm_pipeline.config import api_base_from
from xpm_pipeline.demo import PersonEdits
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.sync.compare import compare_entity
from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY, SyncContext
from xpm_pipeline.sync.run import run_sync
from xpm_pipeline.sync.timesheets import initial_windows
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.load import LoadResult
from xpm_pipeline.warehouse.migrate import migrate
from xpm_pipeline.warehouse.schema import sync_runs, table_for, timesheet_changes
from xpm_pipeline.xpm.client import XPMClient
from xpm_pipeline.xpm.parse import Rows
from xpm_pipeline_tests.support import sandbox_client



def sync(engine, client, tenant, clock, mode, entities=None):
    report = run_sync(SyncContext(engine, client, tenant, mode, clock=clock), entities)
    assert report.ok, [(o.entity, o.error) for o in report.outcomes]
    return report


def _live(engine, entity: str, tenant: str, *where) -> pd.DataFrame:
    spec = ENTITIES[entity]
    table = table_for(entity)
    query = select(*(table.c[name] for name in spec.column_names)).where(
        table.c.tenant_id == tenant, table.c._deleted_at.is_(None), *where)
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(query).fetchall(), columns=list(spec.column_names))


def xpm_now(client: XPMClient, clock) -> dict[str, Rows]:
    """Everything XPM holds for the tenant right now, read through the API."""
    clients = client.clients(detailed=True)
    groups = client.client_groups()["client_group"]
    members = Rows(ENTITIES["client_group_member"])
    for uuid in groups.column("uuid"):
        members.extend(client.client_group(uuid)["client_group_member"])
    jobs = client.current_jobs(detailed=True)
    times = Rows(ENTITIES["timesheet"])
    ctx = SyncContext(None, client, "x", INITIAL, clock=clock)
    for window in initial_windows(ctx):
        times.extend(client.time_entries(window))
    return {
        "client": clients["client"], "client_contact": clients["client_contact"], "client_group": groups,
        "client_group_member": members, "staff": client.staff()["staff"], "task": client.task_list()["task"],
        "job": jobs["job"], "job_task": jobs["job_task"], "timesheet": times,
    }


def assert_warehouse_equals_xpm(engine, client, tenant, clock):
    truth = xpm_now(client, clock)
    jobs = table_for("job")
    active = _live(engine, "job", tenant, jobs.c.state != "Completed")
    active_uuids = set(active["uuid"])
    for entity, rows in truth.items():
        if entity == "job":
            stored = active
        elif entity == "job_task":
            stored = _live(engine, entity, tenant)
            stored = stored[stored["job_uuid"].isin(active_uuids)]
        else:
            stored = _live(engine, entity, tenant)
        expected = rows.to_frame()
        flag = ENTITIES[entity].deleted_flag
        if flag:  # what XPM flags deleted is soft-deleted in the warehouse
            expected = expected[~expected[flag].fillna(False).astype(bool)]
        comparison = compare_entity(entity, stored, expected)
        assert not comparison, (entity, comparison.counts, comparison.changes.head(5).to_dict("records"))


def _soft_deleted(engine, entity: str, tenant: str) -> int:
    table = table_for(entity)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(
            table.c.tenant_id == tenant, table.c._deleted_at.is_not(None))).scalar()


def _changed(report) -> int:
    return report.total.changed


# --- initial ---------------------------------------------------------------------------------------


def test_initial_load_matches_the_sandbox_row_for_row(engine, sandbox, client, tenant, clock):
    report = sync(engine, client, tenant, clock, INITIAL)
    windows = [e for e in sandbox.request_log if e["path"].endswith("time.api/list") and e["status"] == 200]
    assert report.total.inserted > 2000
    assert_warehouse_equals_xpm(engine, client, tenant, clock)
    with engine.connect() as conn:
        rows = conn.execute(select(sync_runs).where(sync_runs.c.tenant_id == tenant)).all()
    # one row per run and table: a step's children (contacts, members, tasks on jobs) have their own
    assert sorted(row.entity for row in rows) == sorted(ENTITIES)
    assert all(row.status == "succeeded" and row.ended_at is not None for row in rows)
    for row in rows:  # a first load inserts every row it stores, XPM-flagged ones included (soft-deleted)
        stored = len(_live(engine, row.entity, tenant)) + _soft_deleted(engine, row.entity, tenant)
        assert row.rows_inserted == stored > 0, row.entity
    children = {"client_contact", "client_group_member", "job_task"}
    assert all(row.api_calls == 0 for row in rows if row.entity in children)  # read with their parents
    assert sum(row.api_calls for row in rows) == report.api_calls
    timesheet_run = next(row for row in rows if row.entity == "timesheet")
    assert len(windows) == 49  # one call per month, 3 years back to 1 year ahead (plus any 429 waited out)
    assert timesheet_run.api_calls >= 49 and timesheet_run.rows_inserted == report.outcomes[-1].result.inserted


def test_tenants_do_not_touch_each_other(engine, sandbox, clock):
    for tenant in sandbox.tenant_ids:
        with sandbox_client(sandbox, tenant, clock) as xpm:
            sync(engine, xpm, tenant, clock, INITIAL, ["staff", "job"])
    staff = table_for("staff")
    with engine.connect() as conn:
        per_tenant = dict(conn.execute(select(staff.c.tenant_id, func.count()).group_by(staff.c.tenant_id)).all())
    assert set(per_tenant) == set(sandbox.tenant_ids) and all(per_tenant.values())


@pytest.mark.parametrize("mode", [INITIAL, HOURLY, NIGHTLY])
def test_running_any_sync_twice_changes_nothing_the_second_time(engine, client, tenant, clock, mode):
    sync(engine, client, tenant, clock, INITIAL)
    clock.advance(3600)
    sync(engine, client, tenant, clock, mode)
    clock.advance(3600)
    again = sync(engine, client, tenant, clock, mode)
    assert _changed(again) == 0, [(o.entity, o.result) for o in again.outcomes]


def test_idle_hourly_costs_at_most_three_calls(engine, client, tenant, clock):
    sync(engine, client, tenant, clock, INITIAL)
    clock.advance(600)
    report = sync(engine, client, tenant, clock, HOURLY)
    assert report.api_calls <= 3 and _changed(report) == 0


# --- edits, hourly, nightly ------------------------------------------------------------------------


def test_hourly_takes_only_new_entries_and_staff_then_nightly_catches_up(engine, sandbox, client, tenant, clock):
    sync(engine, client, tenant, clock, INITIAL)
    edits = PersonEdits(sandbox.base_url, tenant, engine)
    edits.make_all(clock.now().date())
    assert len(edits.done) >= 10

    clock.advance(3600)
    hourly = sync(engine, client, tenant, clock, HOURLY)
    by_entity = {o.entity: o.result for o in hourly.outcomes}
    assert by_entity["timesheet"].inserted == 1 and by_entity["staff"].inserted == 1
    assert all(r.updated == r.deleted == r.revived == 0 for r in by_entity.values())

    clock.advance(3600 * 15)
    nightly = sync(engine, client, tenant, clock, NIGHTLY)
    assert_warehouse_equals_xpm(engine, client, tenant, clock)

    jobs = _live(engine, "job", tenant)
    completed_number = next(line.split()[-1] for line in edits.done if line.startswith("completed job"))
    deleted_number = next(line.split()[-1] for line in edits.done if line.startswith("deleted job"))
    assert jobs.loc[jobs["job_number"] == completed_number, "state"].tolist() == ["Completed"]
    assert deleted_number not in set(jobs["job_number"])
    with engine.connect() as conn:
        changes = conn.execute(select(timesheet_changes).where(timesheet_changes.c.tenant_id == tenant)).all()
    changed_fields = {(row.field, row.new_value) for row in changes if row.change_type == "changed"}
    assert ("note", "Revised after review") in changed_fields
    assert any(field == "minutes" for field, _ in changed_fields)
    assert any(row.change_type == "deleted" for row in changes)
    assert _changed(sync(engine, client, tenant, clock, NIGHTLY)) == 0
    assert nightly.ok


def test_contact_edit_not_flagged_modified_is_caught_by_the_nightly(engine, sandbox, client, tenant, clock):
    sync(engine, client, tenant, clock, INITIAL)
    contact = _live(engine, "client_contact", tenant).iloc[0]
    response = httpx.patch(f"{sandbox.base_url}/_sandbox/tenants/{tenant}/clients/{contact['client_uuid']}/contacts/"
                           f"{contact['uuid']}", json={"mobile": "027 000 1111"})
    assert response.status_code == 200
    assert len(client.clients(modified_since=clock.now() - timedelta(minutes=5))["client"]) == 0  # XPM's quirk
    clock.advance(3600 * 17)
    sync(engine, client, tenant, clock, NIGHTLY, ["client"])
    stored = _live(engine, "client_contact", tenant)
    assert stored.loc[stored["uuid"] == contact["uuid"], "mobile"].tolist() == ["027 000 1111"]


def test_each_table_counts_its_own_rows_when_only_job_tasks_change(engine, sandbox, client, tenant, clock):
    sync(engine, client, tenant, clock, INITIAL)
    jobs = table_for("job")
    active = set(_live(engine, "job", tenant, jobs.c.state != "Completed")["uuid"])
    tasks = _live(engine, "job_task", tenant)
    task = tasks[tasks["job_uuid"].isin(active)].iloc[0]
    response = httpx.patch(f"{sandbox.base_url}/_sandbox/tenants/{tenant}/jobs/{task['job_number']}/tasks/{task['uuid']}",
                           json={"estimated_minutes": int(task["estimated_minutes"] or 0) + 90})
    assert response.status_code < 300, response.text
    clock.advance(3600 * 17)

    report = sync(engine, client, tenant, clock, NIGHTLY, ["job"])
    outcome = report.outcomes[0]
    assert list(outcome.tables) == ["job", "job_task"]
    assert outcome.table("job").changed == 0
    assert outcome.table("job_task").updated == 1 and outcome.table("job_task").changed == 1
    assert outcome.result.updated == 1  # the step's total is the sum of its tables
    with engine.connect() as conn:
        rows = {row.entity: row for row in conn.execute(
            select(sync_runs).where(sync_runs.c.run_id.in_(list(outcome.run_ids.values())))).all()}
    assert set(rows) == {"job", "job_task"} and rows["job"].run_id == outcome.run_id
    assert (rows["job"].rows_inserted, rows["job"].rows_updated, rows["job"].rows_deleted) == (0, 0, 0)
    assert (rows["job_task"].rows_inserted, rows["job_task"].rows_updated, rows["job_task"].rows_deleted) == (0, 1, 0)
    assert rows["job"].api_calls == outcome.api_calls > 0 and rows["job_task"].api_calls == 0
    assert all(row.status == "succeeded" and row.mode == NIGHTLY for row in rows.values())


def test_a_failed_step_fails_its_child_tables_rows_too(engine, sandbox, client, tenant, clock):
    sync(engine, client, tenant, clock, INITIAL, ["client"])
    fault = {"path": "client.api/list", "kind": "status", "status": 500, "count": 100}
    assert httpx.post(f"{sandbox.base_url}/_sandbox/faults", json=fault).status_code == 201
    clock.advance(3600)
    report = run_sync(SyncContext(engine, client, tenant, NIGHTLY, clock=clock), ["client"])
    httpx.delete(f"{sandbox.base_url}/_sandbox/faults")
    outcome = report.outcomes[0]
    assert not outcome.ok and set(outcome.run_ids) == {"client", "client_contact"}
    with engine.connect() as conn:
        rows = conn.execute(select(sync_runs).where(sync_runs.c.run_id.in_(list(outcome.run_ids.values())))).all()
    assert [row.status for row in rows] == ["failed", "failed"] and all(row.error for row in rows)


def test_an_abandoned_step_releases_its_child_tables_rows(engine, tenant, clock):
    from xpm_pipeline.sync.runs import SyncBusy, start_run

    killed = start_run(engine, clock, tenant_id=tenant, entity="job", mode=NIGHTLY, children=("job_task",))
    with pytest.raises(SyncBusy):
        start_run(engine, clock, tenant_id=tenant, entity="job", mode=NIGHTLY, children=("job_task",))
    clock.advance(16 * 60)  # past the lease: the killed run is abandoned, children included
    fresh = start_run(engine, clock, tenant_id=tenant, entity="job", mode=NIGHTLY, children=("job_task",))
    fresh.finish()
    with engine.connect() as conn:
        status = dict(conn.execute(select(sync_runs.c.run_id, sync_runs.c.status)).all())
    assert {status[run_id] for run_id in killed.run_ids.values()} == {"failed"}
    assert {status[run_id] for run_id in fresh.run_ids.values()} == {"succeeded"}
    with pytest.raises(ValueError, match="does not load"):
        fresh.add({"client": LoadResult(inserted=1)})  # counts only for the step's own tables


# --- resumability ---------------------------------------------------------------------------------


def test_failed_initial_resumes_without_refetching_finished_windows(engine, sandbox, client, tenant, clock):
    fault = {"path": "time.api/list", "kind": "status", "status": 500, "after": 20, "count": 100}
    assert httpx.post(f"{sandbox.base_url}/_sandbox/faults", json=fault).status_code == 201
    first = run_sync(SyncContext(engine, client, tenant, INITIAL, clock=clock), ["timesheet"])
    assert not first.ok
    httpx.delete(f"{sandbox.base_url}/_sandbox/faults")
    before = len([e for e in sandbox.request_log if e["path"].endswith("time.api/list")])
    clock.advance(60)
    second = sync(engine, client, tenant, clock, INITIAL, ["timesheet"])
    fetched = len([e for e in sandbox.request_log if e["path"].endswith("time.api/list")]) - before
    assert fetched == 49 - 20
    assert second.outcomes[0].result.inserted + first.total.inserted == len(_live(engine, "timesheet", tenant))
    assert_no_duplicate_keys(engine, tenant)
    with engine.connect() as conn:
        runs = conn.execute(select(sync_runs).where(sync_runs.c.entity == "timesheet").order_by(sync_runs.c.started_at)).all()
    assert [r.status for r in runs] == ["failed", "succeeded"] and runs[1].resumes_run_id == runs[0].run_id


def assert_no_duplicate_keys(engine, tenant):
    table = table_for("timesheet")
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(table).where(table.c.tenant_id == tenant)).scalar()
        distinct = conn.execute(select(func.count(table.c.uuid.distinct())).where(table.c.tenant_id == tenant)).scalar()
    assert total == distinct


def test_analyst_views_join_what_the_initial_sync_loaded(engine, client, tenant, clock):
    from sqlalchemy import text

    sync(engine, client, tenant, clock, INITIAL)
    live = len(_live(engine, "timesheet", tenant))
    with engine.connect() as conn:
        enriched = conn.execute(text(
            "SELECT COUNT(*), COUNT(staff_name), COUNT(task_name), COUNT(client_name), SUM(hours) * 60, SUM(minutes) "
            "FROM v_timesheets_enriched WHERE tenant_id = :t"), {"t": tenant}).one()
        status = conn.execute(text("SELECT entity, status, last_success_at FROM v_sync_status WHERE tenant_id = :t"),
                              {"t": tenant}).all()
    count, with_staff, with_task, with_client, minutes_from_hours, minutes = enriched
    assert count == live == with_staff == with_task
    assert with_client > 0.9 * count  # entries on jobs completed before the sync have no active job row
    assert abs(float(minutes_from_hours) - minutes) <= 0.3 * count  # hours is rounded to 0.01 h (0.6 min) per entry
    assert {row.entity for row in status} == set(ENTITIES)  # every table, children included
    assert all(row.status == "succeeded" and row.last_success_at is not None for row in status)


_CHILD = r"""
import json, sys
from xpm_pipeline.secrets import Secret
from xpm_pipeline.sync.context import INITIAL, SyncContext
from xpm_pipeline.sync.run import run_sync
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.xpm.client import XPMClient

args = json.loads(sys.argv[1])

class Static:
    def access_token(self, tenant_id):
        return Secret(args["token"])
    force_refresh = lambda self, tenant_id, rejected: Secret(args["token"])

client = XPMClient(base_url=args["api"], tenant_id=args["tenant"], tokens=Static())
run_sync(SyncContext(make_engine(args["db"]), client, args["tenant"], args.get("mode", INITIAL)),
         args.get("entities", ["timesheet"]))
"""
"""A sync in another process (killed by the kill tests): json args api, tenant, db, token[, mode, entities]."""


def test_killed_initial_sync_resumes_without_duplicates_or_refetching(warehouse_url, tmp_path):
    """SIGKILL a real initial sync in another process half way, then run it again here."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from xpm_pipeline.warehouse.schema import sync_checkpoints

    clock = ManualClock(datetime.now(timezone.utc))  # the child's bookkeeping uses the real clock
    engine = make_engine(warehouse_url)
    migrate(engine, clock=clock)
    with SandboxServer(SandboxConfig(size="small", seed=11, tenants=1, clock=clock), port=0) as sandbox:
        tenant = sandbox.tenant_ids[0]
        httpx.post(f"{sandbox.base_url}/_sandbox/faults",
                   json={"path": "time.api/list", "kind": "latency", "seconds": 0.15, "count": 1000})
        args = {"api": api_base_from(sandbox.base_url), "tenant": tenant, "db": warehouse_url,
                "token": sandbox.issue_token(tenant)["access_token"]}
        child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)])
        try:
            deadline = time.monotonic() + 60
            done = 0
            while done < 12 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.05)
                with engine.connect() as conn:
                    done = conn.execute(select(func.count()).select_from(sync_checkpoints)).scalar()
            assert child.poll() is None, "the child finished before it could be killed"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(10)
        httpx.delete(f"{sandbox.base_url}/_sandbox/faults")
        with engine.connect() as conn:
            checkpointed = conn.execute(select(func.count()).select_from(sync_checkpoints)).scalar()
        assert 12 <= checkpointed < 49

        with engine.connect() as conn:
            done_before = set(conn.execute(select(sync_checkpoints.c.scope)).scalars())
        clock.advance(16 * 60)  # past the killed run's lease: it is declared abandoned and resumed
        seen = len(sandbox.request_log)
        with sandbox_client(sandbox, tenant, clock) as client:
            resumed = sync(engine, client, tenant, clock, INITIAL, ["timesheet"])
            windows = initial_windows(SyncContext(engine, client, tenant, INITIAL, clock=clock))
        refetched = [e for e in sandbox.request_log[seen:] if e["path"].endswith("time.api/list") and e["status"] == 200]
        # every unfinished month once, no finished one (the resume's own windows: one shifts at midnight UTC)
        assert len(refetched) == sum(1 for w in windows if f"timesheet {w}" not in done_before)
        assert_no_duplicate_keys(engine, tenant)
        assert len(_live(engine, "timesheet", tenant)) == sandbox.state.tenant(tenant).counts()["times"]
        with engine.connect() as conn:
            runs = conn.execute(select(sync_runs).order_by(sync_runs.c.started_at)).all()
        assert [r.status for r in runs] == ["failed", "succeeded"]
        assert runs[0].error.startswith("abandoned") and runs[1].resumes_run_id == runs[0].run_id
        assert resumed.ok
    engine.dispose()


def test_clients_xpm_flags_deleted_are_soft_deleted_once(engine, sandbox, client, tenant, clock):
    flagged = {c["uuid"] for c in client.clients(detailed=True)["client"].records() if c["is_deleted"]}
    assert flagged, "the seeded practice has deleted clients"
    first = sync(engine, client, tenant, clock, INITIAL, ["client"])
    assert first.total.deleted >= len(flagged)
    table = table_for("client")
    with engine.connect() as conn:
        stored = dict(conn.execute(select(table.c.uuid, table.c._deleted_at).where(table.c.tenant_id == tenant)).all())
    assert flagged <= set(stored) and all(stored[uuid] is not None for uuid in flagged)
    clock.advance(3600 * 17)
    assert _changed(sync(engine, client, tenant, clock, NIGHTLY, ["client"])) == 0
