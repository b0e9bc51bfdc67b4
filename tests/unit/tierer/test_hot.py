"""The hot tier's reads: the feed's filter as SQL and QuestDB's timestamps as nanoseconds."""

from __future__ import annotations

from tickstrata.tierer.hot import FeedFilter, _ns


def test_the_filter_quotes_what_it_is_given() -> None:
    assert FeedFilter("", ()).where() == ""
    assert FeedFilter("binance", ()).where() == " WHERE exchange = 'binance'"
    assert FeedFilter("o'k", ("BTC-USDT", "x'y")).where() == (
        " WHERE exchange = 'o''k' AND symbol IN ('BTC-USDT', 'x''y')"
    )


def test_rest_timestamps_keep_their_nanoseconds() -> None:
    assert _ns("2026-11-01T10:00:00.123456789Z") == 1_793_527_200_123_456_789
    assert _ns("2026-11-01T10:00:00.5Z") == 1_793_527_200_500_000_000
    assert _ns("2026-11-01T10:00:00Z") == 1_793_527_200_000_000_000
