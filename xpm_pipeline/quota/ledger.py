"""The shared per-tenant quota ledger: every XPM call is admitted here, atomically, before it is sent.

Why a database ledger: sync reads and export writes run in several OS processes (Dagster runs, the
CLI) and on several hosts, yet XPM counts one budget per tenant. A row per call in
``xpm_quota_ledger``, counted and inserted under a per-tenant lock, makes "is there room?" and "take
it" one atomic step for all of them:

- PostgreSQL: ``pg_advisory_xact_lock(<64-bit hash of the tenant>)`` around count + insert, so
  tenants never wait for each other and the lock ends with the transaction;
- SQLite: ``BEGIN IMMEDIATE`` (``write_transaction``): the database write lock is the tenant lock.

A call is admitted when all hold (any failing one gives the time it would pass; the latest wins):

1. the tenant (or the whole app, after an ``appminute`` 429) is not blocked by a 429's ``Retry-After``;
2. fewer than ``minute_limit`` calls in the sliding minute (``windows.py``; a call leaves it a minute
   after its *answer*, see ``measure.in_minute_window``), and XPM's last
   ``X-MinLimit-Remaining``, corrected for calls made and calls aged out since, is above zero;
3. the day's remaining calls — the lower of ``daily_limit - used`` and XPM's last
   ``X-DayLimit-Remaining`` (corrected the same way) — are above this kind of call's floor
   (``limits.py``: 0 for sync reads, the reserve for export writes, reserve + a share for background
   reads);
4. fewer than ``concurrent_limit`` calls in flight: admitted, not finished, younger than the lease
   (a crashed process's calls stop counting as in flight after ``lease`` seconds).

Every admitted call counts, whatever happens to it — a 429, a timeout, a reset: reservations are
never refunded, because XPM may have counted the call even when we saw no answer.

``before_call`` waits (``clock.sleep``) until the call can go, up to ``max_wait``; a longer wait (the
daily cap, a long ``Retry-After``) raises ``QuotaExhausted`` carrying ``available_at``, so exports
leave their items pending until then. ``after_call`` records the outcome, keeps the newest
``Remaining`` headers and, on a 429, blocks the tenant for every process until ``now + Retry-After``.
Finishing takes the tenant lock too, so stored times are the real order of events.

How counts are read cheaply is in ``measure.py``. One caveat: a call stops being "in flight" when the
client reports its answer, which ``XPMClient`` does on the response headers, before the body is read;
a long body download can thus overlap a sixth call (XPM would answer 429 ``concurrent``, Retry-After
1 s, which blocks the tenant for that second).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from xpm_pipeline.clock import Clock
from xpm_pipeline.quota import tables as T
from xpm_pipeline.quota.clocks import DatabaseClock
from xpm_pipeline.quota.limits import (
    LIMIT_FIELDS,
    READ,
    WRITE,
    LimitsSource,
    QuotaLimits,
    is_background,
    resolver,
    with_overrides,
)
from xpm_pipeline.quota.measure import Measure, Measurer, Snapshot, counted_by_xpm, minute_leaving_times
from xpm_pipeline.quota.windows import MINUTE, simulate_schedule
from xpm_pipeline.warehouse.db import dialect_name, write_transaction
from xpm_pipeline.xpm.client import CallInfo, CallResult
from xpm_pipeline.xpm.errors import XPMRateLimited

log = logging.getLogger(__name__)

LEDGER_RETENTION = timedelta(days=2)
DEFAULT_MARGIN = 1.0  # seconds added to every window, see windows.py
DEFAULT_LEASE = 300.0  # seconds an unfinished call counts as in flight
DEFAULT_MAX_WAIT = 300.0
DEFAULT_POLL = 0.1  # seconds between looks when only the in-flight cap holds a call back

# Why a call was held back (``Admission.reason``, ``QuotaExhausted.reason``).
BLOCKED, APP_BLOCKED, MINUTE_FULL, SERVER_MINUTE, DAY_FULL, SERVER_DAY, IN_FLIGHT = (
    "blocked", "app_blocked", "minute", "server_minute", "day", "server_day", "in_flight",
)


OnAdmit = Callable[[Connection, "Admission"], None]


class QuotaExhausted(XPMRateLimited):
    """The call cannot go within ``max_wait``: retry at ``available_at`` (the item stays pending).

    A subclass of ``XPMRateLimited`` so that code already treating a long 429 as "not an attempt,
    try later" treats an exhausted quota the same way.
    """

    def __init__(
        self, tenant_id: str, direction: str, available_at: datetime, *, reason: str, now: datetime, path: str = ""
    ) -> None:
        wait = max(0.0, (available_at - now).total_seconds())
        super().__init__(
            f"XPM quota for tenant {tenant_id} ({direction}s) is used up ({reason}): next call possible at "
            f"{available_at.isoformat(timespec='seconds')} (in {wait:.0f}s); leave the work pending until then",
            retry_after=wait,
            problem=reason,
            path=path,
        )
        self.tenant_id = tenant_id
        self.direction = direction
        self.available_at = available_at
        self.reason = reason


@dataclass(frozen=True)
class Admission:
    """The answer to one admission attempt."""

    tenant_id: str
    admitted: bool
    at: datetime  # the ledger's time of the decision (= admitted_at when admitted)
    call_id: int | None = None
    available_at: datetime | None = None  # not admitted: the earliest time it could be
    reason: str | None = None  # not admitted: which limit held it back


@dataclass(frozen=True)
class QuotaUsage:
    """A tenant's quota at one moment, for ``status`` and dry runs."""

    tenant_id: str
    at: datetime
    limits: QuotaLimits
    minute_calls: int
    minute_reads: int
    minute_writes: int
    day_calls: int
    day_reads: int
    day_writes: int
    in_flight: int
    minute_remaining: int  # the lower of ours and XPM's (corrected), never below 0
    day_remaining: int  # for sync reads (the whole cap)
    write_remaining: int  # for export writes (above the reserve)
    background_remaining: int  # for background reads (above reserve + low-budget share)
    server_day_remaining: int | None  # XPM's last X-DayLimit-Remaining, as sent
    server_minute_remaining: int | None
    blocked_until: datetime | None  # a 429 block still in force (tenant or app), else None
    blocked_problem: str | None

    @property
    def low_budget(self) -> bool:
        """Background reads are waiting so exports can go first."""
        return self.background_remaining <= 0 < self.write_remaining


