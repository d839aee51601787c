"""Clocks the ledger can run on besides ``SystemClock`` and ``ManualClock``.

- ``DatabaseClock``: the warehouse's own time. Processes on several hosts share one ledger; if each
  stamped calls with its own clock, a host running two seconds fast would see a sliding window two
  seconds emptier than it is. Reading the time inside the admitting transaction, from the one
  database, gives every process the same timeline.
- ``ScaledClock``: wall time sped up by a factor, shared by separate OS processes (they only need the
  same origin), so multi-process tests and the stress benchmark can run many simulated minutes in a
  few real seconds with real concurrency — something a ``ManualClock`` (one process) cannot give.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

UTC = timezone.utc


class DatabaseClock:
    """``now()`` from the database (PostgreSQL ``clock_timestamp()``, SQLite ``'now'``); real sleeps."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def now(self) -> datetime:
        with self.engine.connect() as conn:
            return self.now_on(conn)

    @staticmethod
    def now_on(conn: Connection) -> datetime:
        """The database's time, read on ``conn`` (inside its transaction, after any lock it holds)."""
        if conn.dialect.name == "postgresql":
            # clock_timestamp(), not now(): now() is the transaction's start, before the lock wait.
            value = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        else:
            raw = conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")).scalar_one()
            value = datetime.fromisoformat(raw)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return f"DatabaseClock({self.engine.dialect.name})"


class ScaledClock:
    """Simulated time running ``factor`` times faster than the wall clock, from a shared origin.

    ``now = origin + (time.time() - wall_origin) * factor``; ``sleep(s)`` really sleeps ``s / factor``.
    Every process built with the same ``(origin, wall_origin, factor)`` sees the same time. Picklable.
    """

    def __init__(self, factor: float, origin: datetime | None = None, wall_origin: float | None = None) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = float(factor)
        self.origin = (origin or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)).astimezone(UTC)
        self.wall_origin = time.time() if wall_origin is None else wall_origin

    def now(self) -> datetime:
        return self.origin + timedelta(seconds=(time.time() - self.wall_origin) * self.factor)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.factor)

    def __repr__(self) -> str:
        return f"ScaledClock(x{self.factor:g}, {self.now().isoformat()})"
