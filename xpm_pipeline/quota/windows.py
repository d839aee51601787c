"""The time windows XPM counts calls in, and a pure simulation of "when could N more calls go".

Kept apart from the SQL so the arithmetic can be read (and tested) on its own:

- minute: a call counts while ``finished_at > now - (60 s + margin)`` (its answer came less than a
  minute ago; unanswered calls count until their lease ends, ``measure.in_minute_window``); XPM's
  window slides, so the 61st call may go exactly when the first leaves, as XPM's own limiter does;
- day, rolling: the same with 24 h;
- day, fixed: calls since the UTC midnight (of ``now - margin``), so the count resets at midnight.

Ageing minute calls by their answer time already covers any gap between our admission and XPM's
arrival; ``margin`` adds a second for the rest (clock steps, XPM's own rounding): waiting a second more
than the bare window costs nothing. Tests on a ``ManualClock`` use 0 to check exactness.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone

from xpm_pipeline.quota.limits import FIXED, QuotaLimits

UTC = timezone.utc
MINUTE = timedelta(seconds=60)
DAY = timedelta(days=1)


def utc_midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time.min, UTC)


@dataclass(frozen=True)
class Windows:
    """The cut-offs at one moment: a call admitted after ``minute_cut`` is in the minute window, etc."""

    now: datetime
    minute_span: timedelta  # 60 s + margin
    day_span: timedelta  # 24 h + margin (rolling)
    fixed_day: bool
    day_start: datetime  # fixed: the counted day's midnight; rolling: now - day_span
    margin: timedelta

    @classmethod
    def at(cls, now: datetime, limits: QuotaLimits, margin: float = 0.0) -> "Windows":
        slack = timedelta(seconds=margin)
        fixed = limits.day_window == FIXED
        day_span = DAY + slack
        start = utc_midnight(now - slack) if fixed else now - day_span
        return cls(now, MINUTE + slack, day_span, fixed, start, slack)

    @property
    def minute_cut(self) -> datetime:
        """In the minute window: ``admitted_at > minute_cut``."""
        return self.now - self.minute_span

    def in_day(self, admitted_at: datetime) -> bool:
        return admitted_at >= self.day_start if self.fixed_day else admitted_at > self.day_start

    def day_reopens(self, oldest_blocking: datetime | None) -> datetime:
        """When the day window frees a call: the blocking call leaves (rolling) or midnight passes (fixed)."""
        if self.fixed_day:
            return self.day_start + DAY + self.margin
        assert oldest_blocking is not None
        return oldest_blocking + self.day_span


def simulate_eta(**schedule_args) -> datetime:
    """When the last of the new calls could be admitted (``simulate_schedule``'s arguments and rules)."""
    schedule = simulate_schedule(**schedule_args)
    return schedule[-1] if schedule else max(schedule_args["now"], schedule_args.get("not_before") or schedule_args["now"])


def simulate_schedule(
    *,
    now: datetime,
    calls: int,
    limits: QuotaLimits,
    day_allowance: int,
    history: Iterable[datetime],
    margin: float = 0.0,
    not_before: datetime | None = None,
) -> list[datetime]:
    """The admission time of each of ``calls`` new calls, sending each as early as allowed, in order.

    ``history``: admission times of calls already made (at least the last day's; more is ignored).
    ``day_allowance``: calls of the day this kind of call may see used (``QuotaLimits.day_allowance``).
    Concurrency is ignored (calls are assumed short), so this is the quota's answer, not a promise.
    """
    schedule: list[datetime] = []
    if calls <= 0:
        return schedule
    minute_limit = limits.minute_limit
    times = sorted(history)
    t = max(now, not_before or now)
    first_minute = 0  # times[first_minute:] may still be in the minute window
    first_day = 0
    for _ in range(calls):
        while True:
            moment = Windows.at(t, limits, margin)
            while first_minute < len(times) and times[first_minute] <= moment.minute_cut:
                first_minute += 1
            in_minute = len(times) - first_minute
            if in_minute >= minute_limit:
                t = times[len(times) - minute_limit] + moment.minute_span
                continue
            if moment.fixed_day:
                used = len(times) - bisect_left(times, moment.day_start)
                if used >= day_allowance:
                    t = moment.day_reopens(None)
                    continue
            else:
                while first_day < len(times) and times[first_day] <= moment.day_start:
                    first_day += 1
                used = len(times) - first_day
                if used >= day_allowance:
                    t = times[len(times) - day_allowance] + moment.day_span
                    continue
            break
        times.append(t)
        schedule.append(t)
    return schedule
