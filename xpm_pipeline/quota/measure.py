"""Reading one tenant's quota from the ledger, under its lock: window counts, XPM's last word, blocks.

Kept cheap because it runs before every call. Everything but the day count looks at a few seconds or
minutes of rows. The day count would scan up to a day of rows (10,000 a tenant), so each process
keeps a tally — the exact count at some moment plus the calls admitted since, an upper bound because
calls only ever leave the window — and counts exactly again only when that bound comes near what the
call may use, when the fixed day turns, or after a while. An upper bound can only make the ledger
stricter, never looser; near the cap it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.engine import Connection

from xpm_pipeline.quota import tables as T
from xpm_pipeline.quota.limits import WRITE, QuotaLimits
from xpm_pipeline.quota.windows import DAY, MINUTE, Windows

TALLY_MAX_AGE = timedelta(minutes=10)
TALLY_MAX_NEW = 1000
NOT_COUNTED_BY_XPM = (401, 403, 429)  # gateway refusals: XPM answers them before counting the call


@dataclass(frozen=True)
class Snapshot:
    """XPM's last remaining count for one window, and the call whose answer carried it."""

    remaining: int
    call_id: int
    call_at: datetime


@dataclass
class Measure:
    """Everything the admission rules need."""

    windows: Windows
    limits: QuotaLimits
    minute_calls: int
    day_calls: int  # exact when ``day_exact``, else an upper bound below what the call may use
    day_exact: bool
    in_flight: int
    minute_server: int | None  # XPM's remaining, brought up to now, while its snapshot is valid
    day_server: int | None
    minute_snapshot: Snapshot | None
    day_snapshot: Snapshot | None
    blocked_until: datetime | None
    blocked_problem: str | None
    app_blocked_until: datetime | None
    server_raw: tuple[int | None, int | None]  # XPM's last day / minute remaining, as sent
    minute_writes: int = 0  # filled for usage() only
    day_writes: int = 0

    @property
    def minute_remaining(self) -> int:
        local = self.limits.minute_limit - self.minute_calls
        return local if self.minute_server is None else min(local, self.minute_server)

    @property
    def day_remaining(self) -> int:
        local = self.limits.daily_limit - self.day_calls
        return local if self.day_server is None else min(local, self.day_server)


@dataclass
class _Tally:
    day_start: datetime  # fixed windows: the day counted
    counted_at: datetime
    last_call_id: int
    calls: int


def count(condition) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def in_minute_window(w: Windows, lease: timedelta):
    """Calls XPM may still hold in its sliding minute: those *answered* after the cut, and unanswered
    ones (in flight, or lost) until their lease has run out plus a minute.

    XPM counts a call when it arrives, somewhere between our admission and our receipt of its answer.
    Ageing a call out by its answer time, the last moment XPM can have counted it, keeps the window
    safe however long a request took to reach XPM (a stalled process, a slow network); ageing it out
    by its admission time would let a call that arrived late make XPM count 61.
    """
    c = T.ledger.c
    return or_(c.finished_at > w.minute_cut, and_(c.finished_at.is_(None), c.admitted_at > w.minute_cut - lease))


def minute_leaving_times(conn: Connection, tenant_id: str, w: Windows, lease: timedelta) -> list[datetime]:
    """When each call in the minute window stops counting there (``+ minute_span``), soonest first."""
    c = T.ledger.c
    rows = conn.execute(
        select(c.admitted_at, c.finished_at).where(
            c.tenant_id == tenant_id, c.admitted_at > w.minute_cut - lease, in_minute_window(w, lease)
        )
    ).all()
    return sorted((finished or admitted + lease) + w.minute_span for admitted, finished in rows)


def counted_by_xpm():
    """Ledger rows XPM certainly counted: it answered them, and not with a gateway refusal."""
    status = T.ledger.c.status_code
    return and_(status.is_not(None), status.not_in(NOT_COUNTED_BY_XPM))


