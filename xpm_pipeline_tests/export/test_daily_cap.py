"""The daily cap: exports stop at cap - reserve, nothing over it is lost, the rest goes the next day."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from xpm_pipeline.export import enqueue
from xpm_pipeline.export import tables as T
from xpm_pipeline.export.dryrun import plan
from xpm_pipeline.export.worker import EMPTY, QUOTA, drain
from xpm_pipeline.runtime import open_runtime
from xpm_pipeline.sandbox import SandboxConfig
from xpm_pipeline.xpm.connect import connect
from xpm_pipeline_tests.export.conftest import settings_for
from xpm_pipeline_tests.export.support import timesheet_creates


def _statuses(engine) -> Counter:
    with engine.connect() as conn:
        return Counter(conn.execute(select(T.queue.c.status)).scalars())


def _cap_scenario(sandbox, tenant, clock, settings, *, cap: int, reserve: int, queued: int) -> None:
    runtime = open_runtime(settings, clock=clock)
    try:
        connect(runtime.tokens, auto_consent=True)
        enqueue(runtime.engine, tenant, timesheet_creates(sandbox, tenant, queued, clock.now().date()), clock=clock)
        with runtime.client(tenant) as client:
            today = drain(runtime.engine, client, runtime.ledger)
            assert today.stopped == QUOTA and today.done == cap - reserve, today
            assert _statuses(runtime.engine) == {"done": cap - reserve, "pending": queued - (cap - reserve)}
            usage = runtime.ledger.usage(tenant)
            assert usage.write_remaining == 0 and usage.day_remaining == reserve  # the reserve is kept for syncs
            dry = plan(runtime.engine, runtime.ledger, tenant)
            assert not dry.go_now and len(dry.waiting) == queued - (cap - reserve)
            assert dry.waiting[0].eta >= today.resume_at
            # nothing lost: every pending item is still there, and a sync read may still use the reserve
            client.staff()
            clock.set(today.resume_at)
            next_day = drain(runtime.engine, client, runtime.ledger)
            assert next_day.ok and next_day.stopped == EMPTY and next_day.done == queued - (cap - reserve)
        assert _statuses(runtime.engine) == {"done": queued}
        notes = Counter(t.note for t in sandbox.tenant(tenant).times.values() if t.note.startswith("ts entry"))
        assert len(notes) == queued and set(notes.values()) == {1}  # each exactly once
    finally:
        runtime.close()


@pytest.fixture
def sandbox_config(clock) -> SandboxConfig:
    return SandboxConfig(size="small", seed=5, tenants=1, clock=clock, daily_limit=10_000, minute_limit=60)


def test_cap_minus_reserve_today_the_rest_tomorrow_scaled(sandbox, tenant, clock, warehouse_url, tmp_path):
    """The same rule as the full-size test below, at cap 300 / reserve 20 / 305 queued."""
    settings = settings_for(sandbox, warehouse_url, tmp_path, daily_limit=300, daily_reserve=20)
    _cap_scenario(sandbox, tenant, clock, settings, cap=300, reserve=20, queued=305)


@pytest.mark.serial  # 10,050 sends: alone after the parallel part (a concurrent worker pushed it past 300 s)
@pytest.mark.timeout(900)
@pytest.mark.slow
@pytest.mark.postgres
def test_10050_queued_with_cap_10000_and_reserve_200(sandbox, tenant, clock, postgres_url, tmp_path):
    """Acceptance: 9,800 exported today, 250 the next simulated day, none lost or duplicated."""
    settings = settings_for(sandbox, postgres_url, tmp_path, daily_limit=10_000, daily_reserve=200)
    _cap_scenario(sandbox, tenant, clock, settings, cap=10_000, reserve=200, queued=10_050)
