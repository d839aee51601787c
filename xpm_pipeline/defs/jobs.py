"""Jobs: one per flow, each over the tenant partitions; the job's flow fixes the mode, tags name the tenant.

Each job carries its flow in the ``xpm/flow`` tag; the sync asset runs that flow's mode whatever
launched the run (``defs/flows.py``), and refuses run config that asks for another.

``PartitionedConfig`` gives every partitioned run of these jobs (launchpad, schedules, sensors, and
backfills launched from a job's partitions page) its mode and the ``xpm/tenant`` tag. Asset backfills
launched from the asset graph carry ``dagster/partition`` instead; ``dagster.yaml`` limits both tags to
one run per tenant.
"""

from __future__ import annotations

import dagster as dg

from xpm_pipeline.defs.assets import HOURLY_ASSETS, NIGHTLY_COMPARISON, SYNC_OP, SYNC_SPECS
from xpm_pipeline.defs.checks import HEALTH_CHECKS, TENANT_CHECKS
from xpm_pipeline.defs.flows import FLOW_MODES
from xpm_pipeline.defs.partitions import FLOW_TAG, tenant_partitions, tenant_tags

SYNC_ASSETS = dg.AssetSelection.assets(*(spec.key for spec in SYNC_SPECS)).without_checks()
TENANT_CHECK_SELECTION = dg.AssetSelection.checks(*TENANT_CHECKS) | dg.AssetSelection.checks(NIGHTLY_COMPARISON.key)


def sync_run_config(mode: str) -> dict:
    return {"ops": {SYNC_OP: {"config": {"mode": mode}}}}


def _per_tenant(mode: str, flow: str) -> dg.PartitionedConfig:
    return dg.PartitionedConfig(
        partitions_def=tenant_partitions,
        run_config_for_partition_key_fn=lambda _tenant: sync_run_config(mode),
        tags_for_partition_key_fn=lambda tenant: tenant_tags(tenant, flow),
    )


def _sync_job(name: str, flow: str, selection: dg.AssetSelection, description: str):
    return dg.define_asset_job(
        name=name,
        selection=selection,
        config=_per_tenant(FLOW_MODES[flow][0], flow),  # the launchpad shows the flow's mode
        tags={FLOW_TAG: flow},
        description=description,
    )


initial_job = _sync_job(
    "xpm_initial_job", "initial", SYNC_ASSETS | TENANT_CHECK_SELECTION,
    "Everything for a newly connected tenant: all clients, groups, staff, task list, jobs with tasks, and "
    "time entries from 3 years back to 1 year ahead. Requested by the tenant sensor on connect.",
)
hourly_job = _sync_job(
    "xpm_hourly_job", "hourly", dg.AssetSelection.assets(*HOURLY_ASSETS).without_checks(),
    "New time entries and new staff of one tenant (the hourly schedule requests each tenant in its slot).",
)
nightly_job = _sync_job(
    "xpm_nightly_job", "nightly", SYNC_ASSETS | TENANT_CHECK_SELECTION,
    "The nightly sync of one tenant (changes, the 15-month timesheet comparison, missing jobs -> Completed), "
    "then reconciliation and integrity checks. Requested by the nightly schedule, staggered per tenant.",
)
full_sync_job = _sync_job(
    "xpm_full_sync_job", "full_sync", SYNC_ASSETS | TENANT_CHECK_SELECTION,
    "Manual 'full sync' for one tenant (launchpad) or many (Launch backfill, choose tenants). Runs the nightly "
    "flow; set mode to resync in the run config for 're-sync all'.",
)
health_job = dg.define_asset_job(
    name="xpm_health_job",
    selection=dg.AssetSelection.checks(*HEALTH_CHECKS),
    tags={FLOW_TAG: "health"},
    description="Freshness of the hourly data and refresh-token health, across all tenants (no XPM calls).",
)

SYNC_JOBS = [initial_job, hourly_job, nightly_job, full_sync_job]
ALL_JOBS = [*SYNC_JOBS, health_job]
