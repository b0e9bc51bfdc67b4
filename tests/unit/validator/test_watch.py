"""Staleness and cross-venue deviation over time: each reported once, a backfill never counts as the feed flowing."""

from __future__ import annotations

from decimal import Decimal

from tests.unit.common._samples import trade
from tickstrata.validator.rules import ViolationKind
from tickstrata.validator.watch import Watch, WatchConfig

SEC = 1_000_000_000
T0 = 1_800_000_000 * SEC


def watch() -> Watch:
    return Watch(WatchConfig(stale_after_secs=10, deviation_fraction=Decimal("0.01"), deviation_every_ns=60 * SEC))


def test_a_quiet_instrument_is_stale_once_per_spell() -> None:
    w = watch()
    w.observe(trade(ts_event_ns=T0))
    assert w.check(T0 + 10 * SEC) == []  # exactly the threshold: not yet
    [stale] = w.check(T0 + 11 * SEC)
    assert stale.kind is ViolationKind.STALE
    assert (stale.start_ns, stale.end_ns) == (T0, T0 + 11 * SEC)
    assert w.check(T0 + 30 * SEC) == []  # the same spell is not reported again
    w.observe(trade(ts_event_ns=T0 + 31 * SEC))
    assert w.check(T0 + 35 * SEC) == []
    assert [v.kind for v in w.check(T0 + 42 * SEC)] == [ViolationKind.STALE]  # a new spell


def test_backfilled_trades_do_not_hide_a_silent_feed() -> None:
    w = watch()
    w.observe(trade(ts_event_ns=T0))
    w.observe(trade(ts_event_ns=T0 + 9 * SEC, backfilled=True))
    assert [v.kind for v in w.check(T0 + 11 * SEC)] == [ViolationKind.STALE]


def test_the_same_symbol_on_two_venues_is_compared_and_recent_prices_only() -> None:
    w = watch()
    w.observe(trade(exchange="binance", symbol="BTC-USDT", price=Decimal(100), ts_event_ns=T0))
    w.observe(trade(exchange="okx", symbol="BTC-USDT", price=Decimal(103), ts_event_ns=T0))
    w.observe(trade(exchange="okx", symbol="ETH-USDT", price=Decimal(5), ts_event_ns=T0))  # alone: no comparison
    [deviation] = w.check(T0 + SEC)
    assert deviation.kind is ViolationKind.PRICE_DEVIATION
    assert "okx" in deviation.detail
    assert "binance" in deviation.detail
    assert w.check(T0 + 2 * SEC) == []  # once per deviation_every_ns
    # Two minutes later the prices are too old to compare (and both feeds are stale instead).
    later = w.check(T0 + 120 * SEC)
    assert {v.kind for v in later} == {ViolationKind.STALE}
