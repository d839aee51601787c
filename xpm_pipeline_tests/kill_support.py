"""Shared by the kill tests (export drain and syncs): how many runs, and a fresh warehouse per run."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text

KILL_RUNS = int(os.environ.get("XPM_KILL_RUNS", "20"))


def runs_for(url: str) -> int:
    """``KILL_RUNS`` on PostgreSQL (production's warehouse, the SKIP LOCKED path); a quarter on SQLite,
    whose single-writer locking leaves fewer interleavings to explore (and CI has 45 minutes)."""
    return KILL_RUNS if url.startswith("postgresql") else max(min(5, KILL_RUNS), KILL_RUNS // 4)


def fresh_warehouse(url: str, home, run: int) -> str:
    """An empty warehouse for one run: a new SQLite file, or the test's Postgres database emptied."""
    if url.startswith("sqlite"):
        return f"sqlite:///{home / f'run{run}.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url