def _lock_key(tenant_id: str) -> int:
    """A stable signed 64-bit advisory-lock key per tenant (never ``hash()``: it differs per process)."""
    digest = hashlib.blake2b(b"xpm-pipeline/quota/" + tenant_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def outcome_of(result: CallResult) -> tuple[str, int | None]:
    """The ledger's outcome word for a client result."""
    if result.status_code is None:
        return (T.NO_ANSWER if result.sent else T.NOT_SENT), None
    if result.status_code == 429:
        return T.RATE_LIMITED, 429
    return (T.OK if result.status_code < 400 else T.ERROR), result.status_code


class QuotaLedger:
    """The client's ``CallObserver`` that keeps every process of every tenant within XPM's quota.

    ``limits``: one ``QuotaLimits``, a dict by tenant, or a lookup; rows of ``xpm_quota_limits``
    override it column by column. ``clock``: ``None`` uses the database's time (production, several
    hosts); tests pass a ``ManualClock`` shared with the client and the sandbox. ``margin``: seconds
    added to each window (see ``windows.py``; 0 makes the minute window exact).

    One ledger may serve many clients and threads; each thread's calls are matched to their rows.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        limits: LimitsSource | None = None,
        margin: float = DEFAULT_MARGIN,
        lease: float = DEFAULT_LEASE,
        max_wait: float = DEFAULT_MAX_WAIT,
        poll_interval: float = DEFAULT_POLL,
        use_limits_table: bool = True,
        prune_every: float | None = 3600.0,
        limits_refresh: float = 30.0,
    ) -> None:
        self.engine = engine
        self.clock: Clock = clock if clock is not None else DatabaseClock(engine)
        self._limits_for = resolver(limits)
        self.margin = float(margin)
        self.lease = timedelta(seconds=lease)
        self.max_wait = float(max_wait)
        self.poll_interval = float(poll_interval)
        self.use_limits_table = use_limits_table
        self.prune_every = prune_every
        self._pending: dict[tuple[int, int], Admission] = {}
        self._local = threading.local()
        self._pending_lock = threading.Lock()
        self._last_prune: datetime | None = None
        self.limits_refresh = float(limits_refresh)
        self._measurer = Measurer(self.margin, self.lease)
        self._limits_cache: dict[str, tuple[float, QuotaLimits, QuotaLimits]] = {}

    @classmethod
    def from_settings(cls, engine: Engine, settings, *, clock: Clock | None = None, **kwargs) -> "QuotaLedger":
        """The ledger with XPM_DAILY_LIMIT / XPM_DAILY_RESERVE / XPM_MINUTE_LIMIT as every tenant's default."""
        kwargs.setdefault("limits", QuotaLimits.from_settings(settings))
        return cls(engine, clock=clock, **kwargs)

    def __repr__(self) -> str:
        return f"QuotaLedger({self.engine.dialect.name}, clock={self.clock!r})"

    # --- the client's observer protocol ---------------------------------------------------------

    def before_call(self, call: CallInfo) -> None:
        key = (threading.get_ident(), id(call))
        with self._pending_lock:
            stale = self._pending.pop(key, None)
        if stale is not None:  # the same call again without an outcome: that attempt is over
            self.finish(stale, None)
        handed = getattr(self._local, "handed", None)
        if handed is not None and handed.tenant_id == call.tenant_id:
            self._local.handed = None  # admitted earlier, with the caller's own bookkeeping
            admission = handed
        else:
            admission = self.admit(call)
        with self._pending_lock:
            self._pending[key] = admission

    def after_call(self, call: CallInfo, result: CallResult) -> None:
        key = (threading.get_ident(), id(call))
        with self._pending_lock:
            admission = self._pending.pop(key, None)
        if admission is None:  # a second notice for one attempt (answer lost after headers): already done
            return
        self.finish(admission, result)

    @contextmanager
    def admitted(self, admission: Admission) -> Iterator[None]:
        """Let this thread's next call of ``admission``'s tenant use an admission already taken (the
        export drain takes it in the transaction that marks its item ``sending``). Retries of that call
        are admitted as usual. An admission the block never used is finished as abandoned: it counts."""
        self._local.handed = admission
        try:
            yield
        finally:
            unused = getattr(self._local, "handed", None)
            self._local.handed = None
            if unused is not None:
                self.finish(unused, None)

    def admission_for(self, call: CallInfo) -> Admission | None:
        """This thread's admission of ``call`` awaiting its outcome (for logs and tests)."""
        with self._pending_lock:
            return self._pending.get((threading.get_ident(), id(call)))

    # --- admission ------------------------------------------------------------------------------

    def admit(self, call: CallInfo, *, max_wait: float | None = None, on_admit: OnAdmit | None = None) -> Admission:
        """Admit the call, sleeping on the clock while a limit holds it back; raise ``QuotaExhausted``
        when it could not go within ``max_wait`` seconds (default: the ledger's). ``on_admit``: see
        ``try_admit``."""
        budget = self.max_wait if max_wait is None else max_wait
        started: datetime | None = None
        while True:
            admission = self.try_admit(call, on_admit=on_admit)
            if admission.admitted:
                return admission
            started = started or admission.at
            assert admission.available_at is not None
            if (admission.available_at - started).total_seconds() > budget:
                raise QuotaExhausted(
                    call.tenant_id, call.direction, admission.available_at,
                    reason=admission.reason or "quota", now=admission.at, path=call.path,
                )
            wait = (admission.available_at - admission.at).total_seconds()
            log.debug("quota: %s %s waits %.3fs (%s)", call.tenant_id, call.path, wait, admission.reason)
            self.clock.sleep(max(wait, 1e-6))

    def try_admit(self, call: CallInfo, *, on_admit: OnAdmit | None = None) -> Admission:
        """One atomic attempt: admit and record the call now, or say when it could go and why not.

        ``on_admit(conn, admission)`` runs inside the admitting transaction, so the caller's own write
        (an export item marked ``sending``) commits together with the admission, or neither does: an
        exception from it undoes the admission and propagates.
        """
        background = is_background(call)
        with write_transaction(self.engine) as conn:
            self._lock(conn, call.tenant_id)
            now = self._now(conn)
            limits = self.limits_for(call.tenant_id, conn=conn)
            measure = self._measurer.measure(
                conn, call.tenant_id, now, limits, day_needed=limits.day_allowance(call.direction, background)
            )
            held = self._held_back(conn, call.tenant_id, measure, call.direction, background)
            if held:
                available_at, reason = max(held, key=lambda h: h[0])
                return Admission(call.tenant_id, False, now, available_at=available_at, reason=reason)
            call_id = conn.execute(
                T.ledger.insert()
                .values(
                    tenant_id=call.tenant_id,
                    admitted_at=now,
                    direction=WRITE if call.direction == WRITE else READ,
                    background=background,
                    entity=(call.entity or None) and call.entity[:40],
                    method=call.method[:8],
                    path=call.path[:300],
                    holder=_holder(),
                )
                .returning(T.ledger.c.call_id)
            ).scalar_one()
            admission = Admission(call.tenant_id, True, now, call_id=call_id)
            if on_admit is not None:
                on_admit(conn, admission)
        return admission

    def finish(self, admission: Admission, result: CallResult | None) -> None:
        """Record an admitted call's outcome (``None``: abandoned) and what XPM said about the quota.

        The row keeps counting either way: nothing is refunded.
        """
        if not admission.admitted or admission.call_id is None:
            return
        outcome, status = outcome_of(result) if result is not None else (T.ABANDONED, None)
        tenant_id = admission.tenant_id
        with write_transaction(self.engine) as conn:
            # Under the tenant lock, like admissions: a 429's block is then seen by every admission
            # stamped after it, and finished_at/admitted_at order is the real order of events.
            self._lock(conn, tenant_id)
            now = self._now(conn)
            conn.execute(
                update(T.ledger)
                .where(T.ledger.c.call_id == admission.call_id, T.ledger.c.finished_at.is_(None))
                .values(finished_at=now, outcome=outcome, status_code=status)
            )
            if result is not None:
                self._remember(conn, tenant_id, admission, result, now)
        self._maybe_prune(now)

    def _remember(
        self, conn: Connection, tenant_id: str, admission: Admission, result: CallResult, now: datetime
    ) -> None:
        """Keep XPM's newest remaining counts and extend any 429 block: one upsert per state row.

        "Newest" is by call id, not by arrival: a slow answer to an older call must not overwrite the
        count of a newer one. A block only ever grows, so a late, shorter 429 cannot shorten it.
        """
        fresh: dict[str, Any] = {}
        for window, value in (("day", result.day_remaining), ("minute", result.minute_remaining)):
            if value is not None:
                fresh.update({f"{window}_remaining": value, f"{window}_call_id": admission.call_id,
                              f"{window}_call_at": admission.at})
        if result.app_minute_remaining is not None:
            fresh["app_minute_remaining"] = result.app_minute_remaining
        block: dict[str, Any] = {}
        if result.status_code == 429:
            wait = result.retry_after if result.retry_after is not None else 60.0
            until = now + timedelta(seconds=max(0.0, wait))
            block = {"blocked_until": until, "blocked_problem": result.problem or None}
            log.info("quota: XPM answered 429 (%s) for %s; blocked until %s", result.problem, tenant_id,
                     block["blocked_until"])
        if block and result.problem == "appminute":  # the app's limit: every tenant waits
            self._upsert_state(conn, T.APP_WIDE, block, now)
            block = {}
        if fresh or block:
            self._upsert_state(conn, tenant_id, {**fresh, **block}, now)

    def _upsert_state(self, conn: Connection, tenant_id: str, values: dict[str, Any], now: datetime) -> None:
        insert = pg_insert if dialect_name(conn) == "postgresql" else sqlite_insert
        stmt = insert(T.state).values(tenant_id=tenant_id, updated_at=now, **values)
        new, old = stmt.excluded, T.state.c
        changes: dict[str, Any] = {"updated_at": now}
        for window in ("day", "minute"):
            if f"{window}_remaining" in values:
                newer = old[f"{window}_call_id"].is_(None) | (old[f"{window}_call_id"] < new[f"{window}_call_id"])
                for column in (f"{window}_remaining", f"{window}_call_id", f"{window}_call_at"):
                    changes[column] = case((newer, new[column]), else_=old[column])
        if "app_minute_remaining" in values:
            changes["app_minute_remaining"] = new.app_minute_remaining
        if "blocked_until" in values:
            longer = old.blocked_until.is_(None) | (old.blocked_until < new.blocked_until)
            for column in ("blocked_until", "blocked_problem"):
                changes[column] = case((longer, new[column]), else_=old[column])
        conn.execute(stmt.on_conflict_do_update(index_elements=[T.state.c.tenant_id], set_=changes))

    # --- the rules ------------------------------------------------------------------------------

    def _held_back(
        self, conn: Connection, tenant_id: str, m: Measure, direction: str, background: bool
    ) -> list[tuple[datetime, str]]:
        """Every limit that keeps the call from going now, with when it would let it go."""
        w, limits, now = m.windows, m.limits, m.windows.now
        held: list[tuple[datetime, str]] = []
        if m.blocked_until is not None and m.blocked_until > now:
            held.append((m.blocked_until, BLOCKED))
        if m.app_blocked_until is not None and m.app_blocked_until > now:
            held.append((m.app_blocked_until, APP_BLOCKED))
        # minute window, ours
        excess = m.minute_calls - limits.minute_limit + 1
        if excess > 0:
            leaving = minute_leaving_times(conn, tenant_id, w, self.lease)
            held.append((leaving[excess - 1] if len(leaving) >= excess else now + w.minute_span, MINUTE_FULL))
        # minute window, XPM's
        if m.minute_server is not None and m.minute_server < 1 and m.minute_snapshot is not None:
            held.append((self._server_reopens(conn, tenant_id, m.minute_snapshot, 1 - m.minute_server,
                                              MINUTE, w.minute_span, w.minute_cut), SERVER_MINUTE))
        # day, ours and XPM's, above this kind of call's floor
        floor = limits.day_floor(direction, background)
        allowance = limits.daily_limit - floor
        excess = m.day_calls - allowance + 1
        if excess > 0:
            oldest = None if w.fixed_day else self._nth_oldest(conn, tenant_id, w.day_start, False, excess)
            held.append((w.day_reopens(oldest or now), DAY_FULL))
        if m.day_server is not None and m.day_server <= floor and m.day_snapshot is not None:
            need = floor + 1 - m.day_server
            if w.fixed_day:
                reopens = w.day_reopens(None)
            else:
                reopens = self._server_reopens(conn, tenant_id, m.day_snapshot, need, timedelta(days=1),
                                               w.day_span, w.day_start)
            held.append((reopens, SERVER_DAY))
        # concurrency: no way to know when a call will finish, so look again soon (or at lease expiry)
        if m.in_flight >= limits.concurrent_limit:
            oldest = self._nth_oldest(conn, tenant_id, now - self.lease, True, 1)
            retry = now + timedelta(seconds=self.poll_interval)
            if oldest is not None:
                retry = min(retry, oldest + self.lease)
            held.append((retry, IN_FLIGHT))
        return held

    def _nth_oldest(
        self, conn: Connection, tenant_id: str, after: datetime, unfinished: bool, n: int
    ) -> datetime | None:
        """Admission time of the ``n``-th oldest call after ``after``: the one whose leaving frees a slot."""
        at = T.ledger.c.admitted_at
        stmt = select(at).where(T.ledger.c.tenant_id == tenant_id, at > after)
        if unfinished:
            stmt = stmt.where(T.ledger.c.finished_at.is_(None))
        return conn.execute(stmt.order_by(at, T.ledger.c.call_id).offset(n - 1).limit(1)).scalar_one_or_none()

    def _server_reopens(
        self, conn: Connection, tenant_id: str, snap: Snapshot, need: int, bare: timedelta, span: timedelta,
        cut: datetime,
    ) -> datetime:
        """When XPM's count (as of ``snap``) will have freed ``need`` more calls: the calls it had counted
        leave its window one by one; if we do not know enough of them, when the snapshot expires."""
        c = T.ledger.c
        stmt = (
            select(c.admitted_at)
            .where(c.tenant_id == tenant_id, c.call_id < snap.call_id, counted_by_xpm(),
                   c.admitted_at > max(snap.call_at - bare, cut))
            .order_by(c.admitted_at, c.call_id)
            .offset(need - 1)
            .limit(1)
        )
        leaving = conn.execute(stmt).scalar_one_or_none()
        expires = snap.call_at + span
        return min(leaving + span, expires) if leaving is not None else expires

    # --- measuring ------------------------------------------------------------------------------

    def limits_for(self, tenant_id: str, *, conn: Connection | None = None) -> QuotaLimits:
        """The tenant's limits: the configured ones with any ``xpm_quota_limits`` row applied.

        Table rows are re-read at most every ``limits_refresh`` seconds of real time: limits change
        rarely, and admissions are frequent.
        """
        base = self._limits_for(tenant_id)
        if not self.use_limits_table:
            return base
        cached = self._limits_cache.get(tenant_id)
        if cached is not None and cached[0] > time.monotonic() and cached[1] == base:
            return cached[2]
        stmt = select(*(T.limits.c[name] for name in LIMIT_FIELDS)).where(T.limits.c.tenant_id == tenant_id)
        if conn is None:
            with self.engine.connect() as own:
                row = own.execute(stmt).one_or_none()
        else:
            row = conn.execute(stmt).one_or_none()
        try:
            limits = with_overrides(base, row._mapping) if row is not None else base
        except ValueError as exc:
            raise ValueError(f"xpm_quota_limits for tenant {tenant_id} do not fit the defaults: {exc}") from None
        if self.limits_refresh > 0:
            self._limits_cache[tenant_id] = (time.monotonic() + self.limits_refresh, base, limits)
        return limits

    def forget_limits(self) -> None:
        """Re-read ``xpm_quota_limits`` on the next admission (after ``set_tenant_limits``)."""
        self._limits_cache.clear()

    # --- read-side helpers: status and dry runs ---------------------------------------------------

    def usage(self, tenant_id: str) -> QuotaUsage:
        """Calls in the last minute and day by direction, what remains, and any 429 block."""
        with self.engine.connect() as conn:
            now = self._now(conn)
            m = self._measurer.measure(conn, tenant_id, now, self.limits_for(tenant_id, conn=conn))
        limits = m.limits
        day = m.day_remaining
        blocks = [(b, p) for b, p in ((m.blocked_until, m.blocked_problem), (m.app_blocked_until, "appminute"))
                  if b is not None and b > now]
        blocked_until, problem = max(blocks, key=lambda b: b[0]) if blocks else (None, None)
        return QuotaUsage(
            tenant_id=tenant_id,
            at=now,
            limits=limits,
            minute_calls=m.minute_calls,
            minute_reads=m.minute_calls - m.minute_writes,
            minute_writes=m.minute_writes,
            day_calls=m.day_calls,
            day_reads=m.day_calls - m.day_writes,
            day_writes=m.day_writes,
            in_flight=m.in_flight,
            minute_remaining=max(0, m.minute_remaining),
            day_remaining=max(0, day),
            write_remaining=max(0, day - limits.day_floor(WRITE)),
            background_remaining=max(0, day - limits.day_floor(READ, background=True)),
            server_day_remaining=m.server_raw[0],
            server_minute_remaining=m.server_raw[1],
            blocked_until=blocked_until,
            blocked_problem=problem,
        )

    def eta(self, tenant_id: str, calls: int, direction: str = WRITE, *, background: bool = False) -> datetime:
        """When the last of ``calls`` more calls could be admitted at the current quota (an estimate:
        it assumes nobody else calls meanwhile and ignores concurrency)."""
        schedule = self.schedule(tenant_id, calls, direction, background=background)
        return schedule[-1] if schedule else self.clock.now()

    def schedule(
        self, tenant_id: str, calls: int, direction: str = WRITE, *, background: bool = False
    ) -> list[datetime]:
        """When each of ``calls`` more calls could be admitted at the current quota (``eta``'s caveats):
        the export queue's ETA per item in one simulation."""
        with self.engine.connect() as conn:
            now = self._now(conn)
            m = self._measurer.measure(conn, tenant_id, now, self.limits_for(tenant_id, conn=conn))
            w = m.windows
            c = T.ledger.c
            since = min(w.day_start, w.minute_cut)
            history = list(
                conn.execute(
                    select(c.admitted_at)
                    .where(c.tenant_id == tenant_id, c.admitted_at >= since)
                    .order_by(c.admitted_at)
                ).scalars()
            )
        # XPM counting more than we know of: stand-in calls at the time of its answer, leaving with it.
        for snap, local, server in (
            (m.minute_snapshot, m.limits.minute_limit - m.minute_calls, m.minute_server),
            (m.day_snapshot, m.limits.daily_limit - m.day_calls, m.day_server),
        ):
            if snap is not None and server is not None and server < local:
                history.extend([snap.call_at] * (local - server))
        blocks = [b for b in (m.blocked_until, m.app_blocked_until) if b is not None]
        if calls <= 0:
            return []
        return simulate_schedule(
            now=now,
            calls=calls,
            limits=m.limits,
            day_allowance=m.limits.day_allowance(direction, background and direction == READ),
            history=history,
            margin=self.margin,
            not_before=max(blocks) if blocks else None,
        )

    # --- housekeeping ---------------------------------------------------------------------------

    def prune(self, *, keep: timedelta = LEDGER_RETENTION) -> int:
        """Delete ledger rows older than ``keep`` (2 days: beyond any window). Returns rows deleted."""
        with write_transaction(self.engine) as conn:
            now = self._now(conn)
            deleted = conn.execute(delete(T.ledger).where(T.ledger.c.admitted_at < now - keep)).rowcount
        self._last_prune = now
        return int(deleted or 0)

    def _maybe_prune(self, now: datetime) -> None:
        if self.prune_every is None:
            return
        if self._last_prune is None:
            self._last_prune = now  # first finish of this process: start counting from here
            return
        if (now - self._last_prune).total_seconds() >= self.prune_every:
            try:
                self.prune()
            except Exception:  # housekeeping must never fail a call
                log.warning("quota: pruning the ledger failed", exc_info=True)

    # --- plumbing -------------------------------------------------------------------------------

    def _lock(self, conn: Connection, tenant_id: str) -> None:
        """Serialize admissions of one tenant across processes (SQLite: BEGIN IMMEDIATE already did)."""
        if dialect_name(conn) == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(tenant_id)})

    def _now(self, conn: Connection) -> datetime:
        if isinstance(self.clock, DatabaseClock):
            return DatabaseClock.now_on(conn)
        return self.clock.now()


def set_tenant_limits(
    engine: Engine, tenant_id: str, *, now: datetime, note: str | None = None, **fields
) -> QuotaLimits:
    """Store per-tenant overrides (``None`` clears one back to the default); returns them applied to
    the product defaults, which also validates them."""
    unknown = set(fields) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown quota limit(s): {', '.join(sorted(unknown))}")
    applied = with_overrides(QuotaLimits(), fields)
    insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
    values = {**fields, "note": note, "updated_at": now}
    with write_transaction(engine) as conn:
        stmt = insert(T.limits).values(tenant_id=tenant_id, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=[T.limits.c.tenant_id], set_=values))
    return applied


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:120]


__all__ = [
    "Admission",
    "QuotaExhausted",
    "QuotaLedger",
    "QuotaUsage",
    "set_tenant_limits",
]
