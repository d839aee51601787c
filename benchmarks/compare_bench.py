"""Nightly time-entry comparison: ours against the obvious ways, side by side.

Generates ``--rows`` time entries (default 1,000,000) with the TIMESHEET columns and realistic types
(UUID text keys, as ``Rows.to_frame()`` builds them), then a "new" version with 1% of the rows changed
in one random field each, 0.2% deleted, 0.2% added, in another order. Each method runs ``--repeat``
times, every run in a fresh subprocess; the table shows the median wall-clock seconds (and CPU
seconds: on a shared machine they vary less), and the peak resident memory above what the process
held before the run (``VmHWM`` after resetting it, Linux; the largest of the runs).

    .venv/bin/python benchmarks/compare_bench.py [--rows 1000000] [--repeat 3]

Every method must find the same added, deleted and changed keys as the edits made (the bare merge
finds only added and deleted); ours and the naive loop must also agree on every changed field.
Targets: ours <= 0.5x the bare merge, >= 2x faster than datacompy, >= 5x faster than the naive loop,
extra memory <= 1 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _child import proc_status, report_checks, reset_peak, run_child  # noqa: E402
import datacompy  # noqa: E402  (pip install -e '.[bench]')

from xpm_pipeline.entities import TIMESHEET  # noqa: E402
from xpm_pipeline.sync.compare import compare_entity  # noqa: E402

NAMES = list(TIMESHEET.column_names)
FIELDS = NAMES[1:]


# --- data --------------------------------------------------------------------------------------------


def _uuids(rng: np.random.Generator, count: int) -> list[str]:
    """Random lowercase GUID text, vectorised (a Python loop would dominate the set-up)."""
    raw = rng.integers(0, 256, size=(count, 16), dtype=np.uint8)
    nibbles = np.stack([raw >> 4, raw & 15], axis=2).reshape(count, 32)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    for start, stop, source in ((0, 8, 0), (9, 13, 8), (14, 18, 12), (19, 23, 16), (24, 36, 20)):
        text[:, start:stop] = digits[:, source : source + stop - start]
    return text.view("S36").ravel().astype(str).tolist()


class Practice:
    """Staff, tasks, jobs and dates the entries are drawn from."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.staff = _uuids(rng, 150)
        self.tasks = _uuids(rng, 400)
        self.task_names = [f"Task type {i} – review" for i in range(400)]
        self.days = [date(2025, 8, 1) + timedelta(days=d) for d in range(456)]  # 15 months
        self.ranges = [("09:00", "10:30"), ("13:15", "14:00"), ("08:30", "12:00"), ("15:00", "17:45")]

    def entries(self, count: int, first: int = 0) -> dict[str, list]:
        rng = self.rng
        task = rng.integers(0, 400, count)
        has_task = rng.random(count) < 0.97
        ranged = rng.random(count) < 0.2
        span = rng.integers(0, len(self.ranges), count)
        noted = rng.random(count) < 0.7
        billed = rng.random(count) < 0.5
        flag = rng.random(count)
        invoice = _uuids(rng, count)
        return {
            "uuid": _uuids(rng, count),
            "job_number": [f"J{j:06d}" for j in rng.integers(1, 4000, count)],
            "task_uuid": [self.tasks[t] if h else None for t, h in zip(task, has_task)],
            "task_name": [self.task_names[t] if h else None for t, h in zip(task, has_task)],
            "staff_uuid": [self.staff[s] for s in rng.integers(0, 150, count)],
            "entry_date": [self.days[d] for d in rng.integers(0, len(self.days), count)],
            "minutes": rng.choice([15, 30, 45, 60, 90, 120, 240, -30], count).tolist(),
            "note": [f"Reconciled bank feed item {first + i} with the client ✓" if n else None
                     for i, n in enumerate(noted)],
            "billable": [None if f < 0.05 else bool(f < 0.8) for f in flag],
            "start_time": [self.ranges[s][0] if r else None for s, r in zip(span, ranged)],
            "end_time": [self.ranges[s][1] if r else None for s, r in zip(span, ranged)],
            "invoice_task_uuid": [u if b else None for u, b in zip(invoice, billed)],
        }

    def edit(self, name: str, value):
        """A different value for one field, to or from missing where the column allows it."""
        rng = self.rng
        pick = rng.random()
        if name == "job_number":
            return f"J{(int(value[1:]) % 3999) + 1:06d}"
        if name in ("task_uuid", "invoice_task_uuid"):
            return None if value is not None and pick < 0.3 else _uuids(rng, 1)[0]
        if name == "task_name":
            return "Renamed task" if value is None else value + " (renamed)"
        if name == "staff_uuid":
            return self.staff[(self.staff.index(value) + 1) % len(self.staff)]
        if name == "entry_date":
            return value + timedelta(days=int(rng.choice([-2, -1, 1, 2])))
        if name == "minutes":
            return value + 15
        if name == "note":
            if value is None:
                return "Added a note"
            return None if pick < 0.3 else value + " " if pick < 0.7 else value.upper()  # whitespace counts
        if name == "billable":
            return (not value) if value is not None and pick < 0.7 else (True if value is None else None)
        if name in ("start_time", "end_time"):
            return "07:45" if value is None else (None if pick < 0.5 else "07:50")  # no range has 07:50
        raise KeyError(name)


