"""Schedule ticks evaluated at :00, :15, :30 and :45 (and through a night): every tenant lands in exactly
one slot, the same slot in every process and the one stored in ``xpm_tenants``; ticks are idempotent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from xpm_pipeline.definitions import make_definitions
from xpm_pipeline.defs.jobs import sync_run_config
from xpm_pipeline.defs.partitions import TENANT_TAG, tenant_partitions
from xpm_pipeline.defs.schedules import (
    HOURLY_CRONS,
    NIGHTLY_TIMEZONE,
    nightly_tick,
    xpm_health_schedule,
    xpm_hourly_schedule,
    xpm_nightly_schedule,
)
from xpm_pipeline.warehouse.control import tenant_slot

HOUR = datetime(2026, 11, 23, 14, 0, tzinfo=timezone.utc)
SYNTHETIC = [str(uuid.UUID(int=n * 7919 + 17)) for n in range(60)]


@pytest.fixture
def many_tenants(instance) -> list[str]:
    instance.add_dynamic_partitions(tenant_partitions.name, SYNTHETIC)
    return SYNTHETIC


def tick(schedule, instance, when):
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                        repository_def=make_definitions().get_repository_def())
    return list(schedule.evaluate_tick(context).run_requests or [])


def test_hourly_crons_are_the_four_quarter_hours():
    assert HOURLY_CRONS == ["0 * * * *", "15 * * * *", "30 * * * *", "45 * * * *"]
    assert list(xpm_hourly_schedule.cron_schedule) == HOURLY_CRONS
    assert xpm_hourly_schedule.job_name == "xpm_hourly_job"


def test_every_tenant_lands_in_exactly_one_slot(instance, many_tenants):
    slots = {}
    for minute in (0, 15, 30, 45):
        requests = tick(xpm_hourly_schedule, instance, HOUR + timedelta(minutes=minute))
        for request in requests:
            assert request.partition_key not in slots, "requested twice in one hour"
            slots[request.partition_key] = minute
            assert request.tags[TENANT_TAG] == request.partition_key
            assert request.tags["xpm/flow"] == "hourly"
            assert request.run_config == sync_run_config("hourly")
            assert request.run_key == f"hourly/{request.partition_key}/2026-11-23T14:{minute:02d}Z"
    assert set(slots) == set(many_tenants)
    assert all(slots[t] == tenant_slot(t) * 15 for t in many_tenants)
    assert set(slots.values()) == {0, 15, 30, 45}  # 60 tenants spread over all four slots


def test_a_tick_is_idempotent_and_the_next_hour_is_new(instance, many_tenants):
    first = tick(xpm_hourly_schedule, instance, HOUR + timedelta(minutes=30))
    again = tick(xpm_hourly_schedule, instance, HOUR + timedelta(minutes=30))
    later = tick(xpm_hourly_schedule, instance, HOUR + timedelta(hours=1, minutes=30))
    assert [r.run_key for r in first] == [r.run_key for r in again]
    assert {r.partition_key for r in first} == {r.partition_key for r in later}
    assert not {r.run_key for r in first} & {r.run_key for r in later}


def test_slots_are_stable_across_processes(many_tenants):
    """crc32, not hash(): another interpreter with another hash seed agrees."""
    code = (
        "import json,sys; from xpm_pipeline.warehouse.control import tenant_slot;"
        "from xpm_pipeline.defs.schedules import nightly_tick;"
        "print(json.dumps({t: [tenant_slot(t), nightly_tick(t)] for t in json.loads(sys.stdin.read())}))"
    )
    here = {t: [tenant_slot(t), nightly_tick(t)] for t in many_tenants}
    for seed in ("1", "4242"):
        out = subprocess.run([sys.executable, "-c", code], input=json.dumps(many_tenants), capture_output=True,
                             text=True, check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert json.loads(out) == here


def test_the_schedule_slot_is_the_stored_slot(instance, partitioned, runtime):
    stored = {record.tenant_id: record.slot for record in runtime.tokens.tenants()}
    scheduled = {}
    for minute in (0, 15, 30, 45):
        for request in tick(xpm_hourly_schedule, instance, HOUR + timedelta(minutes=minute)):
            scheduled[request.partition_key] = minute // 15
    assert scheduled == stored


def test_nightly_is_staggered_once_per_tenant_per_night(instance, many_tenants):
    tz = ZoneInfo(NIGHTLY_TIMEZONE)
    night = datetime(2026, 11, 24, 1, 0, tzinfo=tz)
    seen: dict[str, datetime] = {}
    for quarter in range(16):  # 01:00 ... 04:45
        when = night + timedelta(minutes=15 * quarter)
        for request in tick(xpm_nightly_schedule, instance, when):
            assert request.partition_key not in seen
            seen[request.partition_key] = when
            assert request.run_config == sync_run_config("nightly")
            assert request.run_key == f"nightly/{request.partition_key}/2026-11-24"
            assert request.tags[TENANT_TAG] == request.partition_key
    assert set(seen) == set(many_tenants)
    assert len(set(seen.values())) > 8  # spread over the night, not all at 01:00
    # never at the tenant's own hourly minute, so the nightly and hourly runs do not queue behind each other
    assert all(when.minute != tenant_slot(t) * 15 for t, when in seen.items())
    # outside the window nothing; the same tick evaluated from UTC gives the same answer
    assert tick(xpm_nightly_schedule, instance, datetime(2026, 11, 24, 6, 0, tzinfo=tz)) == []
    some = night + timedelta(minutes=45)
    assert [r.run_key for r in tick(xpm_nightly_schedule, instance, some.astimezone(timezone.utc))] == [
        r.run_key for r in tick(xpm_nightly_schedule, instance, some)]


def test_health_schedule_targets_the_health_job():
    assert xpm_health_schedule.job_name == "xpm_health_job"
