"""Bulk load of 1,000,000 time entries into PostgreSQL: ours against the obvious ways, side by side.

Every method loads the same generated rows (the TIMESHEET registry columns, realistic values, some
None) into a scratch database created for the run and dropped afterwards. Each figure is the median of
``--repeat`` runs; a CHECKPOINT precedes every timed run so all methods start with the same WAL state
(full-page images after a checkpoint are part of a real load's cost).

    .venv/bin/python benchmarks/load_bench.py [--url postgresql://...] [--rows 1000000] [--repeat 3]

Methods (ratios are to the floor):

- floor: psycopg 3 ``COPY ... FROM STDIN`` with ``write_row`` (text format, the documented plain way) of
  the same rows into an unindexed plain table, serialisation included.
- raw binary COPY: the same with ``set_types`` (binary format) - shown for reference.
- pandas ``to_sql`` (method=None and method="multi") into the real, indexed table, from a DataFrame built
  beforehand (untimed). method=None runs at full size (about a minute a run); method="multi" would take
  ten minutes a run, so it is measured on a ``--multi-rows`` sample and scaled linearly (said so in the
  output; index upkeep grows faster than linearly, so the scaled figure flatters it).
- obvious staging: text COPY into a TEMP table, then ``INSERT ... SELECT ... ON CONFLICT DO UPDATE ...
  WHERE (target) IS DISTINCT FROM (excluded)``; first load into the empty table, and an identical reload.
- ours: ``xpm_pipeline.warehouse.load.load_entity`` fed a parse ``Rows``; first load into the empty table,
  identical reload, a reload with 1% of rows edited, and a second tenant's first load into the
  now non-empty table (indexes cannot be deferred there).

WAL bytes are ``pg_wal_lsn_diff`` of ``pg_current_wal_lsn()`` around each run: cluster-wide, so other
activity on the same server shows up in them.

Targets (printed PASS/FAIL): ours first load <= 3x the floor; identical reload <= 2.5x the floor with
WAL under 5% of our first load's; ours >= 5x faster than ``to_sql`` (method=None).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from xpm_pipeline.entities import TIMESHEET  # noqa: E402
from xpm_pipeline.warehouse.control import metadata  # noqa: E402
from xpm_pipeline.warehouse.db import make_engine  # noqa: E402
from xpm_pipeline.warehouse.load import load_entity  # noqa: E402
from xpm_pipeline.warehouse.schema import table_for  # noqa: E402
from xpm_pipeline.xpm.parse import Rows  # noqa: E402

TABLE = table_for(TIMESHEET)
COLUMNS = list(TIMESHEET.column_names)
TENANT, SECOND_TENANT = "bench-tenant-a", "bench-tenant-b"
SYNCED = datetime(2026, 3, 1, tzinfo=timezone.utc)


# --- data ----------------------------------------------------------------------------------------------


def generate(count: int, seed: int = 7) -> Rows:
    """Time entries as a parse ``Rows``: 150 staff, 400 task types, 4,000 jobs, 3 years of dates."""
    rng = random.Random(seed)

    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    staff = [new_uuid() for _ in range(150)]
    tasks = [(new_uuid(), f"Task type {i}") for i in range(400)]
    start = date(2023, 3, 1)
    rows = Rows(TIMESHEET)
    data = rows.data
    for i in range(count):
        task_uuid, task_name = rng.choice(tasks)
        ranged = rng.random() < 0.2
        data["uuid"].append(new_uuid())
        data["job_number"].append(f"J{rng.randrange(1, 4000):06d}")
        data["task_uuid"].append(task_uuid if rng.random() < 0.97 else None)
        data["task_name"].append(task_name)
        data["staff_uuid"].append(rng.choice(staff))
        data["entry_date"].append(start + timedelta(days=rng.randrange(1460)))
        data["minutes"].append(rng.choice((15, 30, 45, 60, 90, 120, -30)))
        note = f"Worked on reconciliation item {i} for the client file,\treviewed bank feeds"
        data["note"].append(note if rng.random() < 0.9 else None)
        data["billable"].append(rng.random() < 0.8)
        data["start_time"].append("09:00" if ranged else None)
        data["end_time"].append("10:30" if ranged else None)
        data["invoice_task_uuid"].append(new_uuid() if rng.random() < 0.3 else None)
    return rows


def edited(rows: Rows, share: float, flip: int) -> Rows:
    """A copy with ``share`` of the rows' minutes changed (``flip`` alternates the edit)."""
    copy = Rows(TIMESHEET, {name: list(values) for name, values in rows.data.items()})
    step = int(1 / share)
    minutes = copy.data["minutes"]
    for i in range(0, len(minutes), step):
        minutes[i] += 1 + flip
    return copy


# --- harness -------------------------------------------------------------------------------------------


