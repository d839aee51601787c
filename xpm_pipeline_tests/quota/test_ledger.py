"""The ledger's rules on both dialects, on a manual clock: windows, caps, blocks, headers, leases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, select

from xpm_pipeline.config import Settings
from xpm_pipeline.quota import QuotaExhausted, QuotaLedger, QuotaLimits, background_reads, set_tenant_limits
from xpm_pipeline.quota import tables as T
from xpm_pipeline.quota.ledger import _lock_key
from xpm_pipeline.warehouse.db import make_engine
from xpm_pipeline.warehouse.migrate import applied_versions, migrate
from xpm_pipeline.xpm.client import CallResult
from xpm_pipeline.xpm.errors import XPMRateLimited

from .conftest import OK, OTHER, START, TENANT, read, spend, write

MINUTE = timedelta(seconds=60)


def rows(engine, tenant=TENANT):
    with engine.connect() as conn:
        return conn.execute(
            select(T.ledger).where(T.ledger.c.tenant_id == tenant).order_by(T.ledger.c.call_id)
        ).all()


# --- the sliding minute ----------------------------------------------------------------------------


def test_61st_call_waits_exactly_until_the_first_leaves_the_window(make_ledger, clock):
    ledger = make_ledger(minute_limit=60)
    first = spend(ledger, 1)[0]
    clock.advance(0.25)
    spend(ledger, 59)
    assert clock.sleeps == []
    sixty_first = spend(ledger, 1)[0]
    assert sixty_first == first + MINUTE  # not a microsecond earlier or later
    assert clock.sleeps == [59.75]
    # the 62nd waits for the 2nd call (at +0.25 s) to leave
    assert spend(ledger, 1)[0] == first + MINUTE + timedelta(seconds=0.25)


def test_the_window_slides_rather_than_refilling_like_a_bucket(make_ledger, clock):
    ledger = make_ledger(minute_limit=10)
    spend(ledger, 5)  # t = 0
    clock.advance(50)
    spend(ledger, 5)  # t = 50
    clock.advance(10)  # t = 60: the first five left, the last five are still in the window
    assert spend(ledger, 5) == [START + timedelta(seconds=60)] * 5
    # a bucket refilled at t=60 would let the 16th call through now; the window holds it until t=110
    assert spend(ledger, 1) == [START + timedelta(seconds=110)]


def test_tenants_have_separate_budgets(make_ledger, clock):
    ledger = make_ledger(minute_limit=3)
    spend(ledger, 3)
    assert spend(ledger, 3, lambda: read(OTHER)) == [START] * 3
    assert clock.sleeps == []


# --- the day: cap, reserve, background reads --------------------------------------------------------


def test_writes_stop_at_the_reserve_and_reads_use_it(make_ledger, clock):
    ledger = make_ledger(daily_limit=20, daily_reserve=5, minute_limit=100)
    spend(ledger, 15, write)
    with pytest.raises(QuotaExhausted) as caught:
        ledger.before_call(write())
    exhausted = caught.value
    assert isinstance(exhausted, XPMRateLimited)  # "not an attempt: try later", like a long 429
    assert (exhausted.tenant_id, exhausted.direction, exhausted.reason) == (TENANT, "write", "day")
    assert exhausted.available_at == START + timedelta(days=1)  # when the first call leaves the 24 h
    assert exhausted.retry_after == pytest.approx(86400)
    assert spend(ledger, 5) == [START] * 5  # sync reads may spend the reserve
    with pytest.raises(QuotaExhausted) as caught:
        ledger.before_call(read())
    assert caught.value.available_at == START + timedelta(days=1)
    clock.set(START + timedelta(days=1))
    assert spend(ledger, 1, write) == [START + timedelta(days=1)]


def test_background_reads_wait_first_when_the_budget_runs_low(make_ledger, clock):
    ledger = make_ledger(daily_limit=20, daily_reserve=4, low_budget_share=0.25, minute_limit=100)
    with background_reads():
        spend(ledger, 11)  # floor = reserve 4 + 25 % of 20 = 9: background reads may use 11
        with pytest.raises(QuotaExhausted) as caught:
            ledger.before_call(read())
        assert caught.value.reason == "day"
        assert ledger.usage(TENANT).low_budget
        spend(ledger, 5, write)  # exports still go: 16 = 20 - reserve
    with pytest.raises(QuotaExhausted):
        ledger.before_call(write())
    spend(ledger, 4)  # plain sync reads take the reserve
    usage = ledger.usage(TENANT)
    assert (usage.day_calls, usage.day_reads, usage.day_writes, usage.day_remaining) == (20, 15, 5, 0)


def test_fixed_day_window_reopens_at_utc_midnight(make_ledger, clock):
    ledger = make_ledger(daily_limit=3, daily_reserve=1, minute_limit=100, day_window="fixed")
    clock.set(datetime(2026, 11, 23, 23, 0, 0, tzinfo=timezone.utc))
    spend(ledger, 2, write)
    with pytest.raises(QuotaExhausted) as caught:
        ledger.before_call(write())
    assert caught.value.available_at == datetime(2026, 11, 24, tzinfo=timezone.utc)
    # max_wait allowing it, the call simply waits for midnight
    ledger.max_wait = 7200
    assert spend(ledger, 1, write) == [datetime(2026, 11, 24, tzinfo=timezone.utc)]


# --- 429s -----------------------------------------------------------------------------------------


def test_a_429_blocks_every_process_until_retry_after(make_ledger, clock):
    mine = make_ledger()
    theirs = make_ledger(separate_process=True)
    limited = CallResult(status_code=429, retry_after=30.0, problem="minute")
    spend(mine, 1, result=limited)
    attempt = theirs.try_admit(write())
    assert not attempt.admitted and attempt.reason == "blocked"
    assert attempt.available_at == START + timedelta(seconds=30)
    assert spend(theirs, 1, write) == [START + timedelta(seconds=30)]
    assert clock.sleeps == [30.0]
    usage = mine.usage(TENANT)
    assert usage.day_calls == 2  # the 429 counts too: never refunded
    assert [r.outcome for r in rows(mine.engine)] == ["rate_limited", "ok"]


def test_a_long_retry_after_raises_with_its_end(make_ledger, clock):
    ledger = make_ledger()
    spend(ledger, 1, result=CallResult(status_code=429, retry_after=67000.0, problem="day"))
    with pytest.raises(QuotaExhausted) as caught:
        ledger.before_call(read())
    assert caught.value.available_at == START + timedelta(seconds=67000)
    assert caught.value.reason == "blocked"
    assert ledger.usage(TENANT).blocked_until == START + timedelta(seconds=67000)
    assert ledger.usage(TENANT).blocked_problem == "day"
    assert ledger.usage(OTHER).blocked_until is None


def test_an_app_minute_429_blocks_every_tenant(make_ledger, clock):
    ledger = make_ledger()
    spend(ledger, 1, result=CallResult(status_code=429, retry_after=12.0, problem="appminute"))
    attempt = ledger.try_admit(read(OTHER))
    assert (attempt.admitted, attempt.reason) == (False, "app_blocked")
    assert attempt.available_at == START + timedelta(seconds=12)
    assert ledger.usage(OTHER).blocked_problem == "appminute"


def test_a_later_shorter_block_does_not_shorten_an_earlier_one(make_ledger, clock):
    ledger = make_ledger()
    first, second = read(), read()
    ledger.before_call(first)
    ledger.before_call(second)  # both in flight when XPM starts refusing
    ledger.after_call(first, CallResult(status_code=429, retry_after=100.0, problem="day"))
    ledger.after_call(second, CallResult(status_code=429, retry_after=10.0, problem="minute"))
    usage = ledger.usage(TENANT)
    assert (usage.blocked_until, usage.blocked_problem) == (START + timedelta(seconds=100), "day")


# --- XPM's headers tighten the local count ----------------------------------------------------------


def test_day_remaining_header_lowers_the_configured_cap(make_ledger, clock):
    # configured 1,000/day, but XPM says only 25 remain (the tenant is on a smaller plan)
    ledger = make_ledger(daily_limit=1000, daily_reserve=20, minute_limit=1000)
    spend(ledger, 1, result=CallResult(status_code=200, day_remaining=25))
    spend(ledger, 5, write)  # 25 -> 20: writes stop at the reserve, as XPM counts it
    with pytest.raises(QuotaExhausted) as caught:
        ledger.before_call(write())
    assert caught.value.reason == "server_day"
    assert caught.value.available_at == START + timedelta(days=1)  # the snapshot's call leaves XPM's day
    spend(ledger, 20)  # sync reads take XPM's last 20
    with pytest.raises(QuotaExhausted):
        ledger.before_call(read())
    usage = ledger.usage(TENANT)
    assert (usage.day_remaining, usage.write_remaining, usage.server_day_remaining) == (0, 0, 25)


def test_newest_headers_win_and_late_answers_of_older_calls_are_ignored(make_ledger, clock):
    ledger = make_ledger(daily_limit=1000, daily_reserve=0, minute_limit=1000)
    older, newer = read(), read()
    ledger.before_call(older)
    ledger.before_call(newer)
    ledger.after_call(newer, CallResult(status_code=200, day_remaining=500))
    ledger.after_call(older, CallResult(status_code=200, day_remaining=3))  # slow answer, stale count
    assert ledger.usage(TENANT).server_day_remaining == 500
    assert ledger.usage(TENANT).day_remaining == 500


def test_minute_remaining_header_counts_calls_we_did_not_make(make_ledger, clock):
    ledger = make_ledger(minute_limit=60)
    spend(ledger, 3)  # t = 0
    clock.advance(10)
    # XPM says the minute is full (someone else used this connection): nothing more until one leaves
    spend(ledger, 1, result=CallResult(status_code=200, minute_remaining=0))
    attempt = ledger.try_admit(read())
    assert (attempt.admitted, attempt.reason) == (False, "server_minute")
    # our own calls from t=0 were in XPM's count; the first leaving frees a slot
    assert attempt.available_at == START + MINUTE
    assert spend(ledger, 1) == [START + MINUTE]
    # two more leave at the same instant; then XPM's unknown calls keep us waiting until the snapshot
    # (taken at t=10) has left the window
    assert spend(ledger, 2) == [START + MINUTE] * 2
    assert spend(ledger, 1) == [START + timedelta(seconds=70)]


def test_a_429_answer_is_not_credited_back_when_it_leaves(make_ledger, clock):
    ledger = make_ledger(minute_limit=60)
    spend(ledger, 1, result=CallResult(status_code=429, retry_after=1.0, problem="concurrent"))
    clock.advance(5)
    spend(ledger, 1, result=CallResult(status_code=200, minute_remaining=0))
    # XPM never counted the 429, so its leaving at t=60 frees nothing: wait for the snapshot to expire
    assert spend(ledger, 1) == [START + timedelta(seconds=65)]


# --- in flight --------------------------------------------------------------------------------------


def test_five_calls_in_flight_at_most(make_ledger, clock):
    ledger = make_ledger(concurrent_limit=5, ledger_kwargs={"poll_interval": 0.5})
    admitted = [ledger.try_admit(read()) for _ in range(5)]
    assert all(a.admitted for a in admitted)
    sixth = ledger.try_admit(read())
    assert (sixth.admitted, sixth.reason) == (False, "in_flight")
    assert sixth.available_at == START + timedelta(seconds=0.5)
    ledger.finish(admitted[0], OK)
    assert ledger.try_admit(read()).admitted
    assert ledger.usage(TENANT).in_flight == 5


def test_a_crashed_callers_calls_stop_counting_as_in_flight_after_the_lease(make_ledger, clock):
    crashed = make_ledger(concurrent_limit=2, separate_process=True)
    for _ in range(2):
        assert crashed.try_admit(write()).admitted  # never finished: the process died
    ledger = make_ledger(concurrent_limit=2, ledger_kwargs={"lease": 2.0, "poll_interval": 0.5})
    assert spend(ledger, 1) == [START + timedelta(seconds=2)]
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]
    assert ledger.usage(TENANT).day_calls == 3  # still counted, only no longer in flight


# --- bookkeeping ------------------------------------------------------------------------------------


def test_every_outcome_is_recorded_and_nothing_is_refunded(make_ledger, clock):
    ledger = make_ledger()
    spend(ledger, 1, result=CallResult(status_code=200))
    spend(ledger, 1, result=CallResult(status_code=500))
    spend(ledger, 1, result=CallResult(status_code=None, sent=True))  # timeout after sending
    spend(ledger, 1, result=CallResult(status_code=None, sent=False))  # connection refused
    got = [(r.outcome, r.status_code, r.direction, r.entity, r.path) for r in rows(ledger.engine)]
    assert got == [
        ("ok", 200, "read", "staff", "staff.api/list"),
        ("error", 500, "read", "staff", "staff.api/list"),
        ("no_answer", None, "read", "staff", "staff.api/list"),
        ("not_sent", None, "read", "staff", "staff.api/list"),
    ]
    assert all(r.finished_at == START and ":" in r.holder for r in rows(ledger.engine))
    assert ledger.usage(TENANT).day_calls == 4


def test_a_second_notice_is_ignored_and_a_repeat_without_outcome_is_abandoned(make_ledger, clock):
    ledger = make_ledger()
    call = read()
    ledger.before_call(call)
    ledger.after_call(call, OK)
    ledger.after_call(call, CallResult(status_code=None, sent=True))  # the client's "answer lost" notice
    ledger.before_call(call)  # retried without an outcome for the first attempt
    ledger.before_call(call)
    ledger.after_call(call, OK)
    assert [r.outcome for r in rows(ledger.engine)] == ["ok", "abandoned", "ok"]


def test_per_tenant_limits_from_a_dict_and_the_limits_table(engine, clock):
    ledger = QuotaLedger(
        engine, clock=clock, margin=0, limits={OTHER: QuotaLimits(minute_limit=2)}
    )
    spend(ledger, 2, lambda: read(OTHER))
    assert not ledger.try_admit(read(OTHER)).admitted
    assert spend(ledger, 3) == [START] * 3  # TENANT has the defaults
    applied = set_tenant_limits(engine, TENANT, now=clock.now(), minute_limit=3, daily_limit=5000, note="5,000 plan")
    assert ledger.limits_for(TENANT) == QuotaLimits()  # cached for limits_refresh seconds ...
    ledger.forget_limits()  # ... unless told
    assert applied.daily_limit == 5000
    assert ledger.limits_for(TENANT) == QuotaLimits(minute_limit=3, daily_limit=5000)
    assert ledger.try_admit(read()).reason == "minute"
    set_tenant_limits(engine, TENANT, now=clock.now(), minute_limit=None)  # back to the default
    ledger.forget_limits()
    assert ledger.limits_for(TENANT).minute_limit == 60
    with pytest.raises(ValueError):
        set_tenant_limits(engine, TENANT, now=clock.now(), daily_reserve=6000, daily_limit=5000)
    with pytest.raises(ValueError):
        set_tenant_limits(engine, TENANT, now=clock.now(), hourly_limit=4)


def test_usage_and_eta_for_status_and_dry_runs(make_ledger, clock):
    ledger = make_ledger(minute_limit=10, daily_limit=100, daily_reserve=10)
    spend(ledger, 6)
    spend(ledger, 4, write)
    usage = ledger.usage(TENANT)
    assert (usage.minute_calls, usage.minute_reads, usage.minute_writes, usage.in_flight) == (10, 6, 4, 0)
    assert (usage.minute_remaining, usage.day_remaining, usage.write_remaining) == (0, 90, 80)
    assert ledger.eta(TENANT, 0) == START
    assert ledger.eta(TENANT, 1) == START + MINUTE
    assert ledger.eta(TENANT, 10) == START + MINUTE
    assert ledger.eta(TENANT, 11) == START + 2 * MINUTE
    assert ledger.eta(TENANT, 80, "write") == START + 8 * MINUTE
    assert ledger.eta(TENANT, 81, "write") == START + timedelta(days=1)  # past the writes' share of today
    assert ledger.eta(TENANT, 90, "read") == START + 9 * MINUTE


def test_prune_keeps_two_days(make_ledger, clock):
    ledger = make_ledger()
    spend(ledger, 3)
    clock.advance(timedelta(days=1).total_seconds())
    spend(ledger, 2)
    clock.advance(timedelta(days=1, seconds=1).total_seconds())
    assert ledger.prune() == 3
    assert len(rows(ledger.engine)) == 2


def test_migration_10_creates_the_tables(warehouse_url):
    engine = make_engine(warehouse_url)
    try:
        migrate(engine)
        assert 10 in applied_versions(engine)
        names = set(inspect(engine).get_table_names())
        assert {"xpm_quota_ledger", "xpm_quota_state", "xpm_quota_limits"} <= names
    finally:
        engine.dispose()


def test_the_database_clock_stamps_calls(engine):
    ledger = QuotaLedger(engine)  # no clock: the database's
    before = datetime.now(timezone.utc)
    admitted = spend(ledger, 2)
    after = datetime.now(timezone.utc)
    assert before - timedelta(seconds=2) <= admitted[0] <= admitted[1] <= after + timedelta(seconds=2)
    assert ledger.usage(TENANT).day_calls == 2


def test_limits_come_from_settings():
    settings = Settings.from_env({"XPM_DAILY_LIMIT": "5000", "XPM_DAILY_RESERVE": "150", "XPM_MINUTE_LIMIT": "30"})
    limits = QuotaLimits.from_settings(settings)
    assert (limits.daily_limit, limits.daily_reserve, limits.minute_limit) == (5000, 150, 30)
    assert limits.concurrent_limit == 5
    assert limits.day_allowance("write") == 4850 and limits.day_allowance("read") == 5000
    assert limits.day_allowance("read", background=True) == 5000 - 150 - 500


def test_advisory_lock_keys_are_stable_and_distinct():
    assert _lock_key("a") == _lock_key("a") != _lock_key("b")
    assert -(2**63) <= _lock_key("tenant") < 2**63
