"""Sensors: the tenant partitions follow ``xpm_tenants``; failed runs are recorded per tenant.

``xpm_tenant_sensor``: ``xpm-pipeline connect`` adds a tenant to ``xpm_tenants``, ``disconnect`` marks it
disconnected; every minute the sensor adds or removes the matching partitions, and requests the
initial sync for a tenant that has never been synced (run key: tenant + connection time, so a tick
evaluated twice requests it once).

``xpm_run_failure_sensor``: a failed run of a tenant is recorded as an observation of ``xpm_tenants``
for that tenant's partition (job, flow, run id, first error line, failures in the last 24 hours), so
the UI shows each tenant's failures in one place; the run itself keeps the full logs.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations at definition time.

from datetime import datetime, timedelta, timezone

import dagster as dg

from xpm_pipeline.defs.assets import TENANTS
from xpm_pipeline.defs.jobs import initial_job, sync_run_config
from xpm_pipeline.defs.partitions import FLOW_TAG, TENANT_TAG, tenant_partitions, tenant_tags
from xpm_pipeline.defs.queries import synced_tenants
from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.defs.token_recovery import xpm_token_recovery_sensor
from xpm_pipeline.sync.context import INITIAL

PARTITION_TAG = "dagster/partition"


@dg.sensor(
    name="xpm_tenant_sensor",
    job=initial_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps the tenant partitions in step with xpm_tenants (connect adds, disconnect removes) and "
    "requests the initial sync of a newly connected tenant.",
)
def xpm_tenant_sensor(context: dg.SensorEvaluationContext, xpm: XPMResource):
    with xpm.runtime() as runtime:
        active = {record.tenant_id: record for record in runtime.tokens.tenants(active_only=True)}
        synced = synced_tenants(runtime.engine)
    known = set(context.instance.get_dynamic_partitions(tenant_partitions.name))
    added = sorted(set(active) - known)
    removed = sorted(known - set(active))
    if not added and not removed:
        return dg.SkipReason(f"{len(known)} tenant partition(s), in step with xpm_tenants")
    requests = []
    if added:
        requests.append(tenant_partitions.build_add_request(added))
    if removed:
        requests.append(tenant_partitions.build_delete_request(removed))
    runs = [
        dg.RunRequest(
            run_key=f"initial/{tenant}/{active[tenant].connected_at:%Y%m%dT%H%M%S}",
            partition_key=tenant,
            run_config=sync_run_config(INITIAL),
            tags=tenant_tags(tenant, "initial"),
        )
        for tenant in added
        if tenant not in synced
    ]
    context.log.info(f"tenants added: {added or 'none'}; removed: {removed or 'none'}; initial syncs: {len(runs)}")
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests)


def tenant_of_run(run: dg.DagsterRun) -> str | None:
    return run.tags.get(TENANT_TAG) or run.tags.get(PARTITION_TAG)


def _first_error(context: dg.RunFailureSensorContext) -> str:
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        if error is not None:
            return error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name or "error"
    message = context.failure_event.message or "run failed"
    return message.strip().splitlines()[0]


def record_failure(instance: dg.DagsterInstance, run: dg.DagsterRun, tenant_id: str, error: str) -> dict:
    """One observation of xpm_tenants for the tenant's partition; returns its metadata."""
    tag = TENANT_TAG if TENANT_TAG in run.tags else PARTITION_TAG
    recent = instance.get_runs_count(
        dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            tags={tag: tenant_id},
            created_after=datetime.now(timezone.utc) - timedelta(days=1),  # run records are wall-clock
        )
    )
    metadata = {
        "event": "run_failed",
        "run_id": run.run_id,
        "job": run.job_name,
        "flow": run.tags.get(FLOW_TAG, ""),
        "error": error[:1000],
        "failures_last_24h": recent,
    }
    instance.report_runless_asset_event(
        dg.AssetObservation(asset_key=TENANTS, partition=tenant_id, metadata=metadata,
                            description=f"run {run.run_id} of {run.job_name} failed: {error[:200]}")
    )
    return metadata


@dg.run_failure_sensor(
    name="xpm_run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records each failed run of a tenant on xpm_tenants (per tenant partition).",
)
def xpm_run_failure_sensor(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    tenant_id = tenant_of_run(run)
    if not tenant_id:
        return dg.SkipReason(f"run {run.run_id} ({run.job_name}) names no tenant")
    error = _first_error(context)
    if not context.instance.has_dynamic_partition(tenant_partitions.name, tenant_id):
        context.log.warning(f"tenant {tenant_id} has no partition any more; failure of run {run.run_id}: {error}")
        return dg.SkipReason(f"tenant {tenant_id} is no longer a partition")
    metadata = record_failure(context.instance, run, tenant_id, error)
    context.log.error(
        f"tenant {tenant_id}: run {run.run_id} of {run.job_name} failed ({metadata['failures_last_24h']} failure(s) in "
        f"24 h): {error}"
    )
    return None


ALL_SENSORS = [xpm_tenant_sensor, xpm_run_failure_sensor, xpm_token_recovery_sensor]
