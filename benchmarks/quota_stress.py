"""Quota stress: N processes share 2 tenants' XPM budgets, with and without the ledger, side by side.

Every process runs one XPM client per tenant against one sandbox, mixing reads (``staff.api/list``,
``task.api/list``) and writes (``client.api/update``) as fast as it can. All of them — and the sandbox
— share one ``ScaledClock`` (wall time x ``--factor``), so a few real seconds are several simulated
minutes with real concurrency: real sockets, real lock waits, real races.

- with the ledger: every call is admitted by ``QuotaLedger`` first (production margin, 1 s);
- without: the client alone, which waits ``Retry-After`` after each 429 (what one process can do).

From the sandbox's request log, per scenario: calls per minute as % of the minute limit, 429s the
sandbox had to send, and the most calls it counted in any 60 s for one tenant (from the log's arrival
stamps; the sandbox counts a moment later, so on a sped-up clock 61 can show where it counted 60).
The sandbox itself never lets more than the limit through: the 429s are the number to watch.

    .venv/bin/python benchmarks/quota_stress.py [--processes 4] [--minutes 3] [--factor 20]
        [--warehouse-url postgresql://postgres@127.0.0.1:5432/postgres]   # default: a temp SQLite file

A Postgres URL names an existing server; a scratch database is created on it and dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MINUTE_LIMIT = 60


class StaticTokens:
    """Tokens issued by the sandbox before the run (they outlive it: 1,800 simulated seconds)."""

    def __init__(self, tokens: dict[str, str]) -> None:
        from xpm_pipeline.secrets import Secret

        self._tokens = {tenant: Secret(token) for tenant, token in tokens.items()}

    def access_token(self, tenant_id: str):
        return self._tokens[tenant_id]

    def force_refresh(self, tenant_id: str, rejected):
        return self._tokens[tenant_id]


def _worker(args: dict, barrier, results) -> None:
    import httpx

    from xpm_pipeline.config import api_base_from
    from xpm_pipeline.quota import QuotaExhausted, QuotaLedger, QuotaLimits
    from xpm_pipeline.warehouse.db import make_engine
    from xpm_pipeline.xpm.client import RetryPolicy, XPMClient
    from xpm_pipeline.xpm.errors import XPMError

    clock = args["clock"]
    observers = []
    engine = None
    if args["ledger"]:
        engine = make_engine(args["warehouse_url"])
        observers = [QuotaLedger(engine, clock=clock, limits=QuotaLimits(minute_limit=MINUTE_LIMIT), max_wait=3600)]
    tokens = StaticTokens(args["tokens"])
    clients = {
        tenant: XPMClient(
            base_url=api_base_from(args["base_url"]), tenant_id=tenant, tokens=tokens, clock=clock,
            observers=observers, retry=RetryPolicy(max_attempts=3, max_rate_wait=3600, max_rate_waits=1000),
            timeout=httpx.Timeout(30.0),
        )
        for tenant in args["tokens"]
    }
    rnd = random.Random(args["seed"])
    barrier.wait()
    end = clock.now() + timedelta(minutes=args["minutes"])
    done = errors = 0
    while clock.now() < end:
        tenant = rnd.choice(list(clients))
        xpm = clients[tenant]
        try:
            if rnd.random() < 0.4:
                xpm.update_client(UUID=args["client_uuids"][tenant], Phone=f"+61 2 {rnd.randrange(10**8):08d}")
            elif rnd.random() < 0.5:
                xpm.staff()
            else:
                xpm.task_list()
            done += 1
        except (XPMError, QuotaExhausted):
            errors += 1
    for xpm in clients.values():
        xpm.close()
    if engine is not None:
        engine.dispose()
    results.put({"done": done, "errors": errors})


def _scenario(name: str, *, ledger: bool, processes: int, minutes: float, factor: float, warehouse_url: str) -> dict:
    from xpm_pipeline.quota import ScaledClock
    from xpm_pipeline.quota.tables import create_quota_tables
    from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
    from xpm_pipeline.warehouse.db import make_engine, write_transaction

    if ledger:
        engine = make_engine(warehouse_url)
        with write_transaction(engine) as conn:
            create_quota_tables(conn)
        engine.dispose()
    clock = ScaledClock(factor)
    config = SandboxConfig(size="small", seed=1, tenants=2, minute_limit=MINUTE_LIMIT, clock=clock)
    with SandboxServer(config, port=0) as sandbox:
        tokens = {tenant: sandbox.issue_token(tenant)["access_token"] for tenant in sandbox.tenant_ids}
        client_uuids = {tenant: next(iter(sandbox.state.tenant(tenant).clients)) for tenant in sandbox.tenant_ids}
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(processes)
        results = ctx.Queue()
        base = {"clock": clock, "ledger": ledger, "warehouse_url": warehouse_url, "tokens": tokens,
                "base_url": sandbox.base_url, "client_uuids": client_uuids, "minutes": minutes}
        procs = [ctx.Process(target=_worker, args=({**base, "seed": seed}, barrier, results))
                 for seed in range(processes)]
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        wall = time.perf_counter() - started
        log = [e for e in sandbox.log_entries() if "/practicemanager/" in e["path"]]
    return _summary(name, log, outcomes, wall, sandbox.tenant_ids)


def _summary(name, log, outcomes, wall, tenant_ids) -> dict:
    counted = [e for e in log if e["counted"]]
    limited = [e for e in log if e["status"] == 429]
    busiest = 0
    for tenant in tenant_ids:
        times = sorted(datetime.fromisoformat(e["at"]) for e in counted if e["tenant_id"] == tenant)
        first = 0
        for i, at in enumerate(times):
            while times[first] <= at - timedelta(seconds=60):
                first += 1
            busiest = max(busiest, i - first + 1)
    times = sorted(datetime.fromisoformat(e["at"]) for e in counted)
    span_min = max((times[-1] - times[0]).total_seconds() / 60, 1e-9) if times else 1e-9
    per_tenant_min = len(counted) / len(tenant_ids) / span_min
    return {
        "scenario": name,
        "calls": len(counted),
        "sim_minutes": span_min,
        "pct_of_limit": 100 * per_tenant_min / MINUTE_LIMIT,
        "429s": len(limited),
        "busiest_60s": busiest,
        "gave_up": sum(o["errors"] for o in outcomes),
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=3.0, help="simulated minutes per scenario")
    parser.add_argument("--factor", type=float, default=20.0, help="simulated seconds per real second")
    parser.add_argument("--warehouse-url", default=None, help="Postgres server URL (default: temp SQLite)")
    args = parser.parse_args(argv)

    scratch_db = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.warehouse_url:
            from sqlalchemy import create_engine, text
            from sqlalchemy.engine import make_url

            base = make_url(args.warehouse_url).set(drivername="postgresql+psycopg")
            scratch_db = f"xpm_quota_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(base, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{scratch_db}"'))
            url = base.set(database=scratch_db).render_as_string(hide_password=False)
        else:
            url = f"sqlite:///{Path(tmp) / 'quota.db'}"
        try:
            rows = [
                _scenario(name, ledger=ledger, processes=args.processes, minutes=args.minutes, factor=args.factor,
                          warehouse_url=url)
                for name, ledger in (("with ledger", True), ("client only", False))
            ]
        finally:
            if scratch_db:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch_db}" WITH (FORCE)'))
                admin.dispose()

    dialect = "postgresql" if args.warehouse_url else "sqlite"
    print(f"{args.processes} processes x 2 tenants, minute limit {MINUTE_LIMIT}, clock x{args.factor:g}, "
          f"ledger on {dialect}")
    print(f"{'scenario':<12} {'calls':>6} {'sim min':>8} {'% of limit':>11} {'429s':>6} {'max/60s':>8} "
          f"{'gave up':>8} {'wall s':>7}")
    for r in rows:
        print(f"{r['scenario']:<12} {r['calls']:>6} {r['sim_minutes']:>8.2f} {r['pct_of_limit']:>10.1f}% "
              f"{r['429s']:>6} {r['busiest_60s']:>8} {r['gave_up']:>8} {r['wall_s']:>7.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
