"""Ledger computation: how long the validator's ledger takes for a day of data, 50 symbols, next to a baseline.

A generated day (1,440 minutes x 50 symbols) of trades and closed 1-minute candles, with a reported gap every
~30 minutes per symbol and a few quiet minutes, goes through what the validator does with it in memory:
observe every trade and candle and gap into the `LedgerBook`, then classify and persist every bucket
(`flush_rows`) and count completeness per symbol. The baseline, interleaved in the same run (only same-run
ratios are trustworthy on a shared 2-vCPU machine), is the least any ledger must do: one dict increment per
trade and per candle into (symbol, minute) counters. Printed: seconds per day of data for 50 symbols, events/s,
and the ratio to the baseline. Decoding the stream entries is not included (the consumer does it either way).

Run: ``python bench/bench_ledger.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal

from tickstrata.common.events import Candle, CandleSource, DataType, Gap, GapKind, Side, Trade
from tickstrata.validator.book import BookConfig, LedgerBook
from tickstrata.validator.ledger import MINUTE_NS

DAY_MINUTES = 1440
SYMBOLS = [f"S{i:02d}-USDT" for i in range(50)]
T0_NS = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS


def generate(minutes: int, trades_per_minute: int, seed: int = 7) -> tuple[list[Trade], list[Candle], list[Gap]]:
    rng = random.Random(seed)
    trades: list[Trade] = []
    candles: list[Candle] = []
    gaps: list[Gap] = []
    trade_id = 1
    for symbol in SYMBOLS:
        for m in range(-1, minutes):
            start = T0_NS + m * MINUTE_NS
            quiet = rng.random() < 0.02
            count = 0 if quiet else trades_per_minute
            for i in range(count):
                trades.append(
                    Trade("binance", symbol, str(trade_id), Decimal("100.5"), Decimal("0.1"), Side.BUY,
                          start + i * (MINUTE_NS // max(1, count)), start + 1)
                )  # fmt: skip
                trade_id += 1
            candles.append(
                Candle("binance", symbol, 60, start, Decimal(100), Decimal(101), Decimal(99), Decimal("100.5"),
                       Decimal(count), None, count, True, CandleSource.WS, start + MINUTE_NS, start + MINUTE_NS)
            )  # fmt: skip
            if m > 0 and rng.random() < 1 / 30:
                gaps.append(
                    Gap("binance", DataType.TRADES, symbol, GapKind.DISCONNECT, start + 5, start + 9_000_000_000,
                        "bench", start + MINUTE_NS)
                )  # fmt: skip
    return trades, candles, gaps


def run_ledger(trades: Sequence[Trade], candles: Sequence[Candle], gaps: Sequence[Gap], minutes: int) -> float:
    book = LedgerBook(BookConfig(grace_ns=1))
    now_ns = T0_NS + (minutes + 1) * MINUTE_NS
    started = time.perf_counter()
    for trade in trades:
        book.observe_trade(trade)
    for candle in candles:
        book.observe_candle(candle)
    for gap in gaps:
        book.observe_gap(gap, now_ns)
    book.caught_up_ns = now_ns
    rows = book.flush_rows(now_ns)
    total = sum(book.counts("binance", s, T0_NS, T0_NS + minutes * MINUTE_NS, now_ns).total for s in SYMBOLS)
    elapsed = time.perf_counter() - started
    assert total == len(SYMBOLS) * minutes, total
    assert len(rows) >= total
    return elapsed


def run_baseline(trades: Sequence[Trade], candles: Sequence[Candle], gaps: Sequence[Gap], minutes: int) -> float:
    started = time.perf_counter()
    counts: Counter[tuple[str, int]] = Counter()
    for trade in trades:
        counts[(trade.symbol, trade.ts_event_ns - trade.ts_event_ns % MINUTE_NS)] += 1
    for candle in candles:
        counts[(candle.symbol, candle.open_time_ns)] += 1
    elapsed = time.perf_counter() - started
    assert len(counts) >= len(SYMBOLS) * minutes
    del gaps
    return elapsed


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two hours instead of a day, 3 repetitions")
    parser.add_argument("--trades-per-minute", type=int, default=20)
    args = parser.parse_args(argv)
    minutes = 120 if args.quick else DAY_MINUTES
    repeats = 3 if args.quick else 5
    print(f"generating {minutes} minutes x {len(SYMBOLS)} symbols x {args.trades_per_minute} trades/minute ...")
    trades, candles, gaps = generate(minutes, args.trades_per_minute)
    events = len(trades) + len(candles) + len(gaps)
    ledger_secs: list[float] = []
    baseline_secs: list[float] = []
    for _ in range(repeats):  # interleaved: both see the same machine state
        gc.collect()
        baseline_secs.append(run_baseline(trades, candles, gaps, minutes))
        gc.collect()
        ledger_secs.append(run_ledger(trades, candles, gaps, minutes))
    ledger, baseline = statistics.median(ledger_secs), statistics.median(baseline_secs)
    per_day = ledger * DAY_MINUTES / minutes
    print(f"events: {len(trades):,} trades, {len(candles):,} candles, {len(gaps):,} gaps ({events:,} in all)")
    print(f"ledger:   {ledger:.3f} s median of {repeats}  ({events / ledger:,.0f} events/s)")
    print(f"baseline: {baseline:.3f} s median of {repeats}  ({events / baseline:,.0f} events/s; dict counters)")
    print(f"ratio ledger/baseline: {ledger / baseline:.1f}x")
    print(f"seconds per day of data for {len(SYMBOLS)} symbols: {per_day:.2f} s")


if __name__ == "__main__":
    main()
