"""``make demo`` runs its flows as Dagster runs on a local instance, and prints what the instance recorded.

The demo's day is simulated (a ManualClock shared by the sandbox, the client and the Dagster resource),
so this runs in seconds; the CLI test (test_cli) runs the same demo through ``xpm-pipeline demo``.
"""

from __future__ import annotations

import re

import dagster as dg
from rich.console import Console

from xpm_pipeline.defs.assets import HOURLY_ASSETS, SYNC_SPECS
from xpm_pipeline.defs.partitions import TENANT_TAG
from xpm_pipeline.demo import DAY, run_demo
from xpm_pipeline.warehouse.control import tenant_slot

SYNC_TABLES = {spec.key.to_user_string() for spec in SYNC_SPECS}


def recorded(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """The run's materializations as stored in the instance's event log: table -> metadata values."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {
        entry.asset_materialization.asset_key.to_user_string(): {
            "partition": entry.asset_materialization.partition,
            **{name: value.value for name, value in entry.asset_materialization.metadata.items()},
        }
        for entry in entries
    }


def test_demo_runs_each_flow_as_a_dagster_materialization(tmp_path):
    console = Console(record=True, width=140)
    home = tmp_path / "demo"
    reports = run_demo(size="small", home=home, console=console)
    assert [report.name for report in reports] == [flow.name for flow in DAY] == ["initial", "hourly", "nightly",
                                                                                   "export"]
    text = console.export_text()
    *reports, export = reports

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))  # the demo's DAGSTER_HOME, reopened
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"  # the production limits
        runs = {run.run_id: run for run in instance.get_runs()}
        assert set(runs) == {report.run_id for report in reports} | {export.run_id}
        tenant = runs[reports[0].run_id].tags[TENANT_TAG]
        for report in reports:
            run = runs[report.run_id]
            assert run.is_success and report.ok
            assert run.job_name == report.job_name == f"xpm_{report.name}_job"
            assert run.tags[TENANT_TAG] == run.tags["dagster/partition"] == tenant
            assert run.tags["xpm/flow"] == report.name
            assert run.tags["dagster/run_key"].startswith(f"{report.name}/{tenant}/")

            stored = recorded(instance, report.run_id)
            assert all(metadata["partition"] == tenant for metadata in stored.values())
            assert [line.table for line in report.tables] == list(stored)
            for line in report.tables:  # the report is what the instance holds ...
                metadata = stored[line.table]
                assert (line.rows, line.inserted, line.updated, line.deleted, line.api_calls) == (
                    metadata["dagster/row_count"], metadata["inserted"], metadata["updated"], metadata["deleted"],
                    metadata["api_calls"])
                # ... and what was printed
                printed = rf"{line.table}\s+{line.rows:,}\s+{line.inserted:,}\s+{line.updated:,}\s+{line.deleted:,}\s+{line.api_calls}\b"
                assert re.search(printed, text), (report.name, line)
            assert f"Dagster run {report.run_id[:8]} of {report.job_name}, {report.api_calls} API calls" in text
            checks = instance.all_logs(report.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            assert len(checks) == report.checks_passed + len(report.checks_failed)

        initial, hourly, nightly = reports
        assert set(stored_tables(instance, initial)) == SYNC_TABLES
        assert set(stored_tables(instance, hourly)) == {key.to_user_string() for key in HOURLY_ASSETS}
        assert set(stored_tables(instance, nightly)) == SYNC_TABLES
        assert initial.sync_calls > 49 and initial.check_calls > 0  # 49 monthly time windows, then reconciliation
        # the hourly schedule's tick in the tenant's own slot requested the hourly run
        assert runs[hourly.run_id].tags["dagster/run_key"].endswith(f":{tenant_slot(tenant) * 15:02d}Z")
        # what people edited shows up table by table
        by_table = {line.table: line for line in hourly.tables}
        assert by_table["xpm_staff"].inserted == 1 and by_table["xpm_timesheets"].inserted == 1
        by_table = {line.table: line for line in nightly.tables}
        assert by_table["xpm_jobs"].deleted >= 1 and by_table["xpm_job_tasks"].inserted >= 1
        assert by_table["xpm_client_contacts"].updated >= 1 and by_table["xpm_client_group_members"].inserted == 1
        assert by_table["xpm_timesheet_changes"].inserted > 0
        assert by_table["xpm_client_contacts"].api_calls == by_table["xpm_job_tasks"].api_calls == 0  # read with parents
        # every table's latest state is on the instance for the tenant's partition
        for key in (spec.key for spec in SYNC_SPECS):
            assert instance.get_materialized_partitions(key) == {tenant}
        assert_export_run(instance, runs[export.run_id], export, tenant, text, home)
    finally:
        instance.dispose()
    assert "API calls: " + ", ".join(f"{r.name} {r.api_calls}" for r in [*reports, export]) in text


def assert_export_run(instance, run, export, tenant, text, home) -> None:
    """The export flow: queued changes, one drain run requested by the sensor, the queue before and after."""
    from sqlalchemy import create_engine, func, select

    from xpm_pipeline.export import tables as T

    assert run.is_success and export.ok and run.job_name == export.job_name == "xpm_export_drain"
    assert run.tags["xpm/export"] == tenant and run.tags["dagster/run_key"] == f"export/{tenant}/1"
    engine = create_engine(f"sqlite:///{home / 'warehouse.db'}")
    try:
        with engine.connect() as conn:
            statuses = dict(conn.execute(select(T.queue.c.status, func.count()).group_by(T.queue.c.status)).all())
    finally:
        engine.dispose()
    queued = statuses.get("done", 0)
    assert statuses == {"done": queued} and queued > 40
    assert export.drain["sent"] == export.drain["done"] == queued and export.drain["stopped"] == "queue empty"
    assert export.api_calls == queued
    before, after = text.index("Export queue before the drain"), text.index("Export queue after the drain")
    assert f"waiting: {queued}, done: 0" in text[before:after]
    assert f"waiting: 0, done: {queued}, dead: 0" in text[after:]
    observed = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
    assert [e.asset_observation.asset_key.to_user_string() for e in observed] == ["xpm_export_queue"]


def stored_tables(instance, report) -> list[str]:
    return list(recorded(instance, report.run_id))
