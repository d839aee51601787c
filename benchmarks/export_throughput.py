"""Export throughput: two drain processes against the sandbox for 10 simulated minutes, side by side with the
naive way (two processes calling the XPM client in a loop, no ledger).

More changes are queued than 10 minutes at 60 calls a minute can send, so the limit is what binds. All
processes and the sandbox share one ``ScaledClock`` (wall time x ``--factor``): the production windows
run with real concurrency in a fraction of the real time. From the sandbox's request log:

- calls per minute as a % of the limit, at the steady rate: writes XPM accepted after the first minute
  (which starts with a whole window of 60 at once) / ((minutes - 1) x 60); target >= 98%;
- 429s XPM had to send; target 0;
- the most writes XPM counted in any 60 s; must be <= 60.

    .venv/bin/python benchmarks/export_throughput.py [--minutes 10] [--factor 20] [--items 900]
        [--warehouse-url postgresql://postgres@127.0.0.1:5432/postgres]   # default: a temp SQLite file
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._child import report_checks  # noqa: E402

MINUTE_LIMIT = 60
PROCESSES = 2


def _ours(env: dict, clock, tenant: str, minutes: float, barrier, results) -> None:
    from xpm_pipeline.config import Settings
    from xpm_pipeline.export.worker import drain
    from xpm_pipeline.runtime import open_runtime

    runtime = open_runtime(Settings.from_env(env), clock=clock)
    with runtime.client(tenant) as client:
        barrier.wait()
        report = drain(runtime.engine, client, runtime.ledger, until=clock.now() + timedelta(minutes=minutes),
                       max_wait=3600)
    runtime.close()
    results.put({"done": report.done, "error": report.error})


def _naive(env: dict, clock, tenant: str, minutes: float, changes: list[dict], barrier, results) -> None:
    """What a script would do: take changes in order and call XPM; the client waits out each 429."""
    from xpm_pipeline.config import Settings
    from xpm_pipeline.export.changes import KINDS, make_change
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.xpm.client import XPMClient
    from xpm_pipeline.xpm.errors import XPMError

    runtime = open_runtime(Settings.from_env(env), clock=clock)
    client = XPMClient(base_url=runtime.settings.api_base_url, tenant_id=tenant, tokens=runtime.tokens, clock=clock)
    barrier.wait()
    end = clock.now() + timedelta(minutes=minutes)
    done = 0
    for change in changes:
        if clock.now() >= end:
            break
        spec = KINDS[(change["kind"], change["op"])]
        try:
            client.write(spec.write_op, dict(make_change(change).fields))
            done += 1
        except XPMError:
            pass
    client.close()
    runtime.close()
    results.put({"done": done, "error": None})


def _changes(sandbox, tenant: str, items: int) -> list[dict]:
    from xpm_pipeline_tests.export.support import client_updates, job_updates, task_updates, timesheet_creates

    changes = job_updates(sandbox, tenant, 20) + client_updates(sandbox, tenant, 20) + task_updates(sandbox, tenant, 20)
    return changes + timesheet_creates(sandbox, tenant, items - len(changes), date(2026, 11, 23), prefix="bench")


def _scenario(name: str, url: str, *, minutes: float, factor: float, items: int, home: Path) -> dict:
    from xpm_pipeline.config import Settings
    from xpm_pipeline.export import enqueue
    from xpm_pipeline.quota import ScaledClock
    from xpm_pipeline.runtime import open_runtime
    from xpm_pipeline.sandbox import SandboxConfig, SandboxServer
    from xpm_pipeline.secrets import TokenCipher
    from xpm_pipeline.xpm.connect import connect

    clock = ScaledClock(factor)
    config = SandboxConfig(size="small", seed=4, tenants=1, minute_limit=MINUTE_LIMIT, clock=clock)
    with SandboxServer(config, port=0) as sandbox:
        tenant = sandbox.tenant_ids[0]
        env = {"XPM_API_BASE_URL": sandbox.base_url, "XPM_CLIENT_ID": sandbox.client_id,
               "XPM_CLIENT_SECRET": sandbox.client_secret, "XPM_TOKEN_KEY": TokenCipher.generate_key(),
               "XPM_WAREHOUSE_URL": url, "XPM_HOME": str(home)}
        runtime = open_runtime(Settings.from_env(env), clock=clock)
        connect(runtime.tokens, auto_consent=True)
        changes = _changes(sandbox, tenant, items)
        if name == "ours":
            enqueue(runtime.engine, tenant, changes, clock=clock)
        runtime.close()
        sandbox.request_log.clear()
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
        if name == "ours":
            targets = [(_ours, (env, clock, tenant, minutes)) for _ in range(PROCESSES)]
        else:
            halves = [changes[n::PROCESSES] for n in range(PROCESSES)]
            targets = [(_naive, (env, clock, tenant, minutes, half)) for half in halves]
        procs = [ctx.Process(target=fn, args=(*args, barrier, results)) for fn, args in targets]
        started = time.perf_counter()
        for proc in procs:
            proc.start()
        outcomes = _collect(procs, results)
        wall = time.perf_counter() - started
        log = [e for e in sandbox.log_entries() if "/practicemanager/" in e["path"] and e["method"] != "GET"]
    ok = sorted(datetime.fromisoformat(e["at"]) for e in log if e["status"] == 200)
    counted = sorted(datetime.fromisoformat(e["at"]) for e in log if e["counted"])
    # The steady rate: the first minute starts with a full window (60 at once), so it is left out.
    steady = [t for t in ok if ok and t >= ok[0] + timedelta(seconds=60)]
    return {
        "scenario": name,
        "accepted": len(ok),
        "pct": 100 * len(steady) / ((minutes - 1) * MINUTE_LIMIT),
        "429s": sum(1 for e in log if e["status"] == 429),
        "max60": _busiest(counted),
        "per_process": [o["done"] for o in outcomes],
        "errors": [o["error"] for o in outcomes if o["error"]],
        "wall": wall,
    }


def _collect(procs, results) -> list[dict]:
    """Each process's result; a process that died without one is an error, not a hang."""
    import queue

    outcomes: list[dict] = []
    while len(outcomes) < len(procs):
        try:
            outcomes.append(results.get(timeout=2))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a benchmark process died (exit code {dead[0].exitcode})") from None
    for proc in procs:
        proc.join(60)
    return outcomes


