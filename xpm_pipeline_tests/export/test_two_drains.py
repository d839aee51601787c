"""Two drain processes at once on one tenant's queue (issue acceptance): no item sent twice, no 60-second
window over XPM's limit, no 429, and both processes really shared the work.

Time: a ``ScaledClock`` (wall time x ``FACTOR``, the same origin in every process, the sandbox included),
so the production windows run — 60 calls in any 60 s — in a fraction of the real time, with real
concurrency between the two processes (real lock waits, real ``SKIP LOCKED`` races).
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import date, datetime

from sqlalchemy import select

from xpm_pipeline.config import Settings
from xpm_pipeline.export import enqueue
from xpm_pipeline.export import tables as T
from xpm_pipeline.quota import ScaledClock
from xpm_pipeline.runtime import open_runtime
from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
from xpm_pipeline.secrets import TokenCipher
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.xpm.connect import connect
from xpm_pipeline_tests.export.support import max_in_any_minute, client_updates, job_updates, task_updates, timesheet_creates

FACTOR = 30.0
ITEMS = 240  # four simulated minutes at the limit


def _env(sandbox: SandboxServer, url: str, home, key: str) -> dict:
    return {
        "XPM_API_BASE_URL": sandbox.base_url, "XPM_CLIENT_ID": sandbox.client_id,
        "XPM_CLIENT_SECRET": sandbox.client_secret, "XPM_TOKEN_KEY": key, "XPM_WAREHOUSE_URL": url,
        "XPM_HOME": str(home),
    }


def _drain_process(env: dict, clock: ScaledClock, tenant: str, barrier, results) -> None:
    from xpm_pipeline.export.worker import drain

    runtime = open_runtime(Settings.from_env(env), clock=clock)
    try:
        with runtime.client(tenant) as client:
            barrier.wait()
            report = drain(runtime.engine, client, runtime.ledger, max_wait=3600)
        results.put({"worker": report.worker, "sent": report.sent, "done": report.done, "error": report.error,
                     "stopped": report.stopped})
    finally:
        runtime.close()


def test_two_drain_processes_share_the_queue_within_the_limit(warehouse_url, tmp_path):
    clock = ScaledClock(FACTOR)
    with SandboxServer(SandboxConfig(size="small", seed=9, tenants=1, clock=clock), port=0) as sandbox:
        tenant = sandbox.tenant_ids[0]
        env = _env(sandbox, warehouse_url, tmp_path / "home", TokenCipher.generate_key())
        runtime = open_runtime(Settings.from_env(env), clock=clock)
        try:
            connect(runtime.tokens, auto_consent=True)
            changes = job_updates(sandbox, tenant, 20) + client_updates(sandbox, tenant, 20) + task_updates(
                sandbox, tenant, 20)
            changes += timesheet_creates(sandbox, tenant, ITEMS - len(changes), date(2026, 11, 23), prefix="two")
            enqueue(runtime.engine, tenant, changes, clock=clock)
        finally:
            runtime.close()
        sandbox.request_log.clear()

        context = multiprocessing.get_context("spawn")
        barrier, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_drain_process, args=(env, clock, tenant, barrier, results))
                   for _ in range(2)]
        for worker in workers:
            worker.start()
        reports = [results.get(timeout=600) for _ in workers]
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0

        assert all(r["error"] is None for r in reports), reports
        assert sum(r["sent"] for r in reports) == ITEMS  # no item sent twice ...
        assert all(r["sent"] > ITEMS // 10 for r in reports), reports  # ... and both shared the work
        writes = [e for e in sandbox.request_log if e["method"] != "GET" and "/practicemanager/" in e["path"]]
        assert len(writes) == ITEMS and all(e["status"] == 200 for e in writes)  # each once, no 429
        assert not [e for e in sandbox.request_log if e["status"] == 429]
        assert max_in_any_minute([datetime.fromisoformat(e["at"]) for e in writes]) <= 60

        notes = Counter(t.note for t in sandbox.tenant(tenant).times.values() if t.note.startswith("two entry"))
        assert len(notes) == ITEMS - 60 and set(notes.values()) == {1}
        engine = make_engine(warehouse_url)
        try:
            with engine.connect() as conn:
                statuses = Counter(conn.execute(select(T.queue.c.status)).scalars())
                senders = Counter(conn.execute(
                    select(T.log.c.worker).where(T.log.c.event == "sending")).scalars())
            assert statuses == {"done": ITEMS}
            assert len(senders) == 2 and sum(senders.values()) == ITEMS
        finally:
            engine.dispose()
