"""Schedules: hourly in four slots, nightly staggered per tenant, health checks every hour.

Hourly: one schedule with four crons (:00, :15, :30, :45). A tick at minute ``m`` requests the tenants
of slot ``m // 15``, the slot being ``warehouse.control.tenant_slot`` (crc32 of the tenant id mod 4),
the same function that fills ``xpm_tenants.slot``: stable across processes and restarts, unlike
``hash()``. So XPM sees a quarter of the tenants every 15 minutes instead of all of them at :00.

Nightly: ticks every 15 minutes from 01:00 to 04:45 (practice time, ``NIGHTLY_TIMEZONE``); each tenant
has one of those 16 ticks (a second crc32, skipping the ticks that share the tenant's hourly minute), so
the nightly load spreads over four hours.

Run keys are ``<flow>/<tenant>/<tick>``: evaluating a tick twice (daemon restart, catch-up) requests
nothing new. The tenant list is the dynamic partitions, so the schedules need no database access.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg

from xpm_pipeline.defs.jobs import health_job, hourly_job, nightly_job, sync_run_config
from xpm_pipeline.defs.partitions import tenant_partitions, tenant_tags
from xpm_pipeline.sync.context import HOURLY, NIGHTLY
from xpm_pipeline.warehouse.control import SLOTS, tenant_slot

SLOT_MINUTES = 60 // SLOTS
HOURLY_CRONS = [f"{slot * SLOT_MINUTES} * * * *" for slot in range(SLOTS)]  # :00 :15 :30 :45

NIGHTLY_TIMEZONE = "Pacific/Auckland"  # XPM practices are in NZ/AU: 01:00-05:00 NZ is night in both
NIGHTLY_FIRST_HOUR = 1
NIGHTLY_HOURS = 4
NIGHTLY_CRON = f"*/{SLOT_MINUTES} {NIGHTLY_FIRST_HOUR}-{NIGHTLY_FIRST_HOUR + NIGHTLY_HOURS - 1} * * *"
NIGHTLY_TICKS = NIGHTLY_HOURS * SLOTS


def slot_of_tick(when: datetime) -> int:
    """The hourly slot a tick serves (:00 -> 0, :15 -> 1, :30 -> 2, :45 -> 3)."""
    return (when.minute // SLOT_MINUTES) % SLOTS


def hourly_tenants(tenants: Iterable[str], when: datetime) -> list[str]:
    slot = slot_of_tick(when)
    return sorted(t for t in tenants if tenant_slot(t) == slot)


def nightly_tick(tenant_id: str) -> int:
    """The tenant's nightly tick (0 = 01:00 ... 15 = 04:45), never at its own hourly minute."""
    own_minute = tenant_slot(tenant_id)
    candidates = [tick for tick in range(NIGHTLY_TICKS) if tick % SLOTS != own_minute]
    return candidates[zlib.crc32(f"nightly/{tenant_id}".encode()) % len(candidates)]


def tick_index(when: datetime) -> int | None:
    """Which nightly tick a local time is (None outside the nightly window)."""
    index = (when.hour - NIGHTLY_FIRST_HOUR) * SLOTS + when.minute // SLOT_MINUTES
    return index if 0 <= index < NIGHTLY_TICKS else None


def nightly_tenants(tenants: Iterable[str], when: datetime) -> list[str]:
    index = tick_index(when)
    return sorted(t for t in tenants if nightly_tick(t) == index)


def _tick_label(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def _tenants(context: dg.ScheduleEvaluationContext) -> list[str]:
    return list(context.instance.get_dynamic_partitions(tenant_partitions.name))


@dg.schedule(
    name="xpm_hourly_schedule",
    cron_schedule=HOURLY_CRONS,
    job=hourly_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes, the hourly sync of the tenants in that slot (each tenant once an hour).",
)
def xpm_hourly_schedule(context: dg.ScheduleEvaluationContext):
    when = context.scheduled_execution_time.astimezone(timezone.utc)
    chosen = hourly_tenants(_tenants(context), when)
    if not chosen:
        return dg.SkipReason(f"no tenant in slot :{slot_of_tick(when) * SLOT_MINUTES:02d}")
    return [_sync_request(tenant, HOURLY, _tick_label(when)) for tenant in chosen]


def _sync_request(tenant: str, mode: str, tick: str) -> dg.RunRequest:
    """One tenant's run for a tick; the run key makes a re-evaluated tick request nothing new."""
    return dg.RunRequest(
        run_key=f"{mode}/{tenant}/{tick}",
        partition_key=tenant,
        run_config=sync_run_config(mode),
        tags=tenant_tags(tenant, mode),
    )


@dg.schedule(
    name="xpm_nightly_schedule",
    cron_schedule=NIGHTLY_CRON,
    job=nightly_job,
    execution_timezone=NIGHTLY_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The nightly sync, staggered: each tenant once a night at its own quarter hour, 01:00-04:45.",
)
def xpm_nightly_schedule(context: dg.ScheduleEvaluationContext):
    when = context.scheduled_execution_time.astimezone(ZoneInfo(NIGHTLY_TIMEZONE))
    chosen = nightly_tenants(_tenants(context), when)
    if not chosen:
        return dg.SkipReason(f"no tenant has its nightly sync at {when:%H:%M}")
    night = when.date().isoformat()
    return [_sync_request(tenant, NIGHTLY, night) for tenant in chosen]


xpm_health_schedule = dg.ScheduleDefinition(
    name="xpm_health_schedule",
    cron_schedule="50 * * * *",
    job=health_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: freshness of every tenant's hourly data and refresh-token health.",
)

ALL_SCHEDULES = [xpm_hourly_schedule, xpm_nightly_schedule, xpm_health_schedule]
