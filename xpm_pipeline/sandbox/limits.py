"""XPM's rate limits, kept exactly on the sandbox clock.

Per tenant (one connection): ``concurrent_limit`` calls in flight, ``minute_limit`` calls in any
sliding 60 s, ``daily_limit`` calls per day (any 24 h when ``day_window="rolling"``, the UTC calendar
day when ``"fixed"``); per app: ``app_minute_limit`` calls in any 60 s across tenants.

What counts: every XPM call that passes authentication and the tenant check and is admitted, whatever
its outcome afterwards (ERROR bodies, injected faults). A call refused with 429 is **not** counted,
so a client that waits ``Retry-After`` and retries is admitted then. Calls refused before admission
(401, bad tenant) are not counted either.

``Retry-After`` is the whole number of seconds (rounded up, at least 1) until the call would be
admitted: minute -> until the oldest call leaves the 60 s window; day -> until the oldest call leaves
the 24 h window (rolling) or until the next UTC midnight (fixed); appminute -> like minute, app-wide;
concurrent -> 1. When several limits are exceeded at once, the one with the longest wait is reported.

All reads of time go through the injected clock: a client sharing a ``ManualClock`` that "sleeps"
``Retry-After`` is admitted on its retry without anyone waiting.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
MINUTE = 60.0
DAY = 86400.0


@dataclass
class _Usage:
    minute: deque = field(default_factory=deque)  # admission times (epoch seconds), last 60 s
    day: deque = field(default_factory=deque)  # rolling: admission times in the last 24 h
    fixed_day: str = ""  # fixed: the UTC date being counted
    fixed_count: int = 0
    in_flight: int = 0


@dataclass
class Decision:
    admitted: bool
    problem: str | None
    retry_after: int
    headers: dict[str, str]


class Limiter:
    def __init__(self, config, clock) -> None:
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, _Usage] = {}
        self._app: deque = deque()

    def reset(self) -> None:
        with self._lock:
            self._tenants.clear()
            self._app.clear()

    def _usage(self, tenant_id: str) -> _Usage:
        usage = self._tenants.get(tenant_id)
        if usage is None:
            usage = self._tenants[tenant_id] = _Usage()
        return usage

    def _prune(self, usage: _Usage | None, now: float, today: str) -> None:
        while self._app and self._app[0] <= now - MINUTE:
            self._app.popleft()
        if usage is None:
            return
        while usage.minute and usage.minute[0] <= now - MINUTE:
            usage.minute.popleft()
        while usage.day and usage.day[0] <= now - DAY:
            usage.day.popleft()
        if usage.fixed_day != today:
            usage.fixed_day, usage.fixed_count = today, 0

    def _day_used(self, usage: _Usage) -> int:
        return usage.fixed_count if self.config.day_window == "fixed" else len(usage.day)

    def _headers(self, usage: _Usage | None) -> dict[str, str]:
        cfg = self.config
        day_used = self._day_used(usage) if usage else 0
        minute_used = len(usage.minute) if usage else 0
        return {
            "X-DayLimit-Remaining": str(max(0, cfg.daily_limit - day_used)),
            "X-MinLimit-Remaining": str(max(0, cfg.minute_limit - minute_used)),
            "X-AppMinLimit-Remaining": str(max(0, cfg.app_minute_limit - len(self._app))),
        }

    def _now(self) -> tuple[float, str, datetime]:
        moment = self.clock.now().astimezone(UTC)
        return moment.timestamp(), moment.date().isoformat(), moment

    def headers(self, tenant_id: str | None) -> dict[str, str]:
        """The ``X-*-Remaining`` headers without counting a call (401s, bad tenants, faults)."""
        now, today, _ = self._now()
        with self._lock:
            usage = self._tenants.get(tenant_id) if tenant_id else None
            self._prune(usage, now, today)
            return self._headers(usage)

    def admit(self, tenant_id: str) -> Decision:
        """Count one call, or refuse it (uncounted) with the problem and ``Retry-After``."""
        cfg = self.config
        now, today, moment = self._now()
        with self._lock:
            usage = self._usage(tenant_id)
            self._prune(usage, now, today)
            waits: list[tuple[float, str]] = []
            if self._day_used(usage) >= cfg.daily_limit:
                if cfg.day_window == "fixed":
                    midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC)
                    waits.append((midnight.timestamp() - now, "day"))
                else:
                    waits.append((usage.day[-cfg.daily_limit] + DAY - now, "day"))
            if len(usage.minute) >= cfg.minute_limit:
                waits.append((usage.minute[-cfg.minute_limit] + MINUTE - now, "minute"))
            if len(self._app) >= cfg.app_minute_limit:
                waits.append((self._app[-cfg.app_minute_limit] + MINUTE - now, "appminute"))
            if usage.in_flight >= cfg.concurrent_limit:
                waits.append((1.0, "concurrent"))
            if waits:
                wait, problem = max(waits, key=lambda w: w[0])
                return Decision(False, problem, max(1, math.ceil(wait - 1e-9)), self._headers(usage))
            usage.minute.append(now)
            usage.day.append(now)
            usage.fixed_count += 1
            self._app.append(now)
            usage.in_flight += 1
            return Decision(True, None, 0, self._headers(usage))

    def release(self, tenant_id: str) -> None:
        with self._lock:
            usage = self._tenants.get(tenant_id)
            if usage is not None and usage.in_flight > 0:
                usage.in_flight -= 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        now, today, _ = self._now()
        with self._lock:
            out = {}
            for tenant_id, usage in self._tenants.items():
                self._prune(usage, now, today)
                out[tenant_id] = {"minute": len(usage.minute), "day": self._day_used(usage),
                                  "in_flight": usage.in_flight}
            return out
