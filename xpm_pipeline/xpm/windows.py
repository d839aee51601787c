"""Date windows for XPM list calls, which need ``from``/``to`` and refuse ranges over a year.

Windows are inclusive on both ends and never overlap (whether XPM's ``to`` is inclusive is not
documented, so a window ending on day D is followed by one starting on D+1). Monthly windows are the
unit of resumability: a sync checkpoints each finished month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

# XPM says "no more than one year"; 360 days keeps clear of any off-by-one in its check.
MAX_WINDOW_DAYS = 360


@dataclass(frozen=True, order=True)
class DateWindow:
    start: date
    end: date  # inclusive

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"window ends ({self.end}) before it starts ({self.start})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def params(self) -> dict[str, str]:
        return {"from": xpm_date(self.start), "to": xpm_date(self.end)}

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def xpm_date(value: date) -> str:
    return value.strftime("%Y%m%d")


def split_range(start: date, end: date, max_days: int = MAX_WINDOW_DAYS) -> list[DateWindow]:
    """Cover start..end (inclusive) with as few windows as XPM allows."""
    if max_days < 1:
        raise ValueError("max_days must be at least 1")
    windows = []
    cursor = start
    while cursor <= end:
        stop = min(end, cursor + timedelta(days=max_days - 1))
        windows.append(DateWindow(cursor, stop))
        cursor = stop + timedelta(days=1)
    return windows


def _month_end(day: date) -> date:
    first_next = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
    return first_next - timedelta(days=1)


def month_windows(start: date, end: date) -> list[DateWindow]:
    """Calendar months covering start..end, the first and last clipped to the range."""
    windows = []
    cursor = start
    while cursor <= end:
        stop = min(end, _month_end(cursor))
        windows.append(DateWindow(cursor, stop))
        cursor = stop + timedelta(days=1)
    return windows


def add_months(day: date, months: int) -> date:
    """Same day ``months`` later (or earlier), clamped to the month's length."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    last_day = _month_end(date(year, month + 1, 1)).day
    return date(year, month + 1, min(day.day, last_day))
