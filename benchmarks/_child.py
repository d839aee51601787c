"""Shared by the benchmarks: run one method in a fresh process and read its memory honestly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def proc_status(field: str) -> int:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in bytes; 0 where there is no /proc."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Reset VmHWM to the current RSS, so the peak measured next belongs to what runs next (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def run_child(script: str, *args: str) -> dict:
    """Run ``script`` with ``args`` in a new interpreter; it prints one JSON line last."""
    done = subprocess.run([sys.executable, script, *args], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report_checks(checks: list[tuple[str, bool, str]]) -> int:
    """Print each target as PASS/FAIL with its measured value; 0 when all pass (the exit status)."""
    print()
    for name, ok, value in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1
