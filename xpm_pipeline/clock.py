"""Injectable time, so quota windows, token expiry and retries can be tested in simulated minutes.

Every component that asks "what time is it?" or "wait N seconds" takes a ``Clock``. Production uses
``SystemClock``; tests and the sandbox use ``ManualClock``, whose ``sleep`` advances time instantly and
records how long the caller asked to wait.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a simulated clock advances instead)."""


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class ManualClock:
    """A clock that only moves when told to; thread-safe so a sandbox thread and a client can share it.

    ``sleep`` advances the clock by the requested amount and records it in ``sleeps``, so a test can
    assert that a client waited exactly what ``Retry-After`` said without waiting at all.
    """

    def __init__(self, start: datetime | str | None = None) -> None:
        if start is None:
            start = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
        elif isinstance(start, str):
            start = datetime.fromisoformat(start)
        self._now = _as_utc(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if seconds > 0:
                self._now += timedelta(seconds=seconds)

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime | str) -> datetime:
        if isinstance(when, str):
            when = datetime.fromisoformat(when)
        with self._lock:
            self._now = _as_utc(when)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now.isoformat()})"


SYSTEM_CLOCK = SystemClock()
