"""The status statistics, pure: rates from two samples, ages as short text, no rate from a reset counter."""

from __future__ import annotations

import pytest

from tickstrata_operator.feed_stats import Sample, age_text, parse_sample, status_fields

SEC = 1_000_000_000


def test_the_rate_is_the_difference_over_the_time_between_samples() -> None:
    previous, current = Sample(1_000, 5 * SEC, 10 * SEC), Sample(1_600, 11 * SEC, 12 * SEC)
    assert status_fields(previous, current, now_wall_ns=13 * SEC) == {"eventsPerSec": 300.0, "lastEventAge": "2s"}


def test_one_sample_gives_an_age_but_no_rate() -> None:
    assert status_fields(None, Sample(5, 1 * SEC, 1 * SEC), now_wall_ns=1 * SEC + 250_000_000) == {
        "lastEventAge": "250ms"
    }


def test_a_counter_that_went_back_gives_no_rate() -> None:  # Redis flushed or restarted without persistence
    assert "eventsPerSec" not in status_fields(Sample(1_000, None, 1 * SEC), Sample(10, None, 2 * SEC), now_wall_ns=0)


def test_nothing_published_yet_says_nothing() -> None:
    assert parse_sample([None, None], 0) is None
    assert status_fields(None, None, now_wall_ns=0) == {}
    assert parse_sample([b"12", b"34"], 5) == Sample(12, 34, 5)


@pytest.mark.parametrize(
    ("age_secs", "text"),
    [(0.0004, "0ms"), (0.85, "850ms"), (12, "12s"), (300, "5m"), (3 * 3600 + 5, "3h"), (2 * 86_400, "2d"), (-1, "0ms")],
)
def test_age_text(age_secs: float, text: str) -> None:
    assert age_text(int(age_secs * SEC)) == text
