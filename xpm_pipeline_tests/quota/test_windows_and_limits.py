"""The pure parts: window cut-offs, the "when could N calls go" simulation, budgets per kind of call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from xpm_pipeline.quota import QuotaLimits, background_reads
from xpm_pipeline.quota.limits import is_background, resolver, with_overrides
from xpm_pipeline.quota.windows import Windows, simulate_eta

from .conftest import read, write

NOW = datetime(2026, 11, 23, 23, 59, 30, tzinfo=timezone.utc)
S = timedelta(seconds=1)


def test_window_cut_offs_with_and_without_margin():
    rolling = Windows.at(NOW, QuotaLimits(), margin=0)
    assert rolling.minute_cut == NOW - 60 * S and rolling.day_start == NOW - timedelta(days=1)
    assert rolling.in_day(NOW - timedelta(days=1) + S) and not rolling.in_day(NOW - timedelta(days=1))
    padded = Windows.at(NOW, QuotaLimits(), margin=1.0)
    assert padded.minute_cut == NOW - 61 * S
    fixed = Windows.at(NOW, QuotaLimits(day_window="fixed"), margin=0)
    midnight = datetime(2026, 11, 23, tzinfo=timezone.utc)
    assert fixed.day_start == midnight and fixed.in_day(midnight)
    assert fixed.day_reopens(None) == midnight + timedelta(days=1)
    # a second past midnight with a 2 s margin still counts yesterday: XPM's clock may be behind ours
    late = Windows.at(midnight + timedelta(days=1, seconds=1), QuotaLimits(day_window="fixed"), margin=2.0)
    assert late.day_start == midnight and late.day_reopens(None) == midnight + timedelta(days=1, seconds=2)


def test_eta_follows_the_sliding_minute():
    limits = QuotaLimits(minute_limit=60)
    assert simulate_eta(now=NOW, calls=60, limits=limits, day_allowance=10_000, history=[]) == NOW
    assert simulate_eta(now=NOW, calls=61, limits=limits, day_allowance=10_000, history=[]) == NOW + 60 * S
    assert simulate_eta(now=NOW, calls=121, limits=limits, day_allowance=10_000, history=[]) == NOW + 120 * S
    history = [NOW - 30 * S] * 60  # a full minute half a minute ago
    assert simulate_eta(now=NOW, calls=1, limits=limits, day_allowance=10_000, history=history) == NOW + 30 * S
    blocked = NOW + 45 * S
    eta = simulate_eta(now=NOW, calls=1, limits=limits, day_allowance=10_000, history=[], not_before=blocked)
    assert eta == blocked


def test_eta_follows_the_day():
    rolling = QuotaLimits(minute_limit=100, daily_limit=10, daily_reserve=0)
    history = [NOW - timedelta(hours=h) for h in range(10, 0, -1)]  # 10 calls, one an hour
    eta = simulate_eta(now=NOW, calls=2, limits=rolling, day_allowance=10, history=history)
    assert eta == NOW - timedelta(hours=9) + timedelta(days=1)  # the second-oldest leaves the 24 h
    fixed = QuotaLimits(minute_limit=100, daily_limit=10, daily_reserve=0, day_window="fixed")
    today = [NOW - timedelta(minutes=m) for m in range(10)]
    midnight = datetime(2026, 11, 24, tzinfo=timezone.utc)
    assert simulate_eta(now=NOW, calls=1, limits=fixed, day_allowance=10, history=today) == midnight
    eta = simulate_eta(now=NOW, calls=11, limits=fixed, day_allowance=10, history=today)
    assert eta == midnight + timedelta(days=1)


def test_budgets_per_kind_of_call():
    limits = QuotaLimits()  # 10,000 a day, 200 kept for syncs, 10 % more left alone by background reads
    assert limits.day_allowance("read") == 10_000
    assert limits.day_allowance("write") == 9_800
    assert limits.day_allowance("read", background=True) == 8_800
    assert limits.day_allowance("write", background=True) == 9_800  # writes are never background
    tiny = QuotaLimits(daily_limit=3, daily_reserve=2, low_budget_share=0.9)
    assert tiny.day_allowance("read", background=True) == 1  # never zero: background work still creeps on


@pytest.mark.parametrize(
    "bad",
    [dict(daily_limit=0), dict(daily_reserve=10_000), dict(daily_reserve=-1), dict(minute_limit=0),
     dict(concurrent_limit=0), dict(low_budget_share=1.0), dict(day_window="weekly")],
)
def test_limits_are_validated(bad):
    with pytest.raises(ValueError):
        QuotaLimits(**bad)


def test_limits_sources():
    special = QuotaLimits(daily_limit=5000)
    assert resolver(None)("t") == QuotaLimits()
    assert resolver(special)("t") == special
    by_tenant = resolver({"a": special})
    assert by_tenant("a") == special and by_tenant("b") == QuotaLimits()
    assert resolver(lambda tenant: special)("x") == special
    with pytest.raises(TypeError):
        resolver(42)
    assert with_overrides(special, {"minute_limit": 30, "daily_limit": None, "note": "x"}) == QuotaLimits(
        daily_limit=5000, minute_limit=30
    )


def test_background_reads_are_marked_by_context():
    assert not is_background(read())
    with background_reads():
        assert is_background(read())
        assert not is_background(write())
        with background_reads():
            pass
        assert is_background(read())
    assert not is_background(read())