class Scratch:
    """A scratch database with the real schema; psycopg connection + SQLAlchemy engine onto it."""

    def __init__(self, admin_url: str) -> None:
        self.admin = psycopg.connect(admin_url, autocommit=True)
        self.name = f"xpm_load_bench_{os.getpid()}"
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        url = make_url(admin_url).set(drivername="postgresql", database=self.name)
        self.dsn = url.render_as_string(hide_password=False)
        self.conn = psycopg.connect(self.dsn, autocommit=True)
        self.engine = make_engine(self.dsn)
        self.reset_table()

    def reset_table(self) -> None:
        """The real entity table, empty, with its primary key and indexes."""
        self.conn.execute(f"DROP TABLE IF EXISTS {TABLE.name}")
        metadata.create_all(self.engine, tables=[TABLE])
        self.conn.execute(f"ANALYZE {TABLE.name}")

    def reset_plain(self) -> None:
        self.conn.execute("DROP TABLE IF EXISTS plain_copy")
        self.conn.execute(f"CREATE TABLE plain_copy AS SELECT {', '.join(COLUMNS)} FROM {TABLE.name} WITH NO DATA")

    def lsn(self) -> str:
        return self.conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]

    def wal_since(self, lsn: str) -> int:
        return int(self.conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn,)).fetchone()[0])

    def close(self) -> None:
        self.engine.dispose()
        self.conn.close()
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()


class Result:
    def __init__(self, label: str, seconds: float, wal: int, note: str = "") -> None:
        self.label, self.seconds, self.wal, self.note = label, seconds, wal, note


def measure(db: Scratch, label: str, run: Callable[[int], None], prepare: Callable[[int], None], repeat: int,
            scale: float = 1.0, note: str = "") -> Result:
    """Median time and WAL of ``run(i)``; ``prepare(i)`` (untimed) resets state before each run."""
    times, wals = [], []
    for i in range(repeat):
        prepare(i)
        db.conn.execute("CHECKPOINT")
        lsn = db.lsn()
        started = time.perf_counter()
        run(i)
        times.append(time.perf_counter() - started)
        wals.append(db.wal_since(lsn))
    result = Result(label, statistics.median(times) * scale, int(statistics.median(wals) * scale), note)
    shown = ", ".join(f"{t * scale:.2f}" for t in times)
    print(f"  {label:<44} {result.seconds:7.2f} s  (runs: {shown})", flush=True)
    return result


# --- methods -------------------------------------------------------------------------------------------


def copy_floor(db: Scratch, rows: Rows, binary: bool) -> None:
    columns = [rows.data[name] for name in COLUMNS]
    with db.conn.transaction(), db.conn.cursor() as cursor:
        fmt = " (FORMAT BINARY)" if binary else ""
        with cursor.copy(f"COPY plain_copy ({', '.join(COLUMNS)}) FROM STDIN{fmt}") as copy:
            if binary:
                copy.set_types(["varchar", "text", "varchar", "text", "varchar", "date", "int4", "text", "bool",
                                "text", "text", "varchar"])
            for row in zip(*columns):
                copy.write_row(row)


def obvious_staging(db: Scratch, rows: Rows, tenant: str, synced_at: datetime) -> None:
    business = [name for name in COLUMNS if name not in TIMESHEET.key]
    columns = [rows.data[name] for name in COLUMNS]
    column_list = ", ".join(COLUMNS)
    with db.conn.transaction(), db.conn.cursor() as cursor:
        cursor.execute(f"CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT {column_list} FROM {TABLE.name} WITH NO DATA")
        with cursor.copy(f"COPY stage ({column_list}) FROM STDIN") as copy:
            for row in zip(*columns):
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO {TABLE.name} (tenant_id, {column_list}, _synced_at) "
            f"SELECT %s, {column_list}, %s FROM stage "
            f"ON CONFLICT (tenant_id, uuid) DO UPDATE SET "
            + ", ".join(f"{n} = EXCLUDED.{n}" for n in business)
            + ", _synced_at = EXCLUDED._synced_at, _deleted_at = NULL "
            f"WHERE ({', '.join(f'{TABLE.name}.{n}' for n in business)}, {TABLE.name}._deleted_at IS NOT NULL) "
            f"IS DISTINCT FROM ({', '.join(f'EXCLUDED.{n}' for n in business)}, false)",
            (tenant, synced_at),
        )


def to_sql(db: Scratch, frame, method: str | None, chunksize: int | None) -> None:
    frame.to_sql(TABLE.name, db.engine, if_exists="append", index=False, method=method, chunksize=chunksize)


def ours(db: Scratch, rows: Rows, tenant: str, synced_at: datetime):
    return load_entity(db.engine, TIMESHEET, tenant, rows, synced_at=synced_at)


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("XPM_TEST_POSTGRES_URL"), help="admin Postgres URL")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--to-sql-rows", type=int, default=None, help="sample for to_sql (method=None; default: all)")
    parser.add_argument("--multi-rows", type=int, default=10_000, help="sample for to_sql (method='multi')")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("give --url or set XPM_TEST_POSTGRES_URL")

    started = time.perf_counter()
    rows = generate(args.rows)
    print(f"generated {len(rows):,} time entries in {time.perf_counter() - started:.1f} s", flush=True)
    db = Scratch(args.url)
    try:
        results = run_all(db, rows, args)
    finally:
        db.close()
    report(results, args)
    return 0


