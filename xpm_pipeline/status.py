"""One tenant's health in one place, for ``xpm-pipeline status``: last run per entity and mode, the next
scheduled syncs, API calls used today by direction, the export queue by priority, token expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import text

from xpm_pipeline.export.queue import QueueDepth, depth
from xpm_pipeline.quota.ledger import QuotaUsage
from xpm_pipeline.runtime import Runtime
from xpm_pipeline.sync.removals import HeldRemoval, open_holds
from xpm_pipeline.warehouse.control import SLOTS
from xpm_pipeline.xpm.tokens import GrantStatus, TenantRecord

SLOT_MINUTES = 60 // SLOTS


@dataclass(frozen=True)
class RunStatus:
    entity: str
    mode: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    rows_inserted: int
    rows_updated: int
    rows_deleted: int
    api_calls: int
    error: str | None
    last_success_at: datetime | None


@dataclass(frozen=True)
class TenantStatus:
    tenant: TenantRecord
    at: datetime
    runs: list[RunStatus]
    next_hourly: datetime
    next_nightly: datetime
    quota: QuotaUsage
    queue: QueueDepth
    tokens: GrantStatus | None
    held: list[HeldRemoval]  # removals the guard stopped, waiting for a person (sync --accept-removals)

    @property
    def failures(self) -> list[RunStatus]:
        return [r for r in self.runs if r.status == "failed"]


def next_hourly(slot: int, now: datetime) -> datetime:
    """The next :00/:15/:30/:45 tick of the tenant's hourly slot (the hourly schedule's rule)."""
    base = now.replace(minute=slot * SLOT_MINUTES, second=0, microsecond=0)
    return base if base > now else base + timedelta(hours=1)


def next_nightly(tenant_id: str, now: datetime) -> datetime:
    """The tenant's next nightly tick (staggered 01:00-04:45, practice time), in UTC."""
    from xpm_pipeline.defs.schedules import NIGHTLY_FIRST_HOUR, NIGHTLY_TIMEZONE, nightly_tick

    zone = ZoneInfo(NIGHTLY_TIMEZONE)
    tick = nightly_tick(tenant_id)
    local = now.astimezone(zone)
    for days in (0, 1, 2):
        day = (local + timedelta(days=days)).date()
        at = datetime(day.year, day.month, day.day, NIGHTLY_FIRST_HOUR, tzinfo=zone) + timedelta(
            minutes=tick * SLOT_MINUTES)
        if at > local:
            return at.astimezone(now.tzinfo)
    raise AssertionError("unreachable: a nightly tick happens every day")


def _runs(runtime: Runtime, tenant_id: str) -> list[RunStatus]:
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT entity, mode, status, started_at, ended_at, rows_inserted, rows_updated, rows_deleted, "
                "api_calls, error, last_success_at FROM v_sync_status WHERE tenant_id = :t ORDER BY entity, mode"
            ),
            {"t": tenant_id},
        ).all()
    return [RunStatus(*(_aware(v) for v in row)) for row in rows]


def _aware(value):
    """Views hand SQLite timestamps back as text or naive datetimes: they are UTC."""
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def tenant_status(runtime: Runtime, tenant: TenantRecord) -> TenantStatus:
    quota = runtime.ledger.usage(tenant.tenant_id)
    now = quota.at
    try:
        tokens = runtime.tokens.grant_status(tenant.tenant_id)
    except Exception:  # noqa: BLE001 - a disconnected tenant may have no grant left: show the rest
        tokens = None
    return TenantStatus(
        tenant=tenant,
        at=now,
        runs=_runs(runtime, tenant.tenant_id),
        next_hourly=next_hourly(tenant.slot, now),
        next_nightly=next_nightly(tenant.tenant_id, now),
        quota=quota,
        queue=depth(runtime.engine, tenant.tenant_id),
        tokens=tokens,
        held=open_holds(runtime.engine, tenant.tenant_id),
    )
