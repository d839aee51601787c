"""The asset checks, each shown passing and then catching what it exists to catch."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import httpx
from sqlalchemy import update

from xpm_pipeline.defs.assets import tenants_asset, xpm_sync
from xpm_pipeline.defs.checks import (
    ALL_CHECKS,
    refresh_tokens_healthy,
    xpm_hourly_freshness,
    xpm_reconcile,
    xpm_timesheet_references,
)
from xpm_pipeline.sync.context import HOURLY, INITIAL, SyncContext
from xpm_pipeline.sync.run import run_sync
from xpm_pipeline.warehouse.control import oauth_grants
from xpm_pipeline.warehouse.schema import table_for
from xpm_pipeline_tests.defs.conftest import clocked_resource


def sync(runtime, tenant, mode=INITIAL, entities=None):
    """Set-up syncs run the plain function (the assets' own tests go through Dagster)."""
    with runtime.client(tenant) as client:
        report = run_sync(SyncContext(runtime.engine, client, tenant, mode, clock=runtime.clock), entities)
    assert report.ok, [(o.entity, o.error) for o in report.outcomes]


def run_checks(xpm, instance, checks, tenant=None) -> dict:
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks(*checks))
    defs = dg.Definitions(assets=[xpm_sync, tenants_asset], asset_checks=ALL_CHECKS, jobs=[job], resources={"xpm": xpm})
    result = defs.resolve_job_def("checks_only").execute_in_process(
        instance=instance, tags={"dagster/partition": tenant} if tenant else None)  # a checks-only run of a tenant
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_reconciliation_finds_what_the_warehouse_lacks(xpm, instance, partitioned, runtime, sandbox):
    tenant = partitioned[0]
    sync(runtime, tenant)
    before = run_checks(xpm, instance, [xpm_reconcile], tenant)
    assert len(before) == 9 and all(e.passed for e in before.values())
    clients = before[("xpm_clients", "matches_xpm")].metadata
    assert clients["xpm_count"].value == clients["warehouse_count"].value
    assert clients["xpm_key_digest"].value == clients["warehouse_key_digest"].value

    added = httpx.post(f"{sandbox.base_url}/_sandbox/tenants/{tenant}/staff", json={"name": "Hemi Walker"}, timeout=10)
    staff_uuid = added.json()["uuid"].lower()
    after = run_checks(xpm, instance, [xpm_reconcile], tenant)
    staff = after[("xpm_staff", "matches_xpm")]
    assert not staff.passed and staff.severity == dg.AssetCheckSeverity.ERROR
    assert staff.metadata["xpm_count"].value == staff.metadata["warehouse_count"].value + 1
    assert staff.metadata["missing_in_warehouse"].value == 1
    assert staff.metadata["missing_sample"].value == staff_uuid
    assert staff.metadata["xpm_key_digest"].value != staff.metadata["warehouse_key_digest"].value
    assert all(e.passed for key, e in after.items() if key[0] != "xpm_staff")

    sync(runtime, tenant, HOURLY, ["staff"])
    assert run_checks(xpm, instance, [xpm_reconcile], tenant)[("xpm_staff", "matches_xpm")].passed


def test_reconciliation_stays_within_its_call_budget(clock, instance, partitioned, runtime, sandbox):
    tenant = partitioned[1]
    sync(runtime, tenant)
    calls = len(sandbox.request_log)
    results = run_checks(clocked_resource(clock, reconcile_max_calls=4), instance, [xpm_reconcile], tenant)
    assert len(sandbox.request_log) - calls <= 4
    skipped = {key[0] for key, e in results.items() if "not_checked" in e.metadata}
    assert "xpm_timesheets" in skipped and "xpm_client_group_members" in skipped  # 3 calls; 1 per group
    assert all(results[(name, "matches_xpm")].severity == dg.AssetCheckSeverity.WARN for name in skipped)
    assert all(e.passed for key, e in results.items() if key[0] not in skipped)


