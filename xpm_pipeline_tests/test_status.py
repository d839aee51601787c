"""The status page's schedule figures agree with the schedules themselves."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from xpm_pipeline.defs.schedules import NIGHTLY_TIMEZONE, hourly_tenants, nightly_tenants
from xpm_pipeline.status import next_hourly, next_nightly
from xpm_pipeline.warehouse.control import tenant_slot

TENANTS = [f"tenant-{n}" for n in range(40)]


def test_next_hourly_is_the_tenants_own_tick_within_the_hour():
    now = datetime(2026, 11, 23, 9, 7, tzinfo=timezone.utc)
    for tenant in TENANTS:
        hourly = next_hourly(tenant_slot(tenant), now)
        assert now < hourly <= now + timedelta(hours=1)
        assert hourly_tenants([tenant], hourly) == [tenant]


def test_next_nightly_is_the_tenants_own_staggered_tick_within_a_day():
    zone = ZoneInfo(NIGHTLY_TIMEZONE)
    for now in (datetime(2026, 11, 23, 9, 7, tzinfo=timezone.utc), datetime(2026, 7, 1, 13, 0, tzinfo=timezone.utc)):
        for tenant in TENANTS:
            nightly = next_nightly(tenant, now)
            assert 0 < (nightly - now).total_seconds() <= 86400
            assert nightly_tenants([tenant], nightly.astimezone(zone)) == [tenant]
