"""Asset checks. Per tenant (partitioned, run by the initial / nightly / full-sync jobs after the sync):

- ``matches_xpm`` on every table: the keys XPM lists now vs the warehouse's, by count and digest,
  within a call budget (``reconcile.py``);
- ``references_resolve`` on xpm_timesheets: every time entry's job, staff member and task on the job
  exists in the warehouse;
- ``nightly_comparison`` on xpm_timesheet_changes travels with the materialization (``assets.py``).

Across all tenants (unpartitioned, run by ``xpm_health_job`` on its schedule):

- ``fresh_within_2h`` on xpm_staff and xpm_timesheets: the hourly data of every tenant was synced
  successfully (by Dagster or the CLI: ``xpm_sync_runs`` is the record) within the last 2 hours;
- ``refresh_tokens_healthy`` on xpm_tenants: warns when a tenant's refresh token is within 7 days of
  its 60-day expiry, or its last refresh failed, so someone reconnects before syncs stop.
"""

# No `from __future__ import annotations`: Dagster reads the config and resource annotations at definition time.

from datetime import datetime, timedelta, timezone

import dagster as dg

from xpm_pipeline.defs.assets import ENTITY_OF_KEY, HOURLY_ASSETS, TENANTS, asset_key
from xpm_pipeline.defs.partitions import tenant_check_spec
from xpm_pipeline.defs.queries import last_successes, orphan_time_entries
from xpm_pipeline.defs.reconcile import SAMPLE, reconcile
from xpm_pipeline.defs.resources import XPMResource
from xpm_pipeline.entities import ENTITIES
from xpm_pipeline.xpm.tokens import TenantNotConnected

FRESHNESS_LIMIT = timedelta(hours=2)
TOKEN_WARNING_DAYS = 7

RECONCILE_CHECK = "matches_xpm"
RECONCILE_SPECS = [
    tenant_check_spec(
        RECONCILE_CHECK,
        asset_key(entity),
        f"The tenant's {ENTITIES[entity].table} keys match what XPM lists now (count and SHA-256 of the sorted "
        "keys), within the check's XPM call budget.",
    )
    for entity in ENTITIES
]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dg.multi_asset_check(
    name="xpm_reconcile",
    specs=RECONCILE_SPECS,
    can_subset=True,
    description="Source-to-warehouse reconciliation of one tenant (spends a few XPM calls).",
)
def xpm_reconcile(context: dg.AssetCheckExecutionContext, xpm: XPMResource):
    tenant_id = context.partition_key
    selected = {ENTITY_OF_KEY[key.asset_key] for key in context.selected_asset_check_keys}
    entities = [name for name in ENTITIES if name in selected]
    with xpm.runtime() as runtime:
        try:
            client = runtime.client(tenant_id)
        except TenantNotConnected as exc:
            raise dg.Failure(description=str(exc)) from None
        with client:
            results = reconcile(runtime.engine, client, tenant_id, entities, today=runtime.clock.now().date(),
                                max_calls=xpm.reconcile_max_calls)
    for entity, result in results.items():
        metadata = {
            "tenant_id": tenant_id,
            "scope": result.scope,
            "warehouse_count": result.warehouse.count,
            "warehouse_key_digest": result.warehouse.digest,
            "api_calls": result.api_calls,
        }
        if not result.checked:
            yield dg.AssetCheckResult(
                asset_key=asset_key(entity), check_name=RECONCILE_CHECK, passed=False,
                severity=dg.AssetCheckSeverity.WARN, metadata={**metadata, "not_checked": result.skipped},
                description=f"not checked: {result.skipped}",
            )
            continue
        missing, extra = result.missing_in_warehouse, result.extra_in_warehouse
        metadata.update({
            "xpm_count": result.xpm.count,
            "xpm_key_digest": result.xpm.digest,
            "missing_in_warehouse": len(missing),
            "extra_in_warehouse": len(extra),
            "missing_sample": ", ".join(missing[:SAMPLE]),
            "extra_sample": ", ".join(extra[:SAMPLE]),
        })
        yield dg.AssetCheckResult(
            asset_key=asset_key(entity), check_name=RECONCILE_CHECK, passed=result.matches, metadata=metadata,
            description=(
                f"{result.xpm.count} keys, same as XPM" if result.matches else
                f"XPM lists {result.xpm.count}, the warehouse holds {result.warehouse.count}: {len(missing)} missing "
                f"here, {len(extra)} not in XPM (a sync fixes this; re-sync all if it persists)"
            ),
        )


REFERENCES_SPEC = tenant_check_spec(
    "references_resolve",
    asset_key("timesheet"),
    "Every live time entry of the tenant points at a job (job_number), staff member (staff_uuid) and task on a "
    "job (task_uuid) that the warehouse holds.",
)


@dg.multi_asset_check(name="xpm_timesheet_references", specs=[REFERENCES_SPEC],
                      description="Referential integrity of time entries (warehouse only, no XPM calls).")
