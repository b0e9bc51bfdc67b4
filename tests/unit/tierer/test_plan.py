"""Which whole days and months are due to leave a tier, aged from min(wall clock, newest row)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.tierer.plan import due_days, due_months, last_day_of_month, reference_day

NS_PER_DAY = 86_400 * 1_000_000_000
DEC_10_NOON_NS = int(dt.datetime(2026, 12, 10, 12, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def test_a_row_stamped_in_the_future_never_moves_the_reference_day() -> None:
    ten_years_ahead = DEC_10_NOON_NS + 3650 * NS_PER_DAY
    assert reference_day(wall_ns=DEC_10_NOON_NS, newest_ns=ten_years_ahead) == dt.date(2026, 12, 10)


def test_a_pipeline_that_stopped_receiving_keeps_its_last_days() -> None:
    assert reference_day(wall_ns=DEC_10_NOON_NS, newest_ns=DEC_10_NOON_NS - 30 * NS_PER_DAY) == dt.date(2026, 11, 10)
    assert reference_day(wall_ns=DEC_10_NOON_NS, newest_ns=None) == dt.date(2026, 12, 10)


def test_seven_hot_days_keep_the_4th_to_the_10th() -> None:
    days = [dt.date(2026, 12, d) for d in range(1, 11)]
    assert due_days(days, reference=dt.date(2026, 12, 10), keep_days=7) == [dt.date(2026, 12, d) for d in (1, 2, 3)]


def test_a_month_is_due_only_once_its_last_day_is() -> None:
    months = [dt.date(2025, 11, 1), dt.date(2025, 12, 1), dt.date(2026, 1, 15)]
    # 365 days before 2026-12-31 is 2025-12-31: December 2025 is just due, January 2026 is not.
    assert due_months(months, reference=dt.date(2026, 12, 31), keep_days=365) == [
        dt.date(2025, 11, 1),
        dt.date(2025, 12, 1),
    ]
    assert due_months(months, reference=dt.date(2026, 12, 30), keep_days=365) == [dt.date(2025, 11, 1)]


def test_last_day_of_month_handles_february_and_december() -> None:
    assert last_day_of_month(dt.date(2028, 2, 1)) == dt.date(2028, 2, 29)
    assert last_day_of_month(dt.date(2027, 2, 1)) == dt.date(2027, 2, 28)
    assert last_day_of_month(dt.date(2026, 12, 1)) == dt.date(2026, 12, 31)


def test_keeping_no_day_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_days"):
        due_days([], reference=dt.date(2026, 12, 10), keep_days=0)
    with pytest.raises(ValueError, match="keep_days"):
        due_months([], reference=dt.date(2026, 12, 10), keep_days=0)


@given(
    days=st.lists(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)), max_size=50),
    reference=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2100, 1, 1)),
    keep_days=st.integers(min_value=1, max_value=4000),
)
def test_due_days_are_exactly_the_old_ones_and_never_the_kept_window(
    days: list[dt.date], reference: dt.date, keep_days: int
) -> None:
    due = due_days(days, reference=reference, keep_days=keep_days)
    assert due == sorted(set(due))
    assert set(due) == {d for d in days if (reference - d).days >= keep_days}
