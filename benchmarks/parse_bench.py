"""XML parse + extraction of XPM time entries: ours against the obvious ways, side by side.

Each method runs in a fresh subprocess on the same generated file (default 200,000 ``<Time>``
entries, ~100 MB) and reports the median of N runs plus its peak memory above the starting point.
Ratios are to a bare ``lxml.etree.parse`` of the document (which extracts nothing).

    .venv/bin/python benchmarks/parse_bench.py [--rows 200000] [--repeat 3]

Targets: ours <= 2.5x the raw parse into typed columns; >= 2x faster than ElementTree + dicts;
memory growth independent of the document size apart from the result itself.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _child import proc_status, report_checks, reset_peak, run_child  # noqa: E402

COLUMNS = ["UUID", "Job/ID", "Task/UUID", "Task/Name", "Staff/UUID", "Date", "Minutes", "Note", "Billable",
           "Start", "End", "InvoiceTaskUUID"]


def _chunks(path: str, size: int = 64 * 1024):
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(size)
            if not chunk:
                return
            yield chunk


def method_raw(path):
    from lxml import etree

    return etree.parse(path)


def method_findtext(path):
    from lxml import etree

    rows = []
    for _, element in etree.iterparse(path, events=("end",), tag="Time"):
        rows.append({c: element.findtext(c) for c in COLUMNS})
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]
    return rows


def method_children(path):
    from lxml import etree

    rows = []
    for _, element in etree.iterparse(path, events=("end",), tag="Time"):
        row = {}
        for child in element:
            if len(child):
                for grandchild in child:
                    row[f"{child.tag}/{grandchild.tag}"] = grandchild.text
            else:
                row[child.tag] = child.text
        rows.append(row)
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]
    return rows


def method_elementtree(path):
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    return [{c: entry.findtext(c) for c in COLUMNS} for entry in root.iter("Time")]


def method_ours(path):
    from xpm_pipeline.xpm.parse import parse_response

    return parse_response(_chunks(path), "timesheet")["timesheet"]


METHODS = {
    "raw lxml.etree.parse": method_raw,
    "iterparse + findtext": method_findtext,
    "iterparse + children": method_children,
    "ElementTree + dicts": method_elementtree,
    "ours (typed columns)": method_ours,
}




def child(method: str, path: str) -> None:
    """Run one method once and print its seconds and memory as JSON."""
    import gc

    gc.collect()
    before = proc_status("VmRSS")
    reset_peak()
    started = time.perf_counter()
    result = METHODS[method](path)
    seconds = time.perf_counter() - started
    peak = proc_status("VmHWM")
    retained = proc_status("VmRSS")
    count = len(result) if not hasattr(result, "getroot") else None
    print(json.dumps({"seconds": seconds, "peak_extra": peak - before, "retained": retained - before,
                      "rows": count}))


def run(method: str, path: str) -> dict:
    return run_child(__file__, "--child", method, "--file", path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file)
        return 0

    from _timedata import time_entries_xml

    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "times.xml")
        small = os.path.join(tmp, "times-small.xml")
        Path(big).write_bytes(time_entries_xml(args.rows))
        Path(small).write_bytes(time_entries_xml(args.rows // 4))
        size_mb = os.path.getsize(big) / 1e6
        print(f"{args.rows:,} <Time> entries, {size_mb:.0f} MB; median of {args.repeat} runs, each in a fresh process\n")
        results = {}
        for method in METHODS:
            runs = [run(method, big) for _ in range(args.repeat)]
            results[method] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "peak_extra": statistics.median(r["peak_extra"] for r in runs),
                "retained": statistics.median(r["retained"] for r in runs),
                "rows": runs[0]["rows"],
            }
        raw = results["raw lxml.etree.parse"]["seconds"]
        ours = results["ours (typed columns)"]["seconds"]
        print(f"{'method':<24}{'median s':>10}{'x raw':>8}{'x ours':>8}{'peak +MB':>10}{'rows':>10}")
        for method, r in results.items():
            rows = "" if r["rows"] is None else f"{r['rows']:,}"
            print(f"{method:<24}{r['seconds']:>10.2f}{r['seconds'] / raw:>8.2f}{r['seconds'] / ours:>8.2f}"
                  f"{r['peak_extra'] / 1e6:>10.0f}{rows:>10}")

        small_run = run("ours (typed columns)", small)
        big_run = results["ours (typed columns)"]
        overhead_small = (small_run["peak_extra"] - small_run["retained"]) / 1e6
        overhead_big = (big_run["peak_extra"] - big_run["retained"]) / 1e6
        print(f"\nours: working memory beyond the result: {overhead_small:.0f} MB at {args.rows // 4:,} entries, "
              f"{overhead_big:.0f} MB at {args.rows:,} (result itself: {big_run['retained'] / 1e6:.0f} MB)")

        et = results["ElementTree + dicts"]["seconds"]
        checks = [
            ("ours <= 2.5x raw parse", ours / raw <= 2.5, f"{ours / raw:.2f}x"),
            (">= 2x faster than ElementTree + dicts", et / ours >= 2, f"{et / ours:.2f}x"),
            ("working memory independent of size (within 32 MB)", abs(overhead_big - overhead_small) <= 32,
             f"{overhead_small:.0f} vs {overhead_big:.0f} MB"),
        ]
        return report_checks(checks)


if __name__ == "__main__":
    sys.exit(main())
