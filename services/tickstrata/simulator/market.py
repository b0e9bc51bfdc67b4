"""The live market of one symbol: the tape played forward in time, with a book and a running 1-minute candle.

Pure and clock-free: `advance(now_ms)` processes every event with a timestamp up to `now_ms`, in a fixed order
(time, then trades before quote changes), so the result depends only on the seed and the time reached, never on
how often `advance` was called. That is what makes a virtual clock in unit tests equivalent to the wall clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

from tickstrata.simulator.book import LevelChange, OrderBook
from tickstrata.simulator.instruments import Instrument
from tickstrata.simulator.noise import hash64, poisson, uniform
from tickstrata.simulator.tape import MINUTE_MS, SECOND_MS, Kline, Tape, Trade, build_kline

_FUNDING_PERIOD_MS: Final = 8 * 3600 * 1000
_BOOK_LEVEL_NOTIONAL: Final = 2_000.0  # quote currency per resting level, roughly
_MARK_DECIMALS: Final = 8


@dataclass(slots=True)
class KlineAccumulator:
    """The running candle of one minute, updated trade by trade (the WebSocket's view of the minute)."""

    open_ms: int
    prev_close_ticks: int
    trades: int = 0
    open_ticks: int = 0
    high_ticks: int = 0
    low_ticks: int = 0
    close_ticks: int = 0
    volume_steps: int = 0
    quote_volume: int = 0
    first_trade_id: int = -1
    last_trade_id: int = -1
    taker_buy_volume_steps: int = 0
    taker_buy_quote_volume: int = 0

    def add(self, trade: Trade) -> None:
        price = trade.price_ticks
        if self.trades == 0:
            self.open_ticks = self.high_ticks = self.low_ticks = price
            self.first_trade_id = trade.first_trade_id
        self.trades += 1
        self.high_ticks = max(self.high_ticks, price)
        self.low_ticks = min(self.low_ticks, price)
        self.close_ticks = price
        self.last_trade_id = trade.last_trade_id
        self.volume_steps += trade.qty_steps
        self.quote_volume += price * trade.qty_steps
        if not trade.buyer_is_maker:
            self.taker_buy_volume_steps += trade.qty_steps
            self.taker_buy_quote_volume += price * trade.qty_steps

    def kline(self) -> Kline:
        if self.trades == 0:
            return build_kline(self.open_ms, [], self.prev_close_ticks)
        return Kline(
            self.open_ms,
            self.open_ticks,
            self.high_ticks,
            self.low_ticks,
            self.close_ticks,
            self.volume_steps,
            self.quote_volume,
            self.last_trade_id - self.first_trade_id + 1,
            self.first_trade_id,
            self.last_trade_id,
            self.taker_buy_volume_steps,
            self.taker_buy_quote_volume,
        )


@dataclass(slots=True)
class Step:
    """What happened in one `advance`: new trades, book changes and the minutes that closed."""

    trades: list[Trade] = field(default_factory=list)
    changes: list[LevelChange] = field(default_factory=list)
    closed: list[KlineAccumulator] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MarkState:
    mark_e8: int  # prices scaled by 1e8 (Binance writes mark, index and settle prices with 8 decimals)
    index_e8: int
    settle_e8: int
    funding_rate_e8: int
    next_funding_ms: int


class SymbolMarket:
    def __init__(
        self, tape: Tape, *, seed: int, symbol_key: int, start_ms: int, book_depth: int, book_updates_per_sec: float
    ) -> None:
        self.tape = tape
        self.instrument: Instrument = tape.instrument
        self._seed = seed
        self._key = symbol_key
        self._book_rate = book_updates_per_sec
        self.start_ms = start_ms
        self.processed_ms = start_ms - 1
        start_sec = start_ms // SECOND_MS
        mid = tape.anchor_price_ticks(start_sec)
        self.qty_scale_steps = max(1, self._notional_steps(_BOOK_LEVEL_NOTIONAL, mid))
        self.book = OrderBook(
            first_update_id=1_000_000_000 + hash64(seed, symbol_key, 0xB00C) % 9_000_000_000,
            depth=book_depth,
            level_gap_ticks=max(1, round(mid * 5e-5)),
            rng=random.Random(hash64(seed, symbol_key, 0xB00D)),
        )
        self.book.seed_levels(start_ms, mid, 1, self.qty_scale_steps)
        self.book.drain_changes()  # the opening book is a state, not an event: snapshots show it, diffs follow it
        next_agg, next_trade = tape.next_ids(start_sec)
        self.last_agg_id = next_agg - 1
        self.last_trade_id = next_trade - 1
        self.last_price_ticks = tape.close_before(start_ms // MINUTE_MS)
        self.candle = KlineAccumulator(start_ms // MINUTE_MS * MINUTE_MS, self.last_price_ticks)
        for trade in tape.trades_between(self.candle.open_ms, start_ms - 1, 1_000_000):
            self.candle.add(trade)  # trades of the start minute printed before the simulator started
            self.last_price_ticks = trade.price_ticks
        self.trades_printed = 0
        self._events_sec = -1
        self._events: list[tuple[int, int, Trade | None]] = []

    def _notional_steps(self, notional: float, price_ticks: int) -> int:
        inst = self.instrument
        return round(notional / price_ticks * 10.0 ** (inst.qty_decimals + inst.price_decimals) / inst.tick_units)

    def _second_events(self, sec: int) -> list[tuple[int, int, Trade | None]]:
        if sec == self._events_sec:
            return self._events
        events: list[tuple[int, int, Trade | None]] = [(t.ts_ms, 0, t) for t in self.tape.second_trades(sec)]
        suppression = self.tape.suppressed(sec)
        if suppression is None or suppression.kind != "outage":
            for i in range(poisson(self._book_rate, self._seed, self._key, sec, 21)):
                offset = int(uniform(self._seed, self._key, sec, 22, i) * SECOND_MS)
                events.append((sec * SECOND_MS + offset, 1, None))
        events.sort(key=lambda event: (event[0], event[1]))
        self._events_sec, self._events = sec, events
        return events

    def advance(self, now_ms: int) -> Step:
        """Process every event with processed_ms < ts <= now_ms; return what happened."""
        step = Step()
        if now_ms <= self.processed_ms:
            return step
        for sec in range((self.processed_ms + 1) // SECOND_MS, now_ms // SECOND_MS + 1):
            for ts_ms, _kind, trade in self._second_events(sec):
                if ts_ms <= self.processed_ms:
                    continue
                if ts_ms > now_ms:
                    break
                self._roll_candle(ts_ms, step)
                if trade is None:
                    self.book.jitter(ts_ms, self.qty_scale_steps)
                else:
                    self._apply_trade(trade)
                    step.trades.append(trade)
        self._roll_candle(now_ms, step)
        self.processed_ms = now_ms
        step.changes = self.book.drain_changes()
        return step

    def _apply_trade(self, trade: Trade) -> None:
        self.book.trade(
            trade.ts_ms,
            trade.price_ticks,
            qty=trade.qty_steps,
            buyer_is_maker=trade.buyer_is_maker,
            spread_ticks=1,
            scale=self.qty_scale_steps,
        )
        self.candle.add(trade)
        self.last_agg_id = trade.agg_id
        self.last_trade_id = trade.last_trade_id
        self.last_price_ticks = trade.price_ticks
        self.trades_printed += 1

    def _roll_candle(self, ts_ms: int, step: Step) -> None:
        while ts_ms >= self.candle.open_ms + MINUTE_MS:
            step.closed.append(self.candle)
            self.candle = KlineAccumulator(self.candle.open_ms + MINUTE_MS, self.last_price_ticks)

    def in_outage(self, now_ms: int) -> bool:
        suppression = self.tape.suppressed(now_ms // SECOND_MS)
        return suppression is not None and suppression.kind == "outage"

    def mark(self, now_ms: int) -> MarkState:
        """Mark, index and funding (USD-M): the mark tracks the book's mid, the index sits a small premium away."""
        inst = self.instrument
        bid, ask = self.book.best_bid, self.book.best_ask
        mid_ticks2 = (bid[0] + ask[0]) if bid and ask else 2 * self.last_price_ticks
        to_e8 = 10 ** (_MARK_DECIMALS - inst.price_decimals) * inst.tick_units
        mark = mid_ticks2 * to_e8 // 2
        premium = (uniform(self._seed, self._key, now_ms // SECOND_MS, 31) - 0.4) * 0.0005
        index = round(mark * (1 - premium))
        settle = round(index * (1 + premium / 10))
        funding_e8 = round((0.0001 + premium / 3) * 10**_MARK_DECIMALS)
        next_funding = (now_ms // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS
        return MarkState(mark, index, settle, funding_e8, next_funding)
