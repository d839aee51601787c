"""What a tenant may spend, and which budget a call draws on.

XPM's limits are per connection (app x tenant) and cannot be raised, but nobody is sure of the daily
figure: Xero documents 5,000, our product specification says 10,000, entry tiers may give 1,000. So
every figure is a configurable ceiling (``Settings``/env for everyone, a dict or the
``xpm_quota_limits`` table per tenant), and the server's ``X-*-Remaining`` headers can only lower it.

Who may use how much of the day (the "direction rules"):

- **sync reads** may spend the whole daily cap: the reserve exists so that syncs keep working;
- **export writes** stop at ``daily_limit - daily_reserve`` (10,000 - 200 = 9,800 by default);
- **background reads** (the nightly reconcile, full re-syncs: work that can wait a night) stop earlier,
  at ``daily_limit - daily_reserve - low_budget_share * daily_limit``, so that when the budget runs
  low, exports go first and the reconcile waits. Code marks its reads as background with
  ``with background_reads(): ...``.

The minute window, the concurrency cap and a 429 block apply to every call alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Union

READ, WRITE = "read", "write"
DIRECTIONS = (READ, WRITE)
ROLLING, FIXED = "rolling", "fixed"
DAY_WINDOWS = (ROLLING, FIXED)


@dataclass(frozen=True)
class QuotaLimits:
    """One tenant's ceilings. ``daily_reserve`` is kept for sync reads; see the module doc."""

    daily_limit: int = 10_000
    daily_reserve: int = 200
    minute_limit: int = 60
    concurrent_limit: int = 5
    low_budget_share: float = 0.10  # share of the daily cap, above the reserve, background reads leave alone
    day_window: str = ROLLING  # "rolling": any 24 h (XPM's docs); "fixed": the UTC calendar day

    def __post_init__(self) -> None:
        for name in ("daily_limit", "minute_limit", "concurrent_limit"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.daily_reserve < self.daily_limit:
            raise ValueError(f"daily_reserve must be in [0, daily_limit), got {self.daily_reserve}")
        if not 0 <= self.low_budget_share < 1:
            raise ValueError(f"low_budget_share must be in [0, 1), got {self.low_budget_share}")
        if self.day_window not in DAY_WINDOWS:
            raise ValueError(f"day_window must be rolling or fixed, got {self.day_window!r}")

    @classmethod
    def from_settings(cls, settings, **overrides) -> "QuotaLimits":
        """Defaults from ``Settings`` (XPM_DAILY_LIMIT, XPM_DAILY_RESERVE, XPM_MINUTE_LIMIT)."""
        base = cls(
            daily_limit=settings.daily_limit, daily_reserve=settings.daily_reserve, minute_limit=settings.minute_limit
        )
        return replace(base, **overrides) if overrides else base

    def day_floor(self, direction: str, background: bool = False) -> int:
        """Calls of the day this kind of call must leave unused (0 for sync reads)."""
        if direction == WRITE:
            return self.daily_reserve
        if background:
            return min(self.daily_limit - 1, self.daily_reserve + math.ceil(self.low_budget_share * self.daily_limit))
        return 0

    def day_allowance(self, direction: str, background: bool = False) -> int:
        """How many calls of the day this kind of call may see used before it has to wait."""
        return self.daily_limit - self.day_floor(direction, background)


LIMIT_FIELDS = tuple(f.name for f in fields(QuotaLimits))

LimitsSource = Union[QuotaLimits, Mapping[str, QuotaLimits], Callable[[str], QuotaLimits]]
"""One ``QuotaLimits`` for all tenants, a dict by tenant id (others get ``QuotaLimits()``), or a lookup."""


def resolver(source: LimitsSource | None, default: QuotaLimits | None = None) -> Callable[[str], QuotaLimits]:
    """Turn any ``LimitsSource`` into ``tenant_id -> QuotaLimits``."""
    fallback = default or QuotaLimits()
    if source is None:
        return lambda tenant_id: fallback
    if isinstance(source, QuotaLimits):
        return lambda tenant_id: source
    if isinstance(source, Mapping):
        return lambda tenant_id: source.get(tenant_id, fallback)
    if callable(source):
        return source
    raise TypeError(f"limits must be QuotaLimits, a mapping or a callable, got {type(source).__name__}")


def with_overrides(base: QuotaLimits, overrides: Mapping[str, object]) -> QuotaLimits:
    """``base`` with the non-NULL columns of an ``xpm_quota_limits`` row applied."""
    changes = {name: value for name, value in overrides.items() if name in LIMIT_FIELDS and value is not None}
    return replace(base, **changes) if changes else base


# --- background reads ---------------------------------------------------------------------------

_background: ContextVar[bool] = ContextVar("xpm_quota_background", default=False)


@contextmanager
def background_reads() -> Iterator[None]:
    """Reads made inside are background work (nightly reconcile): they yield when the budget is low.

    A context variable rather than a parameter because the sync code calls the XPM client, which
    calls the ledger; nothing in between needs to know. Writes are never background.
    """
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def is_background(call) -> bool:
    """Whether a call draws on the background budget (a read, marked by the caller)."""
    if getattr(call, "direction", READ) == WRITE:
        return False
    marked = getattr(call, "priority", None)  # a future CallInfo field, should the client grow one
    return marked == "background" or _background.get()