def xpm_timesheet_references(context: dg.AssetCheckExecutionContext, xpm: XPMResource):
    tenant_id = context.partition_key
    with xpm.runtime() as runtime:
        orphans = orphan_time_entries(runtime.engine, tenant_id)
    metadata: dict = {"tenant_id": tenant_id}
    for orphan in orphans:
        metadata[f"missing_{orphan.target}"] = orphan.missing
        metadata[f"to_deleted_{orphan.target}"] = orphan.to_deleted
        if orphan.sample:
            metadata[f"sample_missing_{orphan.target}"] = ", ".join(orphan.sample)
    broken = [o for o in orphans if o.missing]
    yield dg.AssetCheckResult(
        asset_key=REFERENCES_SPEC.asset_key, check_name=REFERENCES_SPEC.name, passed=not broken, metadata=metadata,
        description=(
            "every time entry's job, staff member and task is in the warehouse" if not broken else
            "time entries point at rows the warehouse lacks: "
            + ", ".join(f"{o.missing} -> {o.target}" for o in broken)
            + " (run the nightly sync; re-sync all if it persists)"
        ),
    )


FRESHNESS_CHECK = "fresh_within_2h"
FRESHNESS_SPECS = [
    dg.AssetCheckSpec(
        FRESHNESS_CHECK, asset=key,
        description="Every connected tenant's hourly data was synced successfully within the last 2 hours "
        "(last succeeded run in xpm_sync_runs, by Dagster or the CLI).",
    )
    for key in HOURLY_ASSETS
]


@dg.multi_asset_check(name="xpm_hourly_freshness", specs=FRESHNESS_SPECS, can_subset=True,
                      description="Hourly data of all tenants no older than 2 hours.")
def xpm_hourly_freshness(context: dg.AssetCheckExecutionContext, xpm: XPMResource):
    entities = [ENTITY_OF_KEY[key.asset_key] for key in sorted(context.selected_asset_check_keys, key=str)]
    with xpm.runtime() as runtime:
        now = runtime.clock.now()
        tenants = [t.tenant_id for t in runtime.tokens.tenants(active_only=True)]
        last = last_successes(runtime.engine, entities)
    for entity in entities:
        ages = {t: (now - _utc(last[(t, entity)])) if (t, entity) in last else None for t in tenants}
        stale = sorted(t for t, age in ages.items() if age is None or age > FRESHNESS_LIMIT)
        known = [age for age in ages.values() if age is not None]
        oldest = max(known) if known else None
        yield dg.AssetCheckResult(
            asset_key=asset_key(entity), check_name=FRESHNESS_CHECK, passed=not stale,
            metadata={
                "tenants": len(tenants),
                "stale_tenants": len(stale),
                "stale": ", ".join(f"{t} ({'never synced' if ages[t] is None else _minutes(ages[t])})" for t in stale),
                "oldest_sync_age_minutes": round(oldest.total_seconds() / 60, 1) if oldest is not None else -1,
                "checked_at": now.isoformat(),
            },
            description=(
                f"all {len(tenants)} tenant(s) synced within {_minutes(FRESHNESS_LIMIT)}" if not stale else
                f"{len(stale)} of {len(tenants)} tenant(s) not synced within {_minutes(FRESHNESS_LIMIT)}: "
                "check the hourly schedule and recent run failures"
            ),
        )


def _minutes(age: timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


@dg.asset_check(
    asset=TENANTS,
    name="refresh_tokens_healthy",
    description=f"Warns when a tenant's refresh token is within {TOKEN_WARNING_DAYS} days of its 60-day expiry, "
    "or its last refresh failed: reconnect (`xpm-pipeline connect`) before the syncs stop.",
)
def refresh_tokens_healthy(context: dg.AssetCheckExecutionContext, xpm: XPMResource) -> dg.AssetCheckResult:
    with xpm.runtime() as runtime:
        now = runtime.clock.now()
        problems: dict[str, list[str]] = {}
        expiries = {}
        records = runtime.tokens.tenants(active_only=True)
        for record in records:
            status = runtime.tokens.grant_status(record.tenant_id)
            expiries[record.tenant_id] = status.refresh_expires_at
            issues = []
            if status.status != "active":
                issues.append(f"grant {status.status}")
            if status.last_error:
                issues.append(f"last refresh failed: {status.last_error}")
            if status.refresh_expires_within(now, days=TOKEN_WARNING_DAYS):
                issues.append(f"refresh token expires {status.refresh_expires_at:%Y-%m-%d %H:%M} UTC")
            if issues:
                problems[record.tenant_id] = issues
    soonest = min(expiries.values()) if expiries else None
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "tenants": len(records),
            "tenants_needing_attention": len(problems),
            "problems": "\n".join(f"{tenant}: {'; '.join(issues)}" for tenant, issues in sorted(problems.items())),
            "soonest_refresh_expiry": soonest.isoformat() if soonest else "",
            "checked_at": now.isoformat(),
        },
        description=(
            f"{len(records)} tenant(s): every refresh token is healthy" if not problems else
            f"{len(problems)} tenant(s) need `xpm-pipeline connect` soon: "
            + "; ".join(f"{t}: {', '.join(i)}" for t, i in sorted(problems.items()))
        ),
    )


TENANT_CHECKS = [xpm_reconcile, xpm_timesheet_references]
"""Run inside a tenant's sync run (they need its partition)."""
HEALTH_CHECKS = [xpm_hourly_freshness, refresh_tokens_healthy]
"""Run across all tenants by ``xpm_health_job``."""
ALL_CHECKS = TENANT_CHECKS + HEALTH_CHECKS
