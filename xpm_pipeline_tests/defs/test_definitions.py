"""The code location loads, declares what the product promises, and its instance config limits runs per tenant."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from sqlalchemy.engine import make_url

from xpm_pipeline.definitions import defs
from xpm_pipeline.defs.instance import RUN_COORDINATOR, local_instance_config, write_local_instance
from xpm_pipeline.entities import ENTITIES

REPO = Path(__file__).resolve().parents[2]
SYNC_TABLES = {entity.table for entity in ENTITIES.values()} | {"xpm_timesheet_changes"}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys == SYNC_TABLES | {"xpm_tenants", "xpm_export_queue"}
    graph = defs.resolve_asset_graph()
    assert all(graph.get(dg.AssetKey(table)).partitions_def.name == "tenant" for table in SYNC_TABLES)
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert {(table, "matches_xpm") for table in SYNC_TABLES - {"xpm_timesheet_changes"}} <= checks
    assert {("xpm_timesheets", "references_resolve"), ("xpm_timesheet_changes", "nightly_comparison"),
            ("xpm_staff", "fresh_within_2h"), ("xpm_timesheets", "fresh_within_2h"),
            ("xpm_tenants", "refresh_tokens_healthy")} <= checks
    assert {s.name for s in defs.schedules} == {"xpm_hourly_schedule", "xpm_nightly_schedule", "xpm_health_schedule"}
    assert {s.name for s in defs.sensors} == {"xpm_tenant_sensor", "xpm_run_failure_sensor", "xpm_export_sensor",
                                             "xpm_token_recovery_sensor", "xpm_failure_alert_sensor",
                                             "xpm_condition_alert_sensor"}
    assert {j.name for j in defs.jobs} == {"xpm_initial_job", "xpm_hourly_job", "xpm_nightly_job", "xpm_full_sync_job",
                                         "xpm_health_job", "xpm_export_drain"}


def test_every_sync_job_tags_runs_with_their_tenant():
    for name in ("xpm_initial_job", "xpm_hourly_job", "xpm_nightly_job", "xpm_full_sync_job"):
        job = defs.resolve_job_def(name)
        assert job.partitions_def.name == "tenant"
        assert job.partitioned_config.get_tags_for_partition_key("some-tenant")["xpm/tenant"] == "some-tenant"


def test_production_dagster_yaml_uses_postgres_and_the_tenant_limit():
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "XPM_DAGSTER_PG_URL"}
    assert config["run_coordinator"] == RUN_COORDINATOR  # one definition of the limits, two files
    limits = {limit["key"]: limit for limit in config["run_coordinator"]["config"]["tag_concurrency_limits"]}
    assert limits["xpm/tenant"] == {"key": "xpm/tenant", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert limits["dagster/partition"]["limit"] == 1
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] > 1
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == "xpm_pipeline.definitions"


def test_local_instance_has_the_same_limits(tmp_path):
    write_local_instance(tmp_path)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        coordinator = instance.run_coordinator
        assert type(coordinator).__name__ == "QueuedRunCoordinator"
        limits = coordinator.get_run_queue_config().tag_concurrency_limits
        assert {"key": "xpm/tenant", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
        assert local_instance_config()["run_coordinator"]["config"] == RUN_COORDINATOR["config"]
    finally:
        instance.dispose()


@pytest.mark.postgres
def test_production_dagster_yaml_runs_on_postgres(tmp_path, postgres_url, monkeypatch):
    pg = make_url(postgres_url).set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    monkeypatch.setenv("XPM_DAGSTER_PG_URL", pg)
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("tenant", ["tenant-a"])
        assert instance.get_dynamic_partitions("tenant") == ["tenant-a"]

        @dg.op
        def noop():
            return 1

        @dg.job(tags={"xpm/tenant": "tenant-a"})
        def probe():
            noop()

        assert probe.execute_in_process(instance=instance).success
        assert instance.get_runs(dg.RunsFilter(tags={"xpm/tenant": "tenant-a"}))[0].is_success
    finally:
        instance.dispose()
