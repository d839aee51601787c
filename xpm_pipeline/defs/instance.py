"""The Dagster instance settings that matter to the product, in one place.

``RUN_COORDINATOR`` is what the repository's ``dagster.yaml`` (production, PostgreSQL storage) says;
``local_instance_yaml`` writes the same coordinator with SQLite storage for ``make ui``, the demo and
the tests. A test keeps the two in step.

Why these limits: XPM's quota is per tenant and enforced by the ledger, but two runs of one tenant at
once would still race on the same tables and double the tenant's call rate. So at most one run per
``xpm/tenant`` value (the tag schedules, sensors and job backfills set) and per ``dagster/partition``
value (the tag asset backfills set; the only partitions are tenants) runs at a time; the rest queue.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from xpm_pipeline.defs.partitions import TENANT_TAG

PARTITION_TAG = "dagster/partition"
EXPORT_TAG = "xpm/export"  # export drain runs: one per tenant at a time, beside that tenant's syncs
MAX_CONCURRENT_RUNS = 8

RUN_COORDINATOR: dict = {
    "module": "dagster.core.run_coordinator",
    "class": "QueuedRunCoordinator",
    "config": {
        "max_concurrent_runs": MAX_CONCURRENT_RUNS,
        "tag_concurrency_limits": [
            {"key": TENANT_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": PARTITION_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": EXPORT_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
        ],
    },
}


def local_instance_config(*, dequeue_interval_seconds: int | None = None) -> dict:
    """SQLite storage under DAGSTER_HOME (Dagster's default) with the production run coordinator."""
    coordinator = {**RUN_COORDINATOR, "config": dict(RUN_COORDINATOR["config"])}
    if dequeue_interval_seconds is not None:
        coordinator["config"]["dequeue_interval_seconds"] = dequeue_interval_seconds
    return {
        "run_coordinator": coordinator,
        "run_monitoring": {"enabled": True},
        "telemetry": {"enabled": False},
    }


def write_local_instance(home: Path, **kwargs) -> Path:
    """Write ``home/dagster.yaml`` for a local instance; returns its path."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    path.write_text(
        "# Written by xpm-pipeline (xpm_pipeline/defs/instance.py): local SQLite storage, production run limits.\n"
        + yaml.safe_dump(local_instance_config(**kwargs), sort_keys=False)
    )
    return path
