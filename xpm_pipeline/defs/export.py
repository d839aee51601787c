"""Dagster side of the export: the drain job, the sensor that starts it, and the queue as an observed asset.

- ``xpm_export_sensor`` (every 30 s): for each tenant with items the drain could take now and export
  quota left, requests ONE ``xpm_export_drain`` run (never one per item), unless a drain of that tenant
  is already queued or running. Its cursor counts launches per tenant, so each run key is new and a
  tick evaluated twice does not launch twice. Each tick also records an observation of
  ``xpm_export_queue``: depth by status and priority per tenant.
- ``xpm_export_drain``: runs ``export.worker.drain`` for one tenant (run config ``tenant_id``) until the
  queue or the quota is empty, or ``max_minutes`` pass; its runs carry ``xpm/export=<tenant>``, limited
  to one at a time per tenant by the run coordinator. Drains do not carry ``xpm/tenant``: they may run
  beside that tenant's sync, the quota ledger shares the budget between them.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations at definition time.

import json
from datetime import timedelta

import dagster as dg

from xpm_pipeline.defs.instance import EXPORT_TAG
from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.changes import PRIORITY_NAMES
from xpm_pipeline.export.queue import depth
from xpm_pipeline.export.worker import drain, tenants_ready

QUEUE_ASSET = dg.AssetKey("xpm_export_queue")
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def queue_metadata(engine, tenant_ids) -> dict:
    """Depth of the export queue by status and priority, per tenant and in total."""
    per_tenant = {tenant: depth(engine, tenant) for tenant in tenant_ids}
    totals = {status: sum(d.by_status[status] for d in per_tenant.values()) for status in T.STATUSES}
    rows = [
        {"tenant": tenant, **d.by_status, **{PRIORITY_NAMES[p]: d.open_by_priority.get(p, 0) for p in PRIORITY_NAMES}}
        for tenant, d in per_tenant.items()
    ]
    return {
        "open": dg.MetadataValue.int(sum(d.open for d in per_tenant.values())),
        **{status: dg.MetadataValue.int(count) for status, count in totals.items()},
        **{
            f"waiting: {name}": dg.MetadataValue.int(sum(d.open_by_priority.get(p, 0) for d in per_tenant.values()))
            for p, name in PRIORITY_NAMES.items()
        },
        "by tenant": dg.MetadataValue.json(rows),
    }


xpm_export_queue = dg.AssetSpec(
    QUEUE_ASSET,
    description="The export queue (xpm_export_queue / v_export_queue): changes waiting to be written to XPM. "
    "Observed by xpm_export_sensor each tick and after each drain run: depth by status and priority.",
    group_name="xpm_export",
    metadata={"table": "xpm_export_queue", "view": "v_export_queue"},
)


class DrainConfig(dg.Config):
    tenant_id: str
    max_minutes: float = 50.0


@dg.op(
    name="xpm_drain_export_queue",
    description="Send one tenant's queued changes to XPM, in priority order, until the queue or quota is empty.",
)
def drain_export_queue(context: dg.OpExecutionContext, config: DrainConfig, xpm: XPMResource) -> None:
    with xpm.runtime() as runtime, runtime.client(config.tenant_id) as client:
        until = runtime.clock.now() + timedelta(minutes=config.max_minutes)
        report = drain(runtime.engine, client, runtime.ledger, until=until)
        after = queue_metadata(runtime.engine, [config.tenant_id])
    summary = {
        "tenant": config.tenant_id, "sent": report.sent, "done": report.done, "dead": report.dead,
        "in_doubt": report.in_doubt, "reconciled": report.reconciled, "requeued": report.requeued,
        "stopped": report.stopped,
        "quota returns": report.resume_at.isoformat() if report.resume_at else None,
    }
    context.log_event(dg.AssetObservation(asset_key=QUEUE_ASSET, metadata={**after, "drain": dg.MetadataValue.json(summary)}))
    context.log.info(json.dumps(summary))
    if report.error:
        raise dg.Failure(description=report.error, metadata={"drain": dg.MetadataValue.json(summary)})


@dg.job(
    name="xpm_export_drain",
    description="Drain one tenant's export queue (run config: tenant_id). Started by xpm_export_sensor.",
)
def export_drain_job():
    drain_export_queue()


def drain_run_config(tenant_id: str) -> dict:
    return {"ops": {"xpm_drain_export_queue": {"config": {"tenant_id": tenant_id}}}}


def _active_drains(instance: dg.DagsterInstance) -> set[str]:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name="xpm_export_drain", statuses=ACTIVE_STATUSES))
    return {run.tags.get(EXPORT_TAG) for run in runs}


@dg.sensor(
    name="xpm_export_sensor",
    job=export_drain_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts one drain run per tenant with queued changes and export quota left; observes the queue.",
)
def xpm_export_sensor(context: dg.SensorEvaluationContext, xpm: XPMResource):
    launches: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    with xpm.runtime() as runtime:
        ready = tenants_ready(runtime.engine, runtime.ledger, runtime.clock.now())
        tenant_ids = [t.tenant_id for t in runtime.tokens.tenants(active_only=False)]
        observation = dg.AssetObservation(asset_key=QUEUE_ASSET, metadata=queue_metadata(runtime.engine, tenant_ids))
    busy = _active_drains(context.instance)
    requests = []
    for tenant, waiting in sorted(ready.items()):
        if tenant in busy:
            continue
        launches[tenant] = launches.get(tenant, 0) + 1
        requests.append(
            dg.RunRequest(
                run_key=f"export/{tenant}/{launches[tenant]}",
                run_config=drain_run_config(tenant),
                tags={EXPORT_TAG: tenant, "xpm/flow": "export", "xpm/waiting": str(waiting)},
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(launches, sort_keys=True),
                           asset_events=[observation])
