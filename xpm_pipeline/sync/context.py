"""What every sync step needs: the warehouse, one tenant's XPM client, the mode, the clock, the knobs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Engine

from xpm_pipeline.clock import SYSTEM_CLOCK, Clock
from xpm_pipeline.sync.guard import RemovalGuard, RemovalLimits
from xpm_pipeline.xpm.client import XPMClient

INITIAL, HOURLY, NIGHTLY, RESYNC = "initial", "hourly", "nightly", "resync"
MODES = (INITIAL, HOURLY, NIGHTLY, RESYNC)


@dataclass(frozen=True)
class SyncOptions:
    """Windows and cadences; the defaults follow the product spec and xpm-api.md."""

    initial_back_months: int = 36  # time entries from 3 years back ...
    ahead_months: int = 12  # ... to 1 year ahead
    nightly_back_months: int = 15  # the nightly re-read and comparison of time entries
    hourly_back_days: int = 14  # new time entries are looked for in [today-14, today+7]
    hourly_ahead_days: int = 7
    recent_jobs_days: int = 35  # job.api/list window catching jobs created (and maybe closed) lately
    # XPM may not flag a client modified when only a contact changed, so the nightly re-reads every client
    # (one call either way: quota is counted in calls, not bytes). Raise it for very large practices to
    # use modifiedsince on the nights between full reads.
    full_client_every_nights: int = 1
    client_overlap: timedelta = timedelta(minutes=10)  # re-read the modifiedsince cursor with overlap
    confirm_missing_jobs: int = 25  # job.api/get calls per night to confirm jobs gone from current
    confirm_missing_time: int = 50  # time.api/get calls per night to tell deleted entries from re-dated ones
    time_filter: str = "date"  # how time.api/list filters: "date" (by <Date>) or "created"
    removal_limits: RemovalLimits = field(default_factory=RemovalLimits)  # what one run may remove (sync.guard)

    def __post_init__(self) -> None:
        if self.time_filter not in ("date", "created"):
            raise ValueError("time_filter must be 'date' or 'created'")


@dataclass
class SyncContext:
    engine: Engine
    client: XPMClient
    tenant_id: str
    mode: str
    clock: Clock = field(default=SYSTEM_CLOCK)
    options: SyncOptions = field(default_factory=SyncOptions)
    orchestrator_run_id: str | None = None
    progress: Callable[[str, int, int], None] | None = None  # (what, done, total): CLI progress bars
    accept_removals: frozenset[str] = frozenset()  # tables whose held removal a person accepted for this run
    accepted_by: str = ""  # who accepted them (recorded with the removal)
    guard: RemovalGuard = field(init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self.guard = RemovalGuard(self.tenant_id, self.mode, self.clock, self.options.removal_limits,
                                  frozenset(self.accept_removals), self.accepted_by)

    @property
    def now(self) -> datetime:
        return self.clock.now()

    @property
    def today(self) -> date:
        return self.clock.now().date()

    @property
    def full(self) -> bool:
        """Initial and re-sync-all read everything; hourly and nightly read changes."""
        return self.mode in (INITIAL, RESYNC)

    def report(self, what: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(what, done, total)

    def calls(self) -> int:
        return self.client.counter.total
