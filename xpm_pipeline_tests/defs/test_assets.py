"""Every sync asset materialized for two tenants against the sandbox, on a temporary Dagster instance;
the metadata each materialization reports is checked against the warehouse and ``xpm_sync_runs``."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from xpm_pipeline.demo import PersonEdits
from xpm_pipeline.defs.assets import (
    ENTITY_OF_KEY,
    HOURLY_ASSETS,
    STEP_ASSETS,
    SYNC_SPECS,
    TIMESHEET_CHANGES,
    xpm_sync,
)
from xpm_pipeline.defs.jobs import sync_run_config
from xpm_pipeline.defs.partitions import TENANT_TAG
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.sync.run import STEPS
from xpm_pipeline.warehouse.schema import column_docs, sync_runs, table_for, timesheet_changes
from xpm_pipeline_tests.defs.conftest import BOTH_DIALECTS

ALL_SYNC_KEYS = {spec.key for spec in SYNC_SPECS}
STEP_OF_KEY = {key: step for step, keys in STEP_ASSETS.items() for key in keys}


def run_job(defs, instance, name, tenant, *, mode=None, raise_on_error=True):
    job = defs.resolve_job_def(name)
    return job.execute_in_process(instance=instance, partition_key=tenant, raise_on_error=raise_on_error,
                                  run_config=sync_run_config(mode) if mode else None)


def materializations(result) -> dict:
    return {event.asset_key: event.materialization.metadata for event in result.get_asset_materialization_events()}


def value(metadata, name):
    return metadata[name].value


def sync_rows(engine, dagster_run_id) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(select(sync_runs).where(sync_runs.c.orchestrator_run_id == dagster_run_id)).all()
    return {row.entity: row for row in rows}


def live_rows(engine, entity, tenant, deleted: bool = False) -> int:
    """Rows of the tenant that are live (or, with ``deleted``, soft-deleted)."""
    table = table_for(entity)
    state = table.c._deleted_at.is_not(None) if deleted else table.c._deleted_at.is_(None)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(table.c.tenant_id == tenant, state)).scalar()


def xpm_calls(sandbox, tenant) -> int:
    """XPM requests the sandbox saw for the tenant (429 answers included: the client counts them as calls)."""
    log = sandbox.request_log
    return sum(1 for entry in log if entry["tenant_id"] == tenant and "/practicemanager/" in entry["path"])


@BOTH_DIALECTS
def test_initial_materializes_every_asset_for_two_tenants(defs, instance, partitioned, runtime, sandbox):
    engine = runtime.engine
    for tenant in partitioned[:2]:
        calls_before = xpm_calls(sandbox, tenant)
        result = run_job(defs, instance, "xpm_initial_job", tenant)
        assert result.success
        assert result.dagster_run.tags[TENANT_TAG] == tenant
        assert result.dagster_run.tags["dagster/partition"] == tenant
        found = materializations(result)
        assert set(found) == ALL_SYNC_KEYS
        rows = sync_rows(engine, result.run_id)  # one xpm_sync_runs row per table, children included
        assert set(rows) == set(ENTITIES)
        assert all(row.status == "succeeded" and row.mode == "initial" for row in rows.values())

        for key, metadata in found.items():
            step = STEP_OF_KEY[key]
            assert value(metadata, "tenant_id") == tenant
            assert value(metadata, "mode") == "initial"
            assert value(metadata, "dagster/table_name") == key.path[-1]
            schema = value(metadata, "dagster/column_schema")
            if key == TIMESHEET_CHANGES:
                assert [c.name for c in schema.columns] == [c.name for c in timesheet_changes.columns]
                assert value(metadata, "changes_found") == value(metadata, "inserted") == 0  # no comparison initially
                assert value(metadata, "sync_run_id") == rows["timesheet"].run_id
                assert value(metadata, "api_calls") == 0 and value(metadata, "read_with") == "xpm_timesheets"
                continue
            entity = ENTITY_OF_KEY[key]
            row = rows[entity]
            assert {c.name: c.description for c in schema.columns} == column_docs(entity)
            assert value(metadata, "dagster/row_count") == live_rows(engine, entity, tenant) > 0
            # rows XPM flags deleted (clients, contacts) arrive soft-deleted
            assert value(metadata, "soft_deleted_rows") == live_rows(engine, entity, tenant, deleted=True)
            # this table's own counts, exactly what its xpm_sync_runs row recorded: a first load inserts
            # every row it stores, and soft-deletes the rows XPM flags deleted
            assert value(metadata, "sync_run_id") == row.run_id
            assert value(metadata, "inserted") == row.rows_inserted == (
                live_rows(engine, entity, tenant) + live_rows(engine, entity, tenant, deleted=True))
            assert value(metadata, "updated") == row.rows_updated == 0
            assert value(metadata, "deleted") == row.rows_deleted == live_rows(engine, entity, tenant, deleted=True)
            assert value(metadata, "api_calls") == row.api_calls
            if entity == step:
                assert row.api_calls > 0
            else:  # read in its parent's answers: the calls are the parent's
                assert row.api_calls == 0
                assert value(metadata, "read_with") == ENTITIES[step].table
                assert value(metadata, "step_api_calls") == rows[step].api_calls > 0

        # API calls reported per table add up to the calls the sandbox counted for the tenant, with the
        # reconciliation check's (clients+contacts and jobs+tasks share one call each)
        checks = {(e.asset_key, e.check_name): e for e in result.get_asset_check_evaluations()}
        reconcile_calls = sum(
            e.metadata["api_calls"].value for (key, name), e in checks.items()
            if name == "matches_xpm" and ENTITY_OF_KEY[key] not in ("client_contact", "job_task"))
        sync_calls = sum(row.api_calls for row in rows.values())
        assert sync_calls == sum(value(metadata, "api_calls") for metadata in found.values())
        assert xpm_calls(sandbox, tenant) - calls_before == sync_calls + reconcile_calls
        assert 0 < reconcile_calls <= defs.resources["xpm"].reconcile_max_calls

        # every check of the tenant ran and passed: reconciliation per table, integrity, comparison
        assert {name for _, name in checks} == {"matches_xpm", "references_resolve", "nightly_comparison"}
        assert len([1 for _, name in checks if name == "matches_xpm"]) == len(ENTITIES)
        failed = {(k.to_user_string(), n): e.metadata for (k, n), e in checks.items() if not e.passed}
        assert not failed
        assert all(e.partition == tenant for e in checks.values())


def test_nightly_after_edits_reports_the_comparison(defs, instance, partitioned, runtime, sandbox, clock):
    engine, tenant = runtime.engine, partitioned[0]
    run_job(defs, instance, "xpm_initial_job", tenant)
    PersonEdits(sandbox.base_url, tenant, engine).make_all(clock.now().date())
    clock.advance(17 * 3600)

    result = run_job(defs, instance, "xpm_nightly_job", tenant)
    found = materializations(result)
    assert set(found) == ALL_SYNC_KEYS
    timesheet_run = sync_rows(engine, result.run_id)["timesheet"]
    with engine.connect() as conn:
        logged = dict(conn.execute(
            select(timesheet_changes.c.change_type, func.count())
            .where(timesheet_changes.c.run_id == timesheet_run.run_id)
            .group_by(timesheet_changes.c.change_type)).all())
    changes = found[TIMESHEET_CHANGES]
    assert value(changes, "mode") == "nightly"
    assert value(changes, "changes_found") == sum(logged.values()) == value(changes, "dagster/row_count") > 0
    assert value(changes, "changed_fields") == logged.get("changed", 0) > 0  # minutes and note edited
    assert value(changes, "deleted_entries") == logged.get("deleted", 0) >= 1  # one entry, and those of the deleted job
    assert value(found[table_key("job")], "deleted") >= 1  # the deleted job (and its tasks)

    comparison = next(e for e in result.get_asset_check_evaluations() if e.check_name == "nightly_comparison")
    assert comparison.passed and comparison.metadata["compared"].value is True
    assert comparison.metadata["changes_found"].value == sum(logged.values())
    # after the nightly sync the warehouse holds what XPM holds, and references resolve
    assert all(e.passed for e in result.get_asset_check_evaluations()), [
        (e.asset_key.to_user_string(), e.check_name, e.description) for e in result.get_asset_check_evaluations()
        if not e.passed]


def table_key(entity):
    return next(key for key, name in ENTITY_OF_KEY.items() if name == entity)


def test_hourly_job_syncs_new_staff_and_time_only(defs, instance, partitioned, runtime, sandbox, clock):
    tenant = partitioned[1]
    run_job(defs, instance, "xpm_initial_job", tenant)
    added = httpx.post(f"{sandbox.base_url}/_sandbox/tenants/{tenant}/staff", json={"name": "Aroha Ngata"}, timeout=10)
    assert added.status_code < 300, added.text
    clock.advance(3600)

    result = run_job(defs, instance, "xpm_hourly_job", tenant)
    found = materializations(result)
    assert set(found) == set(HOURLY_ASSETS)
    staff = found[table_key("staff")]
    assert value(staff, "mode") == "hourly"
    assert value(staff, "inserted") == 1 and value(staff, "api_calls") == 1
    assert value(staff, "dagster/row_count") == live_rows(runtime.engine, "staff", tenant)
    assert not result.get_asset_check_evaluations()  # reconciliation is the nightly run's business
    assert result.dagster_run.tags["xpm/flow"] == "hourly"


@BOTH_DIALECTS
def test_only_job_tasks_changed_shows_in_the_job_task_asset_alone(defs, instance, partitioned, runtime, sandbox, clock):
    import dagster as dg

    engine, tenant = runtime.engine, partitioned[0]
    job_assets = [table_key("job"), table_key("job_task")]

    def sync_jobs(mode):
        return dg.materialize([xpm_sync], instance=instance, partition_key=tenant, selection=job_assets,
                              resources={"xpm": defs.resources["xpm"]}, run_config=sync_run_config(mode))

    assert sync_jobs("initial").success
    jobs, tasks = table_for("job"), table_for("job_task")
    with engine.connect() as conn:
        task = conn.execute(
            select(tasks.c.uuid, tasks.c.job_number, tasks.c.estimated_minutes)
            .join(jobs, (jobs.c.tenant_id == tasks.c.tenant_id) & (jobs.c.uuid == tasks.c.job_uuid))
            .where(tasks.c.tenant_id == tenant, jobs.c.state != "Completed", tasks.c._deleted_at.is_(None))
            .order_by(tasks.c.uuid).limit(1)).one()
    edited = httpx.patch(f"{sandbox.base_url}/_sandbox/tenants/{tenant}/jobs/{task.job_number}/tasks/{task.uuid}",
                         json={"estimated_minutes": (task.estimated_minutes or 0) + 90}, timeout=10)
    assert edited.status_code < 300, edited.text
    clock.advance(17 * 3600)

    result = sync_jobs("nightly")
    found = materializations(result)
    job, job_task = found[table_key("job")], found[table_key("job_task")]
    assert [value(job, name) for name in ("inserted", "updated", "deleted")] == [0, 0, 0]
    assert [value(job_task, name) for name in ("inserted", "updated", "deleted")] == [0, 1, 0]
    assert value(job, "api_calls") > 0 and value(job_task, "api_calls") == 0
    assert value(job_task, "step_api_calls") == value(job, "api_calls")
    assert value(job, "dagster/row_count") == live_rows(engine, "job", tenant)
    assert value(job_task, "dagster/row_count") == live_rows(engine, "job_task", tenant)
    rows = sync_rows(engine, result.run_id)  # what the materializations say is what xpm_sync_runs recorded
    assert set(rows) == {"job", "job_task"}
    assert (rows["job_task"].rows_inserted, rows["job_task"].rows_updated, rows["job_task"].rows_deleted) == (0, 1, 0)
    assert (rows["job"].rows_inserted, rows["job"].rows_updated, rows["job"].rows_deleted) == (0, 0, 0)
    assert value(job_task, "sync_run_id") == rows["job_task"].run_id != rows["job"].run_id == value(job, "sync_run_id")


def test_hourly_mode_refuses_tables_it_does_not_cover(defs, instance, partitioned):
    import dagster as dg

    result = dg.materialize([xpm_sync], instance=instance, partition_key=partitioned[0], raise_on_error=False,
                            resources={"xpm": defs.resources["xpm"]}, run_config=sync_run_config("hourly"))
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "hourly" in failure.message and "xpm_staff" in failure.message


def test_a_tenant_that_is_not_connected_fails_with_the_remedy(defs, instance, partitioned):
    instance.add_dynamic_partitions("tenant", ["not-a-tenant"])
    result = run_job(defs, instance, "xpm_nightly_job", "not-a-tenant", raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "not connected" in message and "xpm-pipeline connect" in message


def test_subset_materializes_only_the_selected_tables(defs, instance, partitioned, runtime):
    import dagster as dg

    tenant = partitioned[2]
    result = dg.materialize(
        [xpm_sync], instance=instance, partition_key=tenant, resources={"xpm": defs.resources["xpm"]},
        selection=[table_key("task")], run_config=sync_run_config("initial"),
    )
    assert set(materializations(result)) == {table_key("task")}
    assert set(sync_rows(runtime.engine, result.run_id)) == {"task"}


def test_a_held_removal_fails_its_check_until_accepted_in_run_config(defs, instance, partitioned, runtime, sandbox,
                                                                     clock):
    import dagster as dg

    tenant = partitioned[0]
    staff = [table_key("staff")]

    def sync_staff(mode, **config):
        run_config = {"ops": {"xpm_sync": {"config": {"mode": mode, **config}}}}
        return dg.materialize([xpm_sync], instance=instance, partition_key=tenant, selection=staff,
                              resources={"xpm": defs.resources["xpm"]}, run_config=run_config, raise_on_error=False)

    assert sync_staff("initial").success
    sandbox.state.tenant(tenant).staff.clear()  # XPM's staff list comes back empty
    clock.advance(3600)

    held = sync_staff("nightly")
    assert not held.success and not materializations(held)
    (check,) = [c for c in held.get_asset_check_evaluations() if c.check_name == "removals_not_held"]
    assert not check.passed and check.asset_key == table_key("staff")
    assert "would remove" in check.description and "xpm_staff" in check.description
    assert live_rows(runtime.engine, "staff", tenant) > 0

    accepted = sync_staff("nightly", accept_removals=["xpm_staff"], accepted_by="carol")
    assert accepted.success
    (check,) = [c for c in accepted.get_asset_check_evaluations() if c.check_name == "removals_not_held"]
    assert check.passed
    assert live_rows(runtime.engine, "staff", tenant) == 0