def text_of(value) -> str | None:
    """Audit text of a Python value, as the pipeline writes it (None for missing)."""
    if value is None or value != value:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def generate(rows: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(old, new, truth): the warehouse's rows, XPM's rows after the edits, and the edits."""
    rng = np.random.default_rng(seed)
    practice = Practice(rng)
    old = practice.entries(rows)
    new = {name: list(values) for name, values in old.items()}
    order = rng.permutation(rows)
    n_changed, n_deleted, n_added = rows // 100, rows // 500, rows // 500
    changed, deleted = order[:n_changed], order[n_changed : n_changed + n_deleted]
    fields = set()
    for row in changed.tolist():
        name = FIELDS[rng.integers(0, len(FIELDS))]
        before = new[name][row]
        new[name][row] = after = practice.edit(name, before)
        fields.add((new["uuid"][row], name, text_of(before), text_of(after)))
    keep = np.ones(rows, dtype=bool)
    keep[deleted] = False
    added = practice.entries(n_added, first=rows)
    for name in NAMES:
        new[name] = [v for v, k in zip(new[name], keep) if k] + added[name]
    shuffle = rng.permutation(len(new["uuid"]))
    new = {name: [values[i] for i in shuffle] for name, values in new.items()}
    assert len(set(old["uuid"]) | set(added["uuid"])) == rows + n_added, "generated a duplicate UUID"
    truth = {
        "added": set(added["uuid"]),
        "deleted": {old["uuid"][i] for i in deleted.tolist()},
        "changed": {key for key, *_ in fields},
        "fields": fields,
    }
    return pd.DataFrame(old), pd.DataFrame(new), truth


# --- the methods (each returns its own result; keys are extracted outside the timing) ---------------


def method_ours(old, new):
    return compare_entity(TIMESHEET, old, new)


def keys_ours(result):
    return {
        "added": set(result.added["uuid"]),
        "deleted": set(result.deleted["uuid"]),
        "changed": set(result.changed["uuid"]),
        "fields": set(result.changes[["uuid", "field", "old_value", "new_value"]].itertuples(index=False, name=None)),
    }


def method_merge(old, new):
    return pd.merge(old, new, on="uuid", how="outer", indicator=True)


def keys_merge(merged):
    side = merged["_merge"]
    return {"added": set(merged["uuid"][side == "right_only"]), "deleted": set(merged["uuid"][side == "left_only"])}


def method_hash_merge(old, new):
    """The obvious hash approach: a row hash of every column per side, an outer merge on the text keys,
    then compare the hashes."""
    hashed_old = pd.DataFrame({"uuid": old["uuid"], "h": pd.util.hash_pandas_object(old[FIELDS], index=False)})
    hashed_new = pd.DataFrame({"uuid": new["uuid"], "h": pd.util.hash_pandas_object(new[FIELDS], index=False)})
    merged = pd.merge(hashed_old, hashed_new, on="uuid", how="outer", indicator=True)
    merged["changed"] = (merged["_merge"] == "both") & (merged["h_x"] != merged["h_y"])
    return merged


def keys_hash_merge(merged):
    return {**keys_merge(merged), "changed": set(merged["uuid"][merged["changed"]])}


def method_datacompy(old, new):
    compare = getattr(datacompy, "Compare", None) or datacompy.PandasCompare  # 1.x: Compare is PandasCompare
    result = compare(old, new, join_columns="uuid")
    return result, result.all_mismatch()


def keys_datacompy(result):
    compare, mismatched = result
    return {
        "added": set(compare.df2_unq_rows["uuid"]),
        "deleted": set(compare.df1_unq_rows["uuid"]),
        "changed": set(mismatched["uuid"]),
    }


def method_naive(old, new):
    """A dict of old rows by UUID, then every new row compared field by field in Python."""
    old_rows = {row[0]: row[1:] for row in zip(*(old[name].tolist() for name in NAMES))}
    added, changes = [], []
    for row in zip(*(new[name].tolist() for name in NAMES)):
        before = old_rows.pop(row[0], None)
        if before is None:
            added.append(row[0])
            continue
        for name, a, b in zip(FIELDS, before, row[1:]):
            if a != b and not (_missing(a) and _missing(b)):
                changes.append((row[0], name, text_of(a), text_of(b)))
    return added, list(old_rows), changes


def _missing(value) -> bool:
    return value is None or value != value


def keys_naive(result):
    added, deleted, changes = result
    return {"added": set(added), "deleted": set(deleted), "changed": {c[0] for c in changes}, "fields": set(changes)}


OURS, MERGE, DATACOMPY = "ours (compare_entity)", "bare pd.merge (reference)", "datacompy 1.1.0"
NAIVE = "naive Python loop"
METHODS = {
    OURS: (method_ours, keys_ours),
    MERGE: (method_merge, keys_merge),
    "row hash + merge on text keys": (method_hash_merge, keys_hash_merge),
    DATACOMPY: (method_datacompy, keys_datacompy),
    NAIVE: (method_naive, keys_naive),
}


# --- measuring ---------------------------------------------------------------------------------------




def child(method: str, data: str, out: str) -> None:
    """Run one method once; print its seconds and memory as JSON, pickle what it found to ``out``."""
    with open(data, "rb") as handle:
        old, new = pickle.load(handle)
    run, keys = METHODS[method]
    gc.collect()
    before = proc_status("VmRSS")
    reset_peak()
    started, cpu = time.perf_counter(), time.process_time()
    result = run(old, new)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = proc_status("VmHWM")
    with open(out, "wb") as handle:
        pickle.dump(keys(result), handle)
    print(json.dumps({"seconds": seconds, "cpu": cpu, "peak_extra": peak - before}))


def measure(method: str, data: str, out: str) -> dict:
    return run_child(__file__, "--child", method, "--data", data, "--out", out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--data")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data, args.out)
        return 0

    old, new, truth = generate(args.rows)
    print(f"{len(old):,} warehouse rows x {len(NAMES)} columns; XPM side: {len(truth['changed']):,} changed "
          f"(one field each), {len(truth['deleted']):,} deleted, {len(truth['added']):,} added, reordered")
    print(f"median of {args.repeat} runs, each in a fresh process\n")
    results, found = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "frames.pickle")
        with open(data, "wb") as handle:
            pickle.dump((old, new), handle, protocol=pickle.HIGHEST_PROTOCOL)
        del old, new
        for method in METHODS:
            out = str(Path(tmp) / "found.pickle")
            runs = [measure(method, data, out) for _ in range(args.repeat)]
            with open(out, "rb") as handle:
                found[method] = pickle.load(handle)
            results[method] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "cpu": statistics.median(r["cpu"] for r in runs),
                "runs": [r["seconds"] for r in runs],
                "peak_extra": max(r["peak_extra"] for r in runs),
            }

    for method, keys in found.items():
        for kind, expected in truth.items():
            if kind in keys:
                assert keys[kind] == expected, f"{method}: {kind} differs from the edits made"
    assert found[OURS]["fields"] == found[NAIVE]["fields"], "ours and the naive loop disagree on changed fields"
    print("all methods found exactly the edits made (the bare merge: added and deleted only)\n")

    merge, ours = results[MERGE]["seconds"], results[OURS]["seconds"]
    print(f"{'method':<31}{'median s':>9}{'x merge':>9}{'x ours':>8}{'cpu s':>8}{'peak +MB':>10}   runs (s)")
    for method, r in results.items():
        runs = " ".join(f"{s:.2f}" for s in r["runs"])
        print(f"{method:<31}{r['seconds']:>9.2f}{r['seconds'] / merge:>9.2f}{r['seconds'] / ours:>8.2f}"
              f"{r['cpu']:>8.2f}{r['peak_extra'] / 2**20:>10.0f}   {runs}")

    ours_mb = results[OURS]["peak_extra"] / 2**20
    datacompy_x, naive_x = results[DATACOMPY]["seconds"] / ours, results[NAIVE]["seconds"] / ours
    checks = [
        ("ours <= 0.5x the bare merge", ours / merge <= 0.5, f"{ours / merge:.2f}x"),
        (">= 2x faster than datacompy", datacompy_x >= 2, f"{datacompy_x:.1f}x"),
        (">= 5x faster than the naive loop", naive_x >= 5, f"{naive_x:.1f}x"),
        ("extra memory <= 1 GB", ours_mb <= 1024, f"{ours_mb:.0f} MB"),
    ]
    return report_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
