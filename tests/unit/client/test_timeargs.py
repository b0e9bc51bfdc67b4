"""Times and intervals as users type them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from tickstrata.client.history_cli import render
from tickstrata.client.timeargs import TimeArgumentError, interval_secs, join_relative_times, to_ns

NOW_NS = 1_764_000_000_123_456_789
T0_NS = 1_764_000_000_000_000_000  # 2025-11-24T16:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW_NS),
        ("-1h", NOW_NS - 3600 * 10**9),
        ("-90s", NOW_NS - 90 * 10**9),
        ("-1.5d", NOW_NS - 129_600 * 10**9),
        ("2025-11-24T16:00Z", T0_NS),
        ("2025-11-24T17:00:00+01:00", T0_NS),
        ("2025-11-24T16:00:00.000001Z", T0_NS + 1000),
        ("2025-11-24", T0_NS - 16 * 3600 * 10**9),
        (T0_NS, T0_NS),
        (datetime(2025, 11, 24, 11, 0, tzinfo=timezone(timedelta(hours=-5))), T0_NS),
    ],
)
def test_times_in_every_accepted_form(text: str | int | datetime, expected: int) -> None:
    assert to_ns(text, now_ns=NOW_NS) == expected


@pytest.mark.parametrize("bad", ["2025-11-24T16:00", datetime(2025, 11, 24), "tomorrow", "+1h", True])
def test_zoneless_or_unreadable_times_are_refused(bad: str | datetime | bool) -> None:
    with pytest.raises(TimeArgumentError):
        to_ns(bad, now_ns=NOW_NS)


def test_intervals() -> None:
    assert [interval_secs(v) for v in ("1m", "5m", "15m", "1h", "4h", "1d", "1w", 120)] == [
        60, 300, 900, 3600, 14400, 86400, 604800, 120,
    ]  # fmt: skip
    for bad in ("90s", "1x", 30, 0, "-1m"):
        with pytest.raises(TimeArgumentError):
            interval_secs(bad)


def test_render_shows_the_last_rows_and_says_how_many_were_left_out() -> None:
    table = pa.table(
        {
            "exchange": ["binance"] * 3,
            "open_time_ns": pa.array([T0_NS, T0_NS + 60 * 10**9, T0_NS + 120 * 10**9], pa.timestamp("ns", tz="UTC")),
            "close": ["1.5", "2.25", "3"],
        }
    )
    lines = render(table, 2)
    assert lines[0] == "… 1 earlier rows (use --limit, --csv or --parquet)"
    assert lines[1].split() == ["open_time_ns", "close"]
    assert lines[2].split() == ["2025-11-24", "16:01:00Z", "2.25"]
    assert datetime.fromtimestamp(T0_NS / 1e9, tz=UTC).hour == 16


def test_relative_times_after_from_and_to_are_values_not_options() -> None:
    assert join_relative_times(["binance", "BTC-USDT", "--from", "-1h", "--to", "-5m", "--limit", "3"]) == [
        "binance", "BTC-USDT", "--from=-1h", "--to=-5m", "--limit", "3",
    ]  # fmt: skip
    assert join_relative_times(["--from", "now"]) == ["--from", "now"]
