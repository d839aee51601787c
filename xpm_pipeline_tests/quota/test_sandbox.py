"""The ledger as the XPM client's observer against the sandbox, one ``ManualClock`` shared by client,
ledger and sandbox: the ledger's waits move the sandbox's time, so minutes pass in a second.

The sandbox enforces XPM's limits exactly (``sandbox/limits.py``); these tests show that going through
the ledger, the sandbox never has to answer 429 — even at the exact boundary of the sliding minute
(margin 0), and even when XPM's daily cap is lower than the configured one.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import httpx
import pytest

from xpm_pipeline.config import api_base_from
from xpm_pipeline.quota import QuotaExhausted, QuotaLedger, QuotaLimits
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import Secret
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.xpm.client import RetryPolicy, XPMClient
from xpm_pipeline.xpm.errors import XPMRateLimited

from .conftest import START


class SandboxTokens:
    def __init__(self, sandbox: SandboxServer, tenant_id: str) -> None:
        self.sandbox, self.tenant_id = sandbox, tenant_id
        self.current = Secret(sandbox.issue_token(tenant_id)["access_token"])

    def access_token(self, tenant_id: str) -> Secret:
        return self.current

    def force_refresh(self, tenant_id: str, rejected: Secret) -> Secret:
        self.current = Secret(self.sandbox.issue_token(self.tenant_id)["access_token"])
        return self.current


def sandbox_with(clock, **limits) -> SandboxServer:
    config = SandboxConfig(size="small", seed=1, tenants=2, minute_limit=60, clock=clock, **limits)
    return SandboxServer(config, port=0)


def client(sandbox, tenant, clock, ledger) -> XPMClient:
    return XPMClient(
        base_url=api_base_from(sandbox.base_url), tenant_id=tenant, tokens=SandboxTokens(sandbox, tenant),
        clock=clock, observers=[ledger], retry=RetryPolicy(max_attempts=2), timeout=httpx.Timeout(5.0),
    )


def xpm_requests(sandbox) -> list[dict]:
    return [e for e in sandbox.request_log if "/practicemanager/" in e["path"]]


def busiest_minute(entries) -> int:
    times = sorted(datetime.fromisoformat(e["at"]) for e in entries if e["counted"])
    return max(sum(1 for other in times[: i + 1] if other > at - timedelta(seconds=60)) for i, at in enumerate(times))


def test_reads_and_writes_of_two_tenants_never_get_a_429(engine, clock):
    ledger = QuotaLedger(engine, clock=clock, margin=0.0, limits=QuotaLimits(minute_limit=60))
    with sandbox_with(clock) as sandbox:
        clients = {tenant: client(sandbox, tenant, clock, ledger) for tenant in sandbox.tenant_ids}
        uuids = {t: c.clients(detailed=False)["client"].column("uuid")[0] for t, c in clients.items()}
        for i in range(250):
            tenant = sandbox.tenant_ids[i % 2]
            xpm = clients[tenant]
            if i % 3 == 0:
                xpm.update_client(UUID=uuids[tenant], Phone=f"+61 2 9000 {i:04d}")
            elif i % 3 == 1:
                xpm.staff()
            else:
                xpm.task_list()
        for xpm in clients.values():
            xpm.close()
        log = xpm_requests(sandbox)
    statuses = Counter(e["status"] for e in log)
    assert statuses == {200: 252}, statuses  # zero 429s
    assert clock.now() - START >= timedelta(minutes=2)  # the minute limit really was in play
    for tenant in sandbox.tenant_ids:
        mine = [e for e in log if e["tenant_id"] == tenant]
        assert busiest_minute(mine) == 60  # up to the limit, exactly
        usage = ledger.usage(tenant)
        assert usage.day_calls == len(mine) == 126
        assert usage.server_day_remaining == 10_000 - 126  # XPM's count and ours agree
    assert ledger.usage(sandbox.tenant_ids[0]).day_writes == 42


def test_xpms_lower_daily_cap_stops_writes_at_the_reserve_without_a_429(engine, clock):
    ledger = QuotaLedger(engine, clock=clock, margin=0.0, limits=QuotaLimits(daily_limit=10_000, daily_reserve=10))
    with sandbox_with(clock, daily_limit=40) as sandbox:  # the tenant's plan allows 40 a day, not 10,000
        tenant = sandbox.tenant_ids[0]
        xpm = client(sandbox, tenant, clock, ledger)
        uuid = xpm.clients(detailed=False)["client"].column("uuid")[0]
        writes = 0
        with pytest.raises(QuotaExhausted) as caught:
            while True:
                xpm.update_client(UUID=uuid, Phone=f"+61 2 9000 {writes:04d}")
                writes += 1
        assert writes == 29  # 1 read + 29 writes: XPM says 10 remain, the reserve
        assert caught.value.reason == "server_day" and caught.value.direction == "write"
        assert caught.value.available_at == START + timedelta(days=1)  # when XPM's first call leaves its day
        reads = 0
        with pytest.raises(QuotaExhausted):
            while True:
                xpm.staff()
                reads += 1
        assert reads == 10  # syncs keep the reserve
        xpm.close()
        log = xpm_requests(sandbox)
    assert {e["status"] for e in log} == {200} and len(log) == 40


def test_a_429_blocks_the_tenant_for_another_process_too(engine, clock):
    with sandbox_with(clock) as sandbox:
        tenant = sandbox.tenant_ids[0]
        sandbox.add_fault(path="staff.api/list", kind="rate_limit", retry_after=400, problem="minute")
        first = client(sandbox, tenant, clock, QuotaLedger(engine, clock=clock, margin=0.0))
        with pytest.raises(XPMRateLimited):  # 400 s is longer than the client sleeps on a 429
            first.staff()
        other_process = make_engine(engine.url.render_as_string(hide_password=False))
        impatient = client(sandbox, tenant, clock, QuotaLedger(other_process, clock=clock, margin=0.0))
        with pytest.raises(QuotaExhausted) as caught:  # default max_wait 300 s < 400 s
            impatient.task_list()
        assert caught.value.available_at == START + timedelta(seconds=400)
        patient = client(sandbox, tenant, clock, QuotaLedger(other_process, clock=clock, margin=0.0, max_wait=600))
        patient.task_list()
        assert clock.now() == START + timedelta(seconds=400)
        for xpm in (first, impatient, patient):
            xpm.close()
        other_process.dispose()
        log = xpm_requests(sandbox)
    assert [(e["status"], e["at"]) for e in log] == [
        (429, START.isoformat()),
        (200, (START + timedelta(seconds=400)).isoformat()),
    ]
