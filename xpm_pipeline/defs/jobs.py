"""Jobs: one per flow, each over the tenant partitions; run config fixes the mode, tags name the tenant.

``PartitionedConfig`` gives every partitioned run of these jobs (launchpad, schedules, sensors, and
backfills launched from a job's partitions page) its mode and the ``xpm/tenant`` tag. Asset backfills
launched from the asset graph carry ``dagster/partition`` instead; ``dagster.yaml`` limits both tags to
one run per tenant.
"""

from __future__ import annotations

import dagster as dg

from xpm_pipeline.defs.assets import HOURLY_ASSETS, NIGHTLY_COMPARISON, SYNC_OP, SYNC_SPECS
from xpm_pipeline.defs.checks import HEALTH_CHECKS, TENANT_CHECKS
from xpm_pipeline.defs.partitions import tenant_partitions, tenant_tags
from xpm_pipeline.sync.context import HOURLY, INITIAL, NIGHTLY

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


def _sync_job(name: str, flow: str, mode: str, selection: dg.AssetSelection, description: str):
    return dg.define_asset_job(
        name=name,
        selection=selection,
        config=_per_tenant(mode, flow),
        tags={"xpm/flow": flow},
        description=description,
    )


initial_job = _sync_job(
    "xpm_initial_job", "initial", INITIAL, SYNC_ASSETS | TENANT_CHECK_SELECTION,
    "Everything for a newly connected tenant: all clients, groups, staff, task list, jobs with tasks, and "
    "time entries from 3 years back to 1 year ahead. Requested by the tenant sensor on connect.",
)
hourly_job = _sync_job(
    "xpm_hourly_job", "hourly", HOURLY, dg.AssetSelection.assets(*HOURLY_ASSETS).without_checks(),
    "New time entries and new staff of one tenant (the hourly schedule requests each tenant in its slot).",
)
nightly_job = _sync_job(
    "xpm_nightly_job", "nightly", NIGHTLY, SYNC_ASSETS | TENANT_CHECK_SELECTION,
    "The nightly sync of one tenant (changes, the 15-month timesheet comparison, missing jobs -> Completed), "
    "then reconciliation and integrity checks. Requested by the nightly schedule, staggered per tenant.",
)
full_sync_job = _sync_job(
    "xpm_full_sync_job", "full_sync", NIGHTLY, SYNC_ASSETS | TENANT_CHECK_SELECTION,
    "Manual 'full sync' for one tenant (launchpad) or many (Launch backfill, choose tenants). Runs the nightly "
    "flow; set mode to resync in the run config for 're-sync all'.",
)
health_job = dg.define_asset_job(
    name="xpm_health_job",
    selection=dg.AssetSelection.checks(*HEALTH_CHECKS),
    tags={"xpm/flow": "health"},
    description="Freshness of the hourly data and refresh-token health, across all tenants (no XPM calls).",
)

SYNC_JOBS = [initial_job, hourly_job, nightly_job, full_sync_job]
ALL_JOBS = [*SYNC_JOBS, health_job]