def _busiest(times: list[datetime]) -> int:
    best, first = 0, 0
    for i, at in enumerate(times):
        while times[first] <= at - timedelta(seconds=60):
            first += 1
        best = max(best, i - first + 1)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
    parser.add_argument("--factor", type=float, default=20.0, help="simulated seconds per real second")
    parser.add_argument("--items", type=int, default=900, help="changes queued (more than fit)")
    parser.add_argument("--warehouse-url", default=None, help="Postgres server URL (default: temp SQLite)")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("ours", "naive"):
            url, drop = _warehouse(args.warehouse_url, Path(tmp) / f"{name}.db")
            try:
                rows.append(_scenario(name, url, minutes=args.minutes, factor=args.factor, items=args.items,
                                      home=Path(tmp) / name))
            finally:
                drop()
    dialect = "postgresql" if args.warehouse_url else "sqlite"
    print(f"{PROCESSES} processes, 1 tenant, {args.minutes:g} simulated minutes, limit {MINUTE_LIMIT}/min, "
          f"clock x{args.factor:g}, {args.items} changes queued, ledger on {dialect}")
    print(f"{'scenario':<8} {'accepted':>9} {'% of limit':>11} {'429s':>6} {'max/60s':>8} {'per process':>14} "
          f"{'wall s':>7}")
    for r in rows:
        print(f"{r['scenario']:<8} {r['accepted']:>9} {r['pct']:>10.1f}% {r['429s']:>6} {r['max60']:>8} "
              f"{'/'.join(map(str, r['per_process'])):>14} {r['wall']:>7.1f}")
    ours = rows[0]
    return report_checks([
        ("ours: calls per minute >= 98% of the limit", ours["pct"] >= 98.0, f"{ours['pct']:.1f}%"),
        ("ours: zero 429s", ours["429s"] == 0, str(ours["429s"])),
        ("ours: <= 60 calls in any 60 s", ours["max60"] <= MINUTE_LIMIT, str(ours["max60"])),
        ("ours: both processes sent", all(n > 0 for n in ours["per_process"]), str(ours["per_process"])),
        ("ours: no drain error", not ours["errors"], "; ".join(ours["errors"]) or "none"),
    ])


def _warehouse(server_url: str | None, sqlite_path: Path):
    """A scratch warehouse: a temp SQLite file, or a new database on the given Postgres server."""
    if not server_url:
        return f"sqlite:///{sqlite_path}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"xpm_export_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


if __name__ == "__main__":
    raise SystemExit(main())