class Measurer:
    """Measures tenants for one ledger; holds this process's day tallies."""

    def __init__(self, margin: float, lease: timedelta) -> None:
        self.margin = margin
        self.lease = lease
        self._tallies: dict[str, _Tally] = {}

    def measure(
        self, conn: Connection, tenant_id: str, now: datetime, limits: QuotaLimits, *, day_needed: int | None = None
    ) -> Measure:
        """Measure the tenant. ``day_needed``: the day count only has to be exact from this many calls
        on (the call's allowance); ``None`` asks for exact counts, writes included (``usage``)."""
        w = Windows.at(now, limits, self.margin)
        c = T.ledger.c
        rows = {r.tenant_id: r for r in conn.execute(
            select(T.state).where(T.state.c.tenant_id.in_([tenant_id, T.APP_WIDE]))
        )}
        mine, app = rows.get(tenant_id), rows.get(T.APP_WIDE)
        minute_snap = day_snap = None
        if mine is not None:
            if mine.minute_remaining is not None and now < mine.minute_call_at + w.minute_span:
                minute_snap = Snapshot(mine.minute_remaining, mine.minute_call_id, mine.minute_call_at)
            if mine.day_remaining is not None and (
                mine.day_call_at >= w.day_start if w.fixed_day else now < mine.day_call_at + w.day_span
            ):
                day_snap = Snapshot(mine.day_remaining, mine.day_call_id, mine.day_call_at)

        # XPM's remaining count as of call S, brought up to now: minus our calls after S still in the
        # window, plus calls before S that XPM surely counted and that have left the window since.
        # Calls XPM may not have counted (429, 401, 403, no answer, S itself) are never credited, so
        # the estimate can only be low, never high.
        in_day = c.admitted_at >= w.day_start if w.fixed_day else c.admitted_at > w.day_start
        lease_cut = now - self.lease
        in_minute = in_minute_window(w, self.lease)
        exact = day_needed is None
        columns = {
            "minute": count(in_minute),
            "in_flight": count(and_(c.finished_at.is_(None), c.admitted_at > lease_cut)),
        }
        lower = min(w.minute_cut - self.lease, lease_cut)
        if exact:
            columns["minute_w"] = count(and_(in_minute, c.direction == WRITE))
        if minute_snap is not None:
            since = minute_snap.call_at - MINUTE
            columns["minute_later"] = count(and_(c.call_id > minute_snap.call_id, in_minute))
            columns["minute_left"] = count(and_(
                c.call_id < minute_snap.call_id, counted_by_xpm(), c.admitted_at > since, c.admitted_at <= w.minute_cut
            ))
            lower = min(lower, since)
        if day_snap is not None:
            # calls after S were admitted after it (admissions of a tenant are serialized)
            columns["day_later"] = count(and_(c.call_id > day_snap.call_id, in_day))
            lower = min(lower, day_snap.call_at)
        counts = dict(conn.execute(
            select(*(expr.label(name) for name, expr in columns.items()))
            .where(c.tenant_id == tenant_id, c.admitted_at >= lower)
        ).one()._mapping)
        if day_snap is not None and not w.fixed_day:
            since = day_snap.call_at - DAY  # the calls XPM's window held then, that ours no longer holds
            counts["day_left"] = conn.execute(select(func.count()).where(
                c.tenant_id == tenant_id, c.call_id < day_snap.call_id, counted_by_xpm(),
                c.admitted_at > since, c.admitted_at <= w.day_start,
            )).scalar_one()

        day_calls, day_writes, day_exact = self._day(conn, tenant_id, w, in_day, day_needed)

        def corrected(snap: Snapshot | None, window: str) -> int | None:
            if snap is None:
                return None
            return snap.remaining + int(counts.get(f"{window}_left", 0)) - int(counts[f"{window}_later"])

        return Measure(
            windows=w,
            limits=limits,
            minute_calls=int(counts["minute"]),
            day_calls=day_calls,
            day_exact=day_exact,
            in_flight=int(counts["in_flight"]),
            minute_server=corrected(minute_snap, "minute"),
            day_server=corrected(day_snap, "day"),
            minute_snapshot=minute_snap,
            day_snapshot=day_snap,
            blocked_until=mine.blocked_until if mine is not None else None,
            blocked_problem=mine.blocked_problem if mine is not None else None,
            app_blocked_until=app.blocked_until if app is not None else None,
            server_raw=(mine.day_remaining, mine.minute_remaining) if mine is not None else (None, None),
            minute_writes=int(counts.get("minute_w", 0)),
            day_writes=day_writes,
        )

    def _day(self, conn: Connection, tenant_id: str, w: Windows, in_day, day_needed: int | None):
        """(calls, writes, exact) in the day window, from the tally when it is safely below ``day_needed``."""
        c = T.ledger.c
        tally = self._tallies.get(tenant_id)
        if (
            day_needed is not None
            and tally is not None
            and (not w.fixed_day or tally.day_start == w.day_start)
            and w.now - tally.counted_at < TALLY_MAX_AGE
        ):
            new = conn.execute(
                select(func.count()).where(c.tenant_id == tenant_id, c.call_id > tally.last_call_id)
            ).scalar_one()
            if new < TALLY_MAX_NEW and tally.calls + new < day_needed:
                return tally.calls + new, 0, False
        calls, writes, last = conn.execute(
            select(func.count(), count(c.direction == WRITE), func.max(c.call_id))
            .where(c.tenant_id == tenant_id, in_day)
        ).one()
        if last is None:  # nothing in the window: everything after the newest call so far is new
            last = conn.execute(select(func.max(c.call_id)).where(c.tenant_id == tenant_id)).scalar_one() or 0
        self._tallies[tenant_id] = _Tally(w.day_start, w.now, int(last), int(calls))
        return int(calls), int(writes), True

    def forget(self) -> None:
        self._tallies.clear()
