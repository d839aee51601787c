"""Four OS processes (two threads each) hammer one tenant's ledger on PostgreSQL.

Time: a ``ScaledClock`` (wall time x 45, same origin in every process), so the test runs two
simulated minutes in under three real seconds with real concurrency: real lock waits, real races
between processes, which a ``ManualClock`` (one process) cannot give. The clock is sped up rather
than the limit scaled down, so the production windows (60 s, 24 h) are what runs. Eight callers
at up to ~2 simulated seconds a call want several times the limit, so the limit is what binds.
``margin=0`` makes the check exact: every admission time is read under the tenant lock, so the
stored times must satisfy the limits exactly.

Checked afterwards, from the ledger rows: no 60-second window over the limit, never more than five
in flight, no admission while a 429 block was in force, and every call a process was admitted for
recorded exactly once, with its outcome.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from xpm_pipeline.quota import QuotaLedger, QuotaLimits, ScaledClock
from xpm_pipeline.quota import tables as T
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.xpm.client import CallInfo, CallResult

pytestmark = pytest.mark.postgres

TENANT = "tenant-shared"
PROCESSES, THREADS = 4, 2
FACTOR = 45.0
SIM_MINUTES = 2
MINUTE_LIMIT, CONCURRENT = 60, 5
RETRY_AFTER = 5.0


def _hammer(url: str, clock: ScaledClock, seed: int, barrier, results) -> None:
    engine = make_engine(url)
    ledger = QuotaLedger(
        engine, clock=clock, margin=0.0, max_wait=3600, poll_interval=0.5,
        limits=QuotaLimits(minute_limit=MINUTE_LIMIT, concurrent_limit=CONCURRENT),
    )
    barrier.wait()
    end = clock.now() + timedelta(minutes=SIM_MINUTES)
    admitted: list[int] = []
    lock = threading.Lock()

    def caller(k: int) -> None:
        rnd = random.Random(seed * 100 + k)
        while clock.now() < end:
            write = rnd.random() < 0.5
            call = CallInfo(TENANT, "PUT" if write else "GET", "job.api/update" if write else "job.api/current",
                            "write" if write else "read", "job")
            ledger.before_call(call)
            call_id = ledger.admission_for(call).call_id
            with lock:
                admitted.append(call_id)
            clock.sleep(rnd.uniform(0.0, 2.0))  # the request takes up to two simulated seconds
            if rnd.random() < 0.01:
                result = CallResult(status_code=429, retry_after=RETRY_AFTER, problem="minute")
            else:
                result = CallResult(status_code=200)
            ledger.after_call(call, result)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.dispose()
    results.put(admitted)


@pytest.fixture
def postgres_quota(quota_postgres_url):
    engine = make_engine(quota_postgres_url)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE xpm_quota_ledger, xpm_quota_state, xpm_quota_limits RESTART IDENTITY"))
    yield quota_postgres_url, engine
    engine.dispose()


def test_processes_sharing_a_tenant_never_exceed_its_limits(postgres_quota):
    quota_url, engine = postgres_quota
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    clock = ScaledClock(FACTOR)
    procs = [ctx.Process(target=_hammer, args=(quota_url, clock, seed, barrier, results)) for seed in range(PROCESSES)]
    for proc in procs:
        proc.start()
    admitted = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0

    with engine.connect() as conn:
        rows = conn.execute(select(T.ledger).order_by(T.ledger.c.admitted_at, T.ledger.c.call_id)).all()
    ids = [call_id for per_process in admitted for call_id in per_process]
    assert len(ids) == len(set(ids)) == len(rows)  # every admitted call recorded exactly once
    assert set(ids) == {r.call_id for r in rows}
    assert all(r.outcome in ("ok", "rate_limited") and r.finished_at is not None for r in rows)

    minute = timedelta(seconds=60)
    busiest = max(sum(1 for other in rows if row.admitted_at - minute < other.admitted_at <= row.admitted_at)
                  for row in rows)
    assert busiest <= MINUTE_LIMIT
    # the limit, not the callers, was what held them back: the busiest minute was full
    assert busiest == MINUTE_LIMIT
    assert len(rows) >= MINUTE_LIMIT * (SIM_MINUTES - 1)

    by_id = sorted(rows, key=lambda r: r.call_id)  # admission order (serialized by the lock)
    most_in_flight = 0
    for i, row in enumerate(by_id):
        flying = sum(1 for other in by_id[:i] if other.finished_at > row.admitted_at) + 1
        most_in_flight = max(most_in_flight, flying)
    assert most_in_flight <= CONCURRENT
    print(f"\n{len(rows)} calls in {SIM_MINUTES} simulated minutes from {PROCESSES}x{THREADS} callers; "
          f"busiest 60 s: {busiest}/{MINUTE_LIMIT}; most in flight: {most_in_flight}/{CONCURRENT}; "
          f"429 blocks: {sum(1 for r in rows if r.outcome == 'rate_limited')}")

    for blocker in (r for r in rows if r.outcome == "rate_limited"):
        until = blocker.finished_at + timedelta(seconds=RETRY_AFTER)
        assert not [r for r in rows if blocker.finished_at < r.admitted_at < until]