def _sample_frame(rows: Rows, size: int):
    """The first ``size`` rows as the DataFrame to_sql needs (built untimed), and the scale-up factor."""
    sample = min(size, len(rows))
    frame = Rows(TIMESHEET, {k: v[:sample] for k, v in rows.data.items()}).to_frame()
    frame.insert(0, "tenant_id", TENANT)
    frame["_synced_at"] = SYNCED
    scale = len(rows) / sample
    return frame, scale, (f"measured on {sample:,} rows, x{scale:g}" if scale != 1 else "")


def run_all(db: Scratch, rows: Rows, args) -> dict[str, Result]:
    repeat, n = args.repeat, len(rows)
    results: dict[str, Result] = {}
    nothing = lambda i: None  # noqa: E731

    results["floor"] = measure(db, "floor: COPY write_row, unindexed", lambda i: copy_floor(db, rows, False),
                               lambda i: db.reset_plain(), repeat)
    results["floor_binary"] = measure(db, "raw binary COPY, unindexed", lambda i: copy_floor(db, rows, True),
                                      lambda i: db.reset_plain(), repeat)

    for key, label, method, size in (
        ("to_sql", "pandas to_sql (method=None)", None, args.to_sql_rows or len(rows)),
        ("to_sql_multi", "pandas to_sql (method='multi')", "multi", args.multi_rows),
    ):
        frame, scale, note = _sample_frame(rows, size)
        chunksize = None if method is None else 65_535 // len(frame.columns)  # PostgreSQL's parameter limit
        results[key] = measure(db, label, lambda i, f=frame, m=method, c=chunksize: to_sql(db, f, m, c),
                               lambda i: db.reset_table(), repeat, scale, note)

    results["obvious_first"] = measure(
        db, "obvious staging + ON CONFLICT: first load", lambda i: obvious_staging(db, rows, TENANT, SYNCED),
        lambda i: db.reset_table(), repeat,
    )
    results["obvious_reload"] = measure(
        db, "obvious staging + ON CONFLICT: identical reload",
        lambda i: obvious_staging(db, rows, TENANT, SYNCED + timedelta(hours=i + 1)), nothing, repeat,
    )

    first = {}
    results["ours_first"] = measure(
        db, "ours: first load", lambda i: first.__setitem__(i, ours(db, rows, TENANT, SYNCED)),
        lambda i: db.reset_table(), repeat,
    )
    reload = {}
    results["ours_reload"] = measure(
        db, "ours: identical reload",
        lambda i: reload.__setitem__(i, ours(db, rows, TENANT, SYNCED + timedelta(hours=i + 1))), nothing, repeat,
    )
    edits = [edited(rows, 0.01, i % 2) for i in range(repeat)]
    results["ours_edit"] = measure(
        db, "ours: reload with 1% edited", lambda i: ours(db, edits[i], TENANT, SYNCED + timedelta(days=1, hours=i)),
        nothing, repeat,
    )

    def second_tenant_ready(i: int) -> None:
        db.reset_table()
        ours(db, rows, TENANT, SYNCED)

    results["ours_second"] = measure(
        db, "ours: 2nd tenant's first load (indexes kept)", lambda i: ours(db, rows, SECOND_TENANT, SYNCED),
        second_tenant_ready, repeat,
    )
    assert all(r.inserted == n for r in first.values()), first
    assert all(r.unchanged == n and r.changed == 0 for r in reload.values()), reload
    return results


def report(results: dict[str, Result], args) -> None:
    floor = results["floor"].seconds
    first_wal = results["ours_first"].wal
    print()
    print(f"{args.rows:,} time entries, median of {args.repeat} (ratios: x the floor)")
    print(f"{'method':<48} {'seconds':>8} {'x floor':>8} {'WAL MB':>9}  note")
    for result in results.values():
        ratio = result.seconds / floor
        print(f"{result.label:<48} {result.seconds:8.2f} {ratio:8.2f} {result.wal / 1e6:9.2f}  {result.note}")
    ours_first, ours_reload = results["ours_first"], results["ours_reload"]
    checks = [
        ("ours first load <= 3x floor", ours_first.seconds <= 3 * floor, f"{ours_first.seconds / floor:.2f}x"),
        ("ours identical reload <= 2.5x floor", ours_reload.seconds <= 2.5 * floor,
         f"{ours_reload.seconds / floor:.2f}x"),
        ("ours identical reload WAL < 5% of first load's", ours_reload.wal < 0.05 * first_wal,
         f"{100 * ours_reload.wal / max(first_wal, 1):.3f}%"),
        ("ours first load >= 5x faster than to_sql (method=None)",
         results["to_sql"].seconds >= 5 * ours_first.seconds, f"{results['to_sql'].seconds / ours_first.seconds:.1f}x"),
    ]
    print()
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    print("(WAL is measured cluster-wide; the binary floor is shown for reference only)")


if __name__ == "__main__":
    raise SystemExit(main())
