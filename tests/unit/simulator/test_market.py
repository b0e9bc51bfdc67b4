"""The market model: deterministic, internally consistent, and agreeing with its own history."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from tests.unit.simulator._support import START_MS, RecordingSubscriber, make_engine, run
from tickstrata.simulator.engine import VenueEngine
from tickstrata.simulator.instruments import Venue, build_instruments, format_scaled
from tickstrata.simulator.tape import MINUTE_MS, Tape, build_kline

SYMBOL = "BTCUSDT"


def trade_tuples(engine: VenueEngine, until_ms: int, step_ms: int) -> list[tuple[int, int, int, int, bool]]:
    sub = RecordingSubscriber()
    engine.subscribe(sub, "btcusdt@aggTrade")
    run(engine, until_ms, step_ms)
    return [(f["a"], f["T"], int(Decimal(f["p"]) * 100), f["f"], f["m"]) for f in sub.of("aggTrade")]


def test_same_seed_same_trades_and_books_whatever_the_tick_size() -> None:
    until = START_MS + 20_000
    a, b = make_engine(), make_engine()
    fine = trade_tuples(a, until, 20)
    coarse = trade_tuples(b, until, 700)
    assert len(fine) > 100
    assert fine == coarse
    assert a.markets[SYMBOL].book.snapshot(50) == b.markets[SYMBOL].book.snapshot(50)
    other = trade_tuples(make_engine(seed=8), until, 20)
    assert other != fine


def test_agg_and_trade_ids_are_contiguous_and_times_ordered(spot: VenueEngine) -> None:
    sub = RecordingSubscriber()
    spot.subscribe(sub, "btcusdt@aggTrade")
    spot.subscribe(sub, "btcusdt@trade")
    run(spot, START_MS + 15_000)
    aggs = sub.of("aggTrade")
    assert [f["a"] for f in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    for previous, current in itertools.pairwise(aggs):
        assert current["f"] == previous["l"] + 1
        assert current["T"] >= previous["T"]
    trades = sub.of("trade")
    assert [f["t"] for f in trades] == list(range(aggs[0]["f"], aggs[-1]["l"] + 1))
    # The fills of an aggregate trade add up to it exactly.
    by_agg = {f["a"]: Decimal(f["q"]) for f in aggs}
    first_to_agg = {f["f"]: f["a"] for f in aggs}
    total: dict[int, Decimal] = {}
    current_agg = None
    for fill in trades:
        current_agg = first_to_agg.get(fill["t"], current_agg)
        assert current_agg is not None
        total[current_agg] = total.get(current_agg, Decimal(0)) + Decimal(fill["q"])
    assert total == by_agg


def test_books_never_cross_and_trades_print_at_the_touch(spot: VenueEngine) -> None:
    market = spot.markets[SYMBOL]
    trades_seen = 0
    for now in range(START_MS + 10, START_MS + 30_000, 10):
        step = market.advance(now)
        bid, ask = market.book.best_bid, market.book.best_ask
        assert bid is not None
        assert ask is not None
        assert bid[0] < ask[0]
        if len(step.trades) == 1 and not step.changes[-1].ts_ms > step.trades[0].ts_ms:
            trade = step.trades[0]
            touch = bid[0] if trade.buyer_is_maker else ask[0]
            assert touch == trade.price_ticks
            trades_seen += 1
    assert trades_seen > 50


def test_streamed_candles_equal_rest_history_and_the_trades(spot: VenueEngine) -> None:
    sub = RecordingSubscriber()
    spot.subscribe(sub, "ethusdt@kline_1m")
    spot.subscribe(sub, "ethusdt@aggTrade")
    run(spot, START_MS + 3 * MINUTE_MS, step_ms=50)
    market = spot.markets["ETHUSDT"]
    inst = market.instrument
    closed = [f["k"] for f in sub.of("kline") if f["k"]["x"]]
    assert len(closed) == 3
    for k in closed:
        rest = market.tape.kline(k["t"] // MINUTE_MS)
        assert rest is not None
        assert k["o"] == inst.format_price(rest.open_ticks)
        assert k["h"] == inst.format_price(rest.high_ticks)
        assert k["l"] == inst.format_price(rest.low_ticks)
        assert k["c"] == inst.format_price(rest.close_ticks)
        assert k["v"] == inst.format_qty(rest.volume_steps)
        assert k["q"] == inst.format_quote(rest.quote_volume)
        assert (k["n"], k["f"], k["L"]) == (rest.trade_count, rest.first_trade_id, rest.last_trade_id)
    # OHLCV recomputed from the streamed trades of a fully live minute.
    k = closed[1]
    trades = [f for f in sub.of("aggTrade") if k["t"] <= f["T"] <= k["T"]]
    prices = [Decimal(f["p"]) for f in trades]
    assert Decimal(k["o"]) == prices[0]
    assert Decimal(k["c"]) == prices[-1]
    assert Decimal(k["h"]) == max(prices)
    assert Decimal(k["l"]) == min(prices)
    assert Decimal(k["v"]) == sum(Decimal(f["q"]) for f in trades)
    assert Decimal(k["q"]) == sum(Decimal(f["q"]) * Decimal(f["p"]) for f in trades)
    assert Decimal(k["V"]) == sum(Decimal(f["q"]) for f in trades if not f["m"])
    assert k["n"] == trades[-1]["l"] - trades[0]["f"] + 1


def test_rest_agg_trades_equal_streamed(spot: VenueEngine) -> None:
    sub = RecordingSubscriber()
    spot.subscribe(sub, "xrpusdt@aggTrade")
    run(spot, START_MS + 20_000)
    streamed = [(f["a"], f["p"], f["q"], f["T"], f["m"]) for f in sub.of("aggTrade")]
    market = spot.markets["XRPUSDT"]
    inst = market.instrument
    rest = market.tape.trades_between(START_MS, START_MS + 20_000, 10_000)
    assert [
        (t.agg_id, inst.format_price(t.price_ticks), inst.format_qty(t.qty_steps), t.ts_ms, t.buyer_is_maker)
        for t in rest
    ] == streamed


def test_history_is_stable_contiguous_and_listed_from_origin() -> None:
    inst = build_instruments(Venue.SPOT, ("BTCUSDT",))["BTCUSDT"]

    def tape() -> Tape:
        return Tape(
            inst,
            seed=3,
            symbol_key=0,
            start_ms=START_MS,
            trades_per_sec=5,
            history_trades_per_sec=1,
            history_minutes=90,
        )

    a, b = tape(), tape()
    first = START_MS // MINUTE_MS - 80
    klines_a = [a.kline(m) for m in range(first, first + 30)]
    klines_b = [b.kline(m) for m in reversed(range(first, first + 30))]
    assert klines_a == list(reversed(klines_b))
    for m in range(first, first + 30):
        trades = a.minute_trades(m)
        next_agg, next_trade = a.first_ids(m + 1)
        if trades:
            assert (trades[-1].agg_id + 1, trades[-1].last_trade_id + 1) == (next_agg, next_trade)
            assert a.kline(m) == build_kline(m * MINUTE_MS, trades, 0)
    assert a.kline(a.origin_minute - 1) is None
    assert a.trades_between(0, a.origin_minute * MINUTE_MS - 1, 10) == []


def test_empty_minutes_are_flat_or_absent_by_mode() -> None:
    inst = build_instruments(Venue.SPOT, ("XRPUSDT",))["XRPUSDT"]
    for mode in ("flat", "skip"):
        tape = Tape(
            inst,
            seed=1,
            symbol_key=0,
            start_ms=START_MS,
            trades_per_sec=0.01,
            history_trades_per_sec=0.01,
            history_minutes=300,
            empty_kline_mode=mode,
        )
        minute = next(m for m in range(tape.origin_minute + 60, tape.start_minute) if not tape.minute_trades(m))
        candle = tape.kline(minute)
        if mode == "skip":
            assert candle is None
        else:
            assert candle is not None
            assert candle.volume_steps == 0
            assert candle.trade_count == 0
            assert candle.open_ticks == candle.close_ticks == tape.close_before(minute)


def test_format_scaled_is_exact() -> None:
    assert format_scaled(6412345, 2, 8) == "64123.45000000"
    assert format_scaled(641234, 1, 2) == "64123.40"
    assert format_scaled(5, 4, 8) == "0.00050000"
    assert format_scaled(123456789, 9, 8) == "0.12345678"
    spot_btc = build_instruments(Venue.SPOT, ("BTCUSDT",))["BTCUSDT"]
    usdm_btc = build_instruments(Venue.USDM, ("BTCUSDT",))["BTCUSDT"]
    assert spot_btc.format_tick_size() == "0.01000000"
    assert usdm_btc.format_tick_size() == "0.10"
    assert usdm_btc.format_price(641234) == "64123.40"


@pytest.mark.parametrize("venue", [Venue.SPOT, Venue.USDM])
def test_at_least_twenty_symbols_with_sane_levels(venue: Venue) -> None:
    instruments = build_instruments(venue)
    assert len(instruments) >= 20
    for inst in instruments.values():
        assert inst.price(inst.start_price_ticks) > 0
        assert inst.start_price_ticks >= 100  # at least 100 ticks: a tick is a small fraction of the price
