"""The tenant sensor keeps partitions in step with xpm_tenants; the failure sensor records per tenant."""

from __future__ import annotations

import dagster as dg

from xpm_pipeline.defs.assets import TENANTS
from xpm_pipeline.defs.jobs import sync_run_config
from xpm_pipeline.defs.partitions import TENANT_TAG, tenant_partitions
from xpm_pipeline.defs.sensors import xpm_run_failure_sensor, xpm_tenant_sensor
from xpm_pipeline.sync.context import INITIAL, SyncContext
from xpm_pipeline.sync.run import run_sync


def evaluate(instance, xpm):
    """One sensor tick, with its partition requests applied as the daemon applies them."""
    result = xpm_tenant_sensor(dg.build_sensor_context(instance=instance, resources={"xpm": xpm}))
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def partitions(instance) -> list[str]:
    return sorted(instance.get_dynamic_partitions(tenant_partitions.name))


def test_connect_adds_partitions_and_requests_the_initial_sync(instance, xpm, tenants, runtime):
    with runtime.client(tenants[2]) as client:  # one tenant was already synced (e.g. by the CLI)
        assert run_sync(SyncContext(runtime.engine, client, tenants[2], INITIAL, clock=runtime.clock), ["staff"]).ok

    result = evaluate(instance, xpm)
    assert partitions(instance) == tenants
    requests = {r.partition_key: r for r in result.run_requests}
    assert set(requests) == set(tenants[:2])
    for tenant, request in requests.items():
        assert request.run_config == sync_run_config(INITIAL)
        assert request.tags[TENANT_TAG] == tenant and request.tags["xpm/flow"] == "initial"
        assert request.run_key.startswith(f"initial/{tenant}/")

    again = evaluate(instance, xpm)  # nothing changed: nothing to do
    assert isinstance(again, dg.SkipReason) and partitions(instance) == tenants


def test_disconnect_removes_the_partition(instance, xpm, tenants, runtime):
    evaluate(instance, xpm)
    assert runtime.tokens.disconnect(tenants[0])
    result = evaluate(instance, xpm)
    assert partitions(instance) == tenants[1:]
    assert not result.run_requests


def test_run_failure_is_recorded_on_the_tenant(instance, defs, partitioned, runtime):
    tenant = partitioned[1]
    runtime.tokens.disconnect(tenant)  # the partition is still there: the run fails
    result = defs.resolve_job_def("xpm_nightly_job").execute_in_process(
        instance=instance, partition_key=tenant, raise_on_error=False)
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name=xpm_run_failure_sensor.name, dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run,
    ).for_run_failure()
    xpm_run_failure_sensor(context)

    records = instance.fetch_observations(TENANTS, limit=10).records
    assert len(records) == 1
    event = records[0].event_log_entry.dagster_event
    assert event.partition == tenant
    metadata = event.asset_observation_data.asset_observation.metadata
    assert metadata["run_id"].value == result.run_id
    assert metadata["job"].value == "xpm_nightly_job" and metadata["flow"].value == "nightly"
    assert "not connected" in metadata["error"].value
    assert metadata["failures_last_24h"].value == 1


def test_a_run_without_a_tenant_is_not_recorded(instance, defs, partitioned):
    result = defs.resolve_job_def("xpm_health_job").execute_in_process(instance=instance, raise_on_error=False)
    context = dg.build_run_status_sensor_context(
        sensor_name=xpm_run_failure_sensor.name, dagster_event=result.all_events[-1],
        dagster_instance=instance, dagster_run=result.dagster_run,
    ).for_run_failure()
    assert isinstance(xpm_run_failure_sensor(context), dg.SkipReason)
    assert not instance.fetch_observations(TENANTS, limit=10).records
