"""Tenants are Dagster partitions: one partition per connected XPM organisation.

The set is dynamic (tenants connect and disconnect at run time); ``sensors.xpm_tenant_sensor`` keeps it
in step with ``xpm_tenants``. Runs of one tenant carry the ``xpm/tenant`` tag, which the queued run
coordinator (``dagster.yaml``) limits to one run per value.
"""

from __future__ import annotations

import warnings

import dagster as dg

tenant_partitions = dg.DynamicPartitionsDefinition(name="tenant")

TENANT_TAG = "xpm/tenant"
FLOW_TAG = "xpm/flow"


def tenant_tags(tenant_id: str, flow: str | None = None) -> dict[str, str]:
    """Run tags for one tenant's run (and its flow, for filtering runs in the UI)."""
    tags = {TENANT_TAG: tenant_id}
    if flow:
        tags[FLOW_TAG] = flow
    return tags


def tenant_check_spec(name: str, asset: dg.AssetKey, description: str) -> dg.AssetCheckSpec:
    """A check evaluated per tenant partition, so the UI shows its result for each tenant.

    Partitioned check specs are a preview API in Dagster 1.13 (pinned exactly in pyproject.toml); the
    preview warning is silenced here, in the one place that uses it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, description=description, partitions_def=tenant_partitions)
