"""The sandbox's settings, and the clock wrapper that lets the admin interface move time.

Every switch that reproduces an *unverified* XPM behaviour lives here, so a test (or a person checking
XPM against the sandbox) can flip it instead of patching code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from xpm_pipeline.clock import Clock, ManualClock, SystemClock

SIZES = ("small", "medium", "large")
DAY_WINDOWS = ("rolling", "fixed")
TIME_FILTERS = ("date", "created")


@dataclass
class SandboxConfig:
    """How the sandbox is seeded, limited and which quirks it shows.

    Limits are per tenant (one connection = app x tenant) except ``app_minute_limit``, which counts
    the calls of all tenants together.
    """

    size: str = "small"
    seed: int = 1
    tenants: int = 1
    daily_limit: int = 10000  # the product specification's figure; Xero documents 5,000
    minute_limit: int = 60
    concurrent_limit: int = 5
    app_minute_limit: int = 10000
    clock: Clock = field(default_factory=SystemClock)
    day_window: str = "rolling"  # "rolling": any 24 h; "fixed": the UTC calendar day
    time_filter: str = "date"  # time.api/list filters by <Date>, or "created" (hidden creation time)
    bad_tenant_status: int = 403  # status for a missing/unknown/unconsented Xero-Tenant-Id
    contact_edit_bumps_modified: bool = False
    state_path: str | Path | None = None
    access_token_seconds: int = 1800
    refresh_grace_seconds: int = 1800
    refresh_idle_days: int = 60
    code_seconds: int = 300
    # Redirect URIs the one registered app accepts, besides any loopback http URI (localhost,
    # 127.0.0.1, [::1]) on any port and path, which is what CLI tools and tests use.
    redirect_uris: tuple[str, ...] = ()
    web_url: str = "https://app.practicemanager.xero.com"
    request_log_limit: int = 200_000  # oldest entries are dropped beyond this (long-running serve)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting (the CLI prints it as one line)."""
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.day_window not in DAY_WINDOWS:
            raise ValueError(f"day_window must be rolling or fixed, got {self.day_window!r}")
        if self.time_filter not in TIME_FILTERS:
            raise ValueError(f"time_filter must be date or created, got {self.time_filter!r}")
        if not 1 <= self.tenants <= 50:
            raise ValueError(f"tenants must be 1-50, got {self.tenants}")
        for name in ("daily_limit", "minute_limit", "concurrent_limit", "app_minute_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 400 <= self.bad_tenant_status <= 599:
            raise ValueError(f"bad_tenant_status must be an HTTP error status, got {self.bad_tenant_status}")


class AdjustableClock:
    """A clock the admin interface can move: a ManualClock as is, any other clock plus an offset.

    ``sandbox serve`` runs on wall-clock time, yet ``POST /_sandbox/clock`` must still be able to jump
    a day ahead; wrapping the system clock with an offset gives both.
    """

    def __init__(self, base: Clock) -> None:
        self.base = base
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        if isinstance(self.base, ManualClock):
            return self.base.now()
        with self._lock:
            return self.base.now() + self._offset

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)

    def advance(self, seconds: float) -> datetime:
        if isinstance(self.base, ManualClock):
            return self.base.advance(seconds)
        with self._lock:
            self._offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, when: datetime) -> datetime:
        if isinstance(self.base, ManualClock):
            return self.base.set(when)
        with self._lock:
            self._offset = when - self.base.now()
        return self.now()
