"""A run does its job's flow whatever launched it: GraphQL without run config, ``execute_in_process`` without
run config; run config that contradicts the job is refused in one line before any XPM call."""

from __future__ import annotations


import pytest
import yaml
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from xpm_pipeline.defs.flows import FlowMismatch, run_mode
from xpm_pipeline.defs.jobs import SYNC_JOBS, sync_run_config
from xpm_pipeline.defs.partitions import TENANT_TAG
from xpm_pipeline_tests.defs.test_assets import materializations, sync_rows, value

PARTITION_TAG = "dagster/partition"
JOB_MODES = {"xpm_initial_job": "initial", "xpm_hourly_job": "hourly", "xpm_nightly_job": "nightly",
             "xpm_full_sync_job": "nightly"}


def test_every_sync_job_has_a_flow_with_a_mode():
    assert {job.name for job in SYNC_JOBS} == set(JOB_MODES)
    for job in SYNC_JOBS:
        assert run_mode(None, job.tags["xpm/flow"], job.name) == JOB_MODES[job.name]


def test_run_config_may_name_the_jobs_mode_but_not_another():
    assert run_mode("resync", "full_sync", "xpm_full_sync_job") == "resync"
    assert run_mode("initial", "initial", "xpm_initial_job") == "initial"
    assert run_mode("hourly", None, "__ASSET_JOB") == "hourly"  # materialized from the asset graph
    assert run_mode(None, None, "__ASSET_JOB") == "nightly"
    with pytest.raises(FlowMismatch) as refused:
        run_mode("hourly", "initial", "xpm_initial_job")
    assert str(refused.value) == ("xpm_initial_job runs the initial flow: run config mode 'hourly' contradicts it "
                                  "(leave mode out, or use 'initial')")


def run_modes(result) -> set[str]:
    return {value(metadata, "mode") for metadata in materializations(result).values()}


def test_each_job_without_run_config_runs_its_flow(defs, instance, partitioned, runtime, clock):
    """The partition as a tag, no run config: what GraphQL, ``dagster job launch --tags`` and a backfill
    daemon without the job's partitioned config hand the run."""
    tenant = partitioned[0]
    for name, mode in JOB_MODES.items():  # initial first: the others need a synced tenant
        result = defs.resolve_job_def(name).execute_in_process(instance=instance, tags={PARTITION_TAG: tenant})
        assert result.success, name
        assert run_modes(result) == {mode}, name
        assert {row.mode for row in sync_rows(runtime.engine, result.run_id).values()} == {mode}, name
        clock.advance(3600)


def test_run_config_contradicting_the_job_is_refused_before_any_xpm_call(defs, instance, partitioned, runtime):
    tenant = partitioned[1]
    result = defs.resolve_job_def("xpm_initial_job").execute_in_process(
        instance=instance, partition_key=tenant, run_config=sync_run_config("hourly"), raise_on_error=False)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message.strip()
    assert "\n" not in message and message.endswith(
        ": xpm_initial_job runs the initial flow: run config mode 'hourly' contradicts it (leave mode out, or use "
        "'initial')")
    assert not sync_rows(runtime.engine, result.run_id)  # stopped before any step


LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""


@pytest.fixture
def graphql(instance, tmp_path):
    """Dagster's GraphQL schema in this process over the code location served by a gRPC code server."""
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_module": {
        "module_name": "xpm_pipeline.definitions", "location_name": "xpm_pipeline.definitions"}}]}))
    with define_out_of_process_context(str(workspace), None, instance) as context:
        yield context


def test_a_graphql_launch_without_run_config_runs_the_jobs_flow(graphql, defs, instance, partitioned, runtime):
    tenant = partitioned[2]
    launched = execute_dagster_graphql(graphql, LAUNCH_RUN, {"params": {
        "selector": {"repositoryLocationName": "xpm_pipeline.definitions", "repositoryName": "__repository__",
                     "jobName": "xpm_initial_job"},
        "executionMetadata": {"tags": [{"key": PARTITION_TAG, "value": tenant}, {"key": TENANT_TAG, "value": tenant}]},
    }}).data["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run = instance.get_run_by_id(launched["run"]["runId"])  # queued: the test instance has no daemon
    assert run.job_name == "xpm_initial_job" and not run.run_config
    # what the run worker executes: the stored job, config and tags, here with the test's clocked resource
    result = defs.resolve_job_def(run.job_name).execute_in_process(instance=instance, run_config=run.run_config,
                                                                   tags=run.tags)
    assert result.success
    assert run_modes(result) == {"initial"}
    assert {row.mode for row in sync_rows(runtime.engine, result.run_id).values()} == {"initial"}
