"""The quota tables (migration 10): one row per XPM call, one state row per tenant, optional limits.

Why one row per call rather than counters: XPM's minute window slides (60 calls in *any* 60 s), so the
ledger must know when each call happened to say when the next one may go; rows also give "calls
today by direction and entity" for the status command, and are pruned after two days.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text
from sqlalchemy.engine import Connection

from xpm_pipeline.warehouse.control import metadata
from xpm_pipeline.warehouse.db import UtcDateTime
from xpm_pipeline.warehouse.migrate import migration

VERSION = 10
NAME = "quota: xpm_quota_ledger, xpm_quota_state, xpm_quota_limits"
APP_WIDE = "*"
"""``xpm_quota_state.tenant_id`` of the app-wide row (a 429 ``appminute`` blocks every tenant)."""

# Outcomes of a call; NULL while it is in flight.
OK, ERROR, RATE_LIMITED, NO_ANSWER, NOT_SENT, ABANDONED = (
    "ok", "error", "rate_limited", "no_answer", "not_sent", "abandoned",
)

ledger = Table(
    "xpm_quota_ledger",
    metadata,
    Column(
        "call_id",
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
        comment="Admission order (increasing per tenant: admissions of a tenant are serialized).",
    ),
    Column("tenant_id", String(64), nullable=False, comment="XPM organisation (Xero-Tenant-Id) the call spends."),
    Column(
        "admitted_at", UtcDateTime, nullable=False, comment="When the ledger admitted the call (just before sending)."
    ),
    Column("direction", String(5), nullable=False, comment="read (sync) | write (export)."),
    Column(
        "background", Boolean, nullable=False, default=False,
        comment="A read that yields when the budget is low (nightly reconcile).",
    ),
    Column("entity", String(40), nullable=True, comment="Entity of the call (job, timesheet, ...), when known."),
    Column("method", String(8), nullable=False, comment="HTTP method."),
    Column("path", String(300), nullable=False, comment="XPM path without the base, e.g. time.api/add."),
    Column("holder", String(120), nullable=False, comment="host:pid of the process that made the call."),
    Column("finished_at", UtcDateTime, nullable=True, comment="When the outcome was recorded; NULL while in flight."),
    Column(
        "outcome",
        String(16),
        nullable=True,
        comment="ok | error | rate_limited (429) | no_answer | not_sent | abandoned; NULL while in flight. "
        "Every row counts against the limits, whatever its outcome (never refunded).",
    ),
    Column("status_code", Integer, nullable=True, comment="HTTP status, when an answer came."),
    sqlite_autoincrement=True,  # never reuse a call_id: header snapshots refer to them
    comment="One row per XPM call admitted by the quota ledger, shared by every process; pruned after 2 days.",
)
Index("ix_xpm_quota_ledger_tenant_at", ledger.c.tenant_id, ledger.c.admitted_at)

state = Table(
    "xpm_quota_state",
    metadata,
    Column("tenant_id", String(64), primary_key=True, comment="XPM organisation, or * for the whole app."),
    Column("blocked_until", UtcDateTime, nullable=True, comment="No call before this (now + Retry-After of a 429)."),
    Column("blocked_problem", String(20), nullable=True, comment="X-Rate-Limit-Problem of that 429 (lowercase)."),
    Column("day_remaining", Integer, nullable=True, comment="Last X-DayLimit-Remaining XPM sent."),
    Column("day_call_id", BigInteger, nullable=True, comment="Ledger call whose answer carried day_remaining."),
    Column("day_call_at", UtcDateTime, nullable=True, comment="When that call was admitted."),
    Column("minute_remaining", Integer, nullable=True, comment="Last X-MinLimit-Remaining XPM sent."),
    Column("minute_call_id", BigInteger, nullable=True, comment="Ledger call whose answer carried minute_remaining."),
    Column("minute_call_at", UtcDateTime, nullable=True, comment="When that call was admitted."),
    Column("app_minute_remaining", Integer, nullable=True, comment="Last X-AppMinLimit-Remaining (information only)."),
    Column("updated_at", UtcDateTime, nullable=False, comment="Last change to this row."),
    comment="What XPM last told us about a tenant's quota: remaining counts and 429 blocks.",
)

limits = Table(
    "xpm_quota_limits",
    metadata,
    Column("tenant_id", String(64), primary_key=True, comment="XPM organisation these limits apply to."),
    Column("daily_limit", Integer, nullable=True, comment="Calls per day (NULL: XPM_DAILY_LIMIT)."),
    Column("daily_reserve", Integer, nullable=True, comment="Calls per day kept for syncs (NULL: XPM_DAILY_RESERVE)."),
    Column("minute_limit", Integer, nullable=True, comment="Calls in any 60 s (NULL: XPM_MINUTE_LIMIT)."),
    Column("concurrent_limit", Integer, nullable=True, comment="Calls in flight (NULL: 5)."),
    Column(
        "low_budget_share", Float, nullable=True, comment="Day share background reads leave to exports (NULL: 0.10)."
    ),
    Column("day_window", String(8), nullable=True, comment="rolling | fixed (NULL: rolling)."),
    Column("note", Text, nullable=True, comment="Why this tenant differs, e.g. 'entry tier: 1,000/day'."),
    Column("updated_at", UtcDateTime, nullable=False, comment="When the row was last set."),
    comment="Per-tenant overrides of the quota ceilings; NULL columns keep the configured default.",
)

QUOTA_TABLES = (ledger, state, limits)


@migration(VERSION, NAME)
def create_quota_tables(conn: Connection) -> None:
    """Create the quota tables (idempotent, so tests may also call it directly)."""
    metadata.create_all(conn, tables=list(QUOTA_TABLES), checkfirst=True)