def test_referential_integrity_of_time_entries(xpm, instance, partitioned, runtime):
    tenant = partitioned[0]
    sync(runtime, tenant)
    ok = run_checks(xpm, instance, [xpm_timesheet_references], tenant)[("xpm_timesheets", "references_resolve")]
    assert ok.passed and ok.metadata["missing_job"].value == 0

    times = table_for("timesheet")
    with runtime.engine.begin() as conn:
        uuid = conn.execute(times.select().where(times.c.tenant_id == tenant).limit(1)).first().uuid
        conn.execute(update(times).where(times.c.tenant_id == tenant, times.c.uuid == uuid)
                     .values(job_number="J-GONE", staff_uuid="00000000-0000-0000-0000-000000000000"))
    broken = run_checks(xpm, instance, [xpm_timesheet_references], tenant)[("xpm_timesheets", "references_resolve")]
    assert not broken.passed
    assert broken.metadata["missing_job"].value == 1 and broken.metadata["missing_staff"].value == 1
    assert broken.metadata["missing_task"].value == 0
    assert broken.metadata["sample_missing_job"].value == uuid


def test_freshness_of_hourly_data_across_tenants(xpm, instance, partitioned, runtime, clock):
    for tenant in partitioned[:2]:
        sync(runtime, tenant, HOURLY)
    stale = run_checks(xpm, instance, [xpm_hourly_freshness])
    assert set(stale) == {("xpm_staff", "fresh_within_2h"), ("xpm_timesheets", "fresh_within_2h")}
    assert not stale[("xpm_timesheets", "fresh_within_2h")].passed  # the third tenant was never synced
    assert "never synced" in stale[("xpm_timesheets", "fresh_within_2h")].metadata["stale"].value

    sync(runtime, partitioned[2], HOURLY)
    clock.advance(119 * 60)
    assert all(e.passed for e in run_checks(xpm, instance, [xpm_hourly_freshness]).values())
    clock.advance(2 * 60)
    late = run_checks(xpm, instance, [xpm_hourly_freshness])[("xpm_staff", "fresh_within_2h")]
    assert not late.passed and late.metadata["stale_tenants"].value == 3
    assert late.metadata["oldest_sync_age_minutes"].value > 120


def test_refresh_token_warning_before_expiry_and_after_a_failed_refresh(xpm, instance, partitioned, runtime, clock):
    key = ("xpm_tenants", "refresh_tokens_healthy")
    healthy = run_checks(xpm, instance, [refresh_tokens_healthy])[key]
    assert healthy.passed and healthy.metadata["tenants"].value == 3

    clock.advance(timedelta(days=53, hours=1).total_seconds())  # 60-day expiry is 6 days 23 h away
    soon = run_checks(xpm, instance, [refresh_tokens_healthy])[key]
    assert not soon.passed and soon.severity == dg.AssetCheckSeverity.WARN
    assert soon.metadata["tenants_needing_attention"].value == 3
    assert "refresh token expires" in soon.metadata["problems"].value

    with runtime.engine.begin() as conn:  # as TokenStore records a refresh the identity server refused
        conn.execute(update(oauth_grants).values(refresh_issued_at=clock.now(), last_error="invalid_grant"))
    failed = run_checks(xpm, instance, [refresh_tokens_healthy])[key]
    assert not failed.passed and "last refresh failed: invalid_grant" in failed.metadata["problems"].value
    assert "expires" not in failed.metadata["problems"].value


def test_reconciliation_gives_way_when_the_days_budget_runs_low(xpm, instance, partitioned, runtime, monkeypatch):
    tenant = partitioned[0]
    sync(runtime, tenant)  # ~63 calls of the tenant's day
    # a day of 80 calls with 10 in reserve: background reads (this check) stop at 80 - 10 - 8 = 62 used
    monkeypatch.setenv("XPM_DAILY_LIMIT", "80")
    monkeypatch.setenv("XPM_DAILY_RESERVE", "10")
    results = run_checks(xpm, instance, [xpm_reconcile], tenant)
    assert all(not e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in results.values())
    assert all(e.metadata["not_checked"].value.startswith("XPM quota") for e in results.values())
