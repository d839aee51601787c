from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from xpm_pipeline.xpm.windows import MAX_WINDOW_DAYS, add_months, month_windows, split_range

dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1))


def _covers_exactly(windows, start, end):
    assert windows[0].start == start and windows[-1].end == end
    for previous, current in zip(windows, windows[1:]):
        assert current.start == previous.end + timedelta(days=1)


@given(dates, st.integers(min_value=0, max_value=2000))
def test_split_range_covers_without_gaps_or_overlap(start, span):
    end = start + timedelta(days=span)
    windows = split_range(start, end)
    _covers_exactly(windows, start, end)
    assert all(w.days <= MAX_WINDOW_DAYS for w in windows)
    assert len(windows) == -(-(span + 1) // MAX_WINDOW_DAYS)


@given(dates, st.integers(min_value=0, max_value=1500))
def test_month_windows_stay_in_one_month(start, span):
    end = start + timedelta(days=span)
    windows = month_windows(start, end)
    _covers_exactly(windows, start, end)
    assert all((w.start.year, w.start.month) == (w.end.year, w.end.month) for w in windows)


def test_initial_sync_range_is_49_months():
    today = date(2026, 11, 23)
    assert len(month_windows(add_months(today, -36), add_months(today, 12))) == 49


def test_params_use_xpm_format():
    assert split_range(date(2026, 1, 1), date(2026, 1, 31))[0].params() == {"from": "20260101", "to": "20260131"}


def test_add_months_clamps():
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 2, 29), -12) == date(2023, 2, 28)
    assert add_months(date(2026, 11, 23), -15) == date(2025, 8, 23)
