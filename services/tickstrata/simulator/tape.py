"""The trade tape of one symbol: every aggregate trade the simulated exchange ever printed, addressable by time.

A minute's trade count, each second's share of it, and each second's trades are pure functions of the seed and
the time, so REST history for any past window is computed on demand and always equals what the WebSocket sent
(or would have sent). Ids stay contiguous: the first aggregate and trade id of a minute is a prefix sum over the
minutes since the symbol's listing (`history_minutes` before the simulator started).

Faults that change what the exchange did (outages, empty intervals) suppress whole seconds from the moment they
are injected; suppressed trades never existed, so ids continue without a gap after them.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Final, Literal

from tickstrata.simulator.instruments import Instrument
from tickstrata.simulator.noise import hash64, log_price_offsets, poisson, stratified_cumulative, uniform

MINUTE_MS: Final = 60_000
SECOND_MS: Final = 1_000
_CACHE_SECONDS: Final = 4096
_CACHE_KLINES: Final = 200_000
_PREV_CLOSE_LOOKBACK_MINUTES: Final = 24 * 60

EmptyKlineMode = Literal["flat", "skip"]


@dataclass(frozen=True, slots=True)
class Trade:
    agg_id: int
    first_trade_id: int
    last_trade_id: int
    ts_ms: int
    price_ticks: int
    qty_steps: int
    buyer_is_maker: bool  # Binance `m`: true means the taker sold (hit the bid)


@dataclass(frozen=True, slots=True)
class Kline:
    open_ms: int
    open_ticks: int
    high_ticks: int
    low_ticks: int
    close_ticks: int
    volume_steps: int
    quote_volume: int  # exact sum of price*qty, in units of tick*step
    trade_count: int
    first_trade_id: int  # -1 when the minute had no trades (Binance's convention)
    last_trade_id: int
    taker_buy_volume_steps: int
    taker_buy_quote_volume: int

    @property
    def close_ms(self) -> int:
        return self.open_ms + MINUTE_MS - 1


def build_kline(open_ms: int, trades: list[Trade], prev_close_ticks: int) -> Kline:
    """The 1-minute candle of `trades` (all inside the minute, in order); flat at the previous close if none."""
    if not trades:
        p = prev_close_ticks
        return Kline(open_ms, p, p, p, p, 0, 0, 0, -1, -1, 0, 0)
    high = low = trades[0].price_ticks
    volume = quote = buy_volume = buy_quote = 0
    for trade in trades:
        price = trade.price_ticks
        high = max(high, price)
        low = min(low, price)
        volume += trade.qty_steps
        quote += price * trade.qty_steps
        if not trade.buyer_is_maker:
            buy_volume += trade.qty_steps
            buy_quote += price * trade.qty_steps
    first, last = trades[0].first_trade_id, trades[-1].last_trade_id
    return Kline(
        open_ms,
        trades[0].price_ticks,
        high,
        low,
        trades[-1].price_ticks,
        volume,
        quote,
        last - first + 1,
        first,
        last,
        buy_volume,
        buy_quote,
    )


@dataclass(frozen=True, slots=True)
class Suppression:
    start_sec: int  # inclusive
    end_sec: int  # exclusive
    kind: Literal["outage", "empty"]


class Tape:
    """Trades of one symbol as a function of time (see the module docstring)."""

    def __init__(
        self,
        instrument: Instrument,
        *,
        seed: int,
        symbol_key: int,
        price_key: int | None = None,
        start_ms: int,
        trades_per_sec: float,
        history_trades_per_sec: float,
        history_minutes: int,
        daily_volatility: float = 0.03,
        empty_kline_mode: EmptyKlineMode = "flat",
    ) -> None:
        self.instrument = instrument
        self._seed = seed
        self._key = symbol_key
        # The price path may be shared between venues (spot and its perpetual move together); trades are not.
        self._price_key = symbol_key if price_key is None else price_key
        self.start_minute = start_ms // MINUTE_MS
        self.origin_minute = self.start_minute - history_minutes
        self._live_rate = trades_per_sec
        self._history_rate = history_trades_per_sec
        self._sigma = daily_volatility / math.sqrt(86_400)
        self.empty_kline_mode: EmptyKlineMode = empty_kline_mode
        self._base_ticks = instrument.start_price_ticks
        self._agg_base = 100_000_000 + hash64(seed, symbol_key, 7) % 900_000_000
        self._trade_base = 2 * self._agg_base + hash64(seed, symbol_key, 8) % 1_000_000
        self._prefix: list[tuple[int, int]] = [(self._agg_base, self._trade_base)]  # first ids of minute origin+i
        self._suppressions: list[Suppression] = []
        self._anchors: OrderedDict[int, list[float]] = OrderedDict()
        self._seconds: OrderedDict[int, list[Trade]] = OrderedDict()
        self._counts: OrderedDict[int, list[tuple[int, int]]] = OrderedDict()
        self._offsets: OrderedDict[int, list[tuple[int, int]]] = OrderedDict()  # per second: ids before it
        self._klines: OrderedDict[int, Kline | None] = OrderedDict()
        self.revisions: set[int] = set()  # minute open times whose REST candle differs from the WS one

    # ----------------------------------------------------------------------------------------------- counts & ids

    def _minute_totals(self, minute: int) -> tuple[int, int]:
        """(aggregate trades, extra fills) the minute would have without suppression."""
        if minute < self.origin_minute:
            return 0, 0
        rate = self._live_rate if minute >= self.start_minute else self._history_rate
        aggs = poisson(rate * 60.0, self._seed, self._key, minute, 11)
        # About a third of aggregate trades fill more than one order: trade ids advance faster than agg ids.
        extra = math.floor(aggs * 0.6 * uniform(self._seed, self._key, minute, 12))
        return aggs, extra

    def _second_counts(self, minute: int) -> list[tuple[int, int]]:
        """Per second of `minute`: (aggregate trades, extra fills), with suppressed seconds emptied."""
        cached = self._counts.get(minute)
        if cached is None:
            cached = self._counts[minute] = self._compute_second_counts(minute)
            if len(self._counts) > 1024:
                self._counts.popitem(last=False)
        return cached

    def _overlaps_suppression(self, minute: int) -> bool:
        start, end = minute * 60, minute * 60 + 60
        return any(s.start_sec < end and s.end_sec > start for s in self._suppressions)

    def _compute_second_counts(self, minute: int) -> list[tuple[int, int]]:
        aggs, extra = self._minute_totals(minute)
        phase = 2 * math.pi * uniform(self._seed, self._key, minute, 13)
        amplitude = 0.9 * uniform(self._seed, self._key, minute, 14)
        cum_aggs = stratified_cumulative(aggs, 60, phase, amplitude)
        # Extra fills follow the aggregate trades (never in a second without one), summing to `extra` exactly.
        cum_extra = [extra * c // aggs if aggs else 0 for c in cum_aggs]
        first_sec = minute * 60
        counts: list[tuple[int, int]] = []
        for s in range(60):
            n = cum_aggs[s + 1] - cum_aggs[s]
            e = cum_extra[s + 1] - cum_extra[s]
            if n and self.suppressed(first_sec + s) is not None:
                n = e = 0
            counts.append((n, e))
        return counts

    def first_ids(self, minute: int) -> tuple[int, int]:
        """(first aggregate id, first trade id) the minute's trades get (the next ids if it has none)."""
        if minute <= self.origin_minute:
            return self._prefix[0]
        index = minute - self.origin_minute
        while len(self._prefix) <= index:
            m = self.origin_minute + len(self._prefix) - 1
            if self._overlaps_suppression(m):
                aggs = fills = 0
                for n, e in self._second_counts(m):
                    aggs += n
                    fills += n + e
            else:  # the common case needs no per-second split: the minute's totals are the sums
                aggs, extra = self._minute_totals(m)
                fills = aggs + extra
            agg, trade = self._prefix[-1]
            self._prefix.append((agg + aggs, trade + fills))
        return self._prefix[index]

    def next_ids(self, sec: int) -> tuple[int, int]:
        """(aggregate id, trade id) the first trade printed at or after second `sec` gets."""
        minute = sec // 60
        offsets = self._offsets.get(minute)
        if offsets is None:
            offsets = [(0, 0)]
            for n, e in self._second_counts(minute):
                offsets.append((offsets[-1][0] + n, offsets[-1][1] + n + e))
            self._offsets[minute] = offsets
            if len(self._offsets) > 1024:
                self._offsets.popitem(last=False)
        agg_id, trade_id = self.first_ids(minute)
        agg_offset, trade_offset = offsets[sec % 60]
        return agg_id + agg_offset, trade_id + trade_offset

    # ------------------------------------------------------------------------------------------------- faults

    def suppressed(self, sec: int) -> Suppression | None:
        for item in self._suppressions:
            if item.start_sec <= sec < item.end_sec:
                return item
        return None

    def suppress(self, start_ms: int, end_ms: int, kind: Literal["outage", "empty"]) -> Suppression:
        """Make the exchange print no trades in [start_ms, end_ms) (rounded out to whole seconds).

        Callers pass windows that start no earlier than the present second, so nothing already streamed changes.
        """
        item = Suppression(start_ms // SECOND_MS, -(-end_ms // SECOND_MS), kind)
        self._suppressions.append(item)
        first_minute = item.start_sec // 60
        del self._prefix[max(1, first_minute - self.origin_minute + 1) :]
        for stale_sec in [sec for sec in self._seconds if sec >= item.start_sec]:
            del self._seconds[stale_sec]
        for cache in (self._klines, self._counts, self._offsets):
            for stale_minute in [minute for minute in cache if minute >= first_minute]:
                del cache[stale_minute]
        return item

    def outage_overlaps(self, minute: int) -> bool:
        start, end = minute * 60, minute * 60 + 60
        return any(s.kind == "outage" and s.start_sec < end and s.end_sec > start for s in self._suppressions)

    # ------------------------------------------------------------------------------------------------- trades

    def _minute_anchors(self, minute: int) -> list[float]:
        anchors = self._anchors.get(minute)
        if anchors is None:
            anchors = log_price_offsets(self._seed, self._price_key, minute * 60, 60, self._sigma)
            self._anchors[minute] = anchors
            if len(self._anchors) > 512:
                self._anchors.popitem(last=False)
        return anchors

    def anchor_price_ticks(self, sec: int) -> int:
        """The price path at the start of second `sec` (what an idle book is centred on)."""
        return max(1, round(self._base_ticks * math.exp(self._minute_anchors(sec // 60)[sec % 60])))

    def second_trades(self, sec: int) -> list[Trade]:
        """Every trade printed during second `sec`, oldest first."""
        cached = self._seconds.get(sec)
        if cached is not None:
            return cached
        agg_id, trade_id = self.next_ids(sec)
        n, extra = self._second_counts(sec // 60)[sec % 60]
        trades = self._generate(sec, n, extra, agg_id, trade_id) if n else []
        self._seconds[sec] = trades
        if len(self._seconds) > _CACHE_SECONDS:
            self._seconds.popitem(last=False)
        return trades

    def _generate(self, sec: int, n: int, extra: int, agg_id: int, trade_id: int) -> list[Trade]:
        anchors = self._minute_anchors(sec // 60)
        p0 = self._base_ticks * math.exp(anchors[sec % 60])
        p1 = self._base_ticks * math.exp(anchors[sec % 60 + 1])
        rng = random.Random(hash64(self._seed, self._key, sec, 0x5EC))
        offsets_ms = sorted(rng.randrange(SECOND_MS) for _ in range(n))
        fills = [1] * n
        for _ in range(extra):
            fills[rng.randrange(n)] += 1
        noise_ticks = max(0.6, p0 * 2e-6)
        inst = self.instrument
        # steps = notional / (price_ticks * tick value) / step value
        scale = 10.0 ** (inst.qty_decimals + inst.price_decimals) / inst.tick_units
        previous = round(p0)
        trades: list[Trade] = []
        for i in range(n):
            frac = (offsets_ms[i] + 1) / (SECOND_MS + 1)
            price = max(1, round(p0 + (p1 - p0) * frac + rng.gauss(0.0, noise_ticks)))
            # The taker's side follows the move: an uptick lifted the ask, a downtick hit the bid.
            maker_buyer = rng.random() < 0.5 if price == previous else price < previous
            notional = math.exp(rng.gauss(5.7, 1.1))  # quote currency, median ~300
            qty = max(fills[i], round(notional / price * scale))  # every fill carries at least one step
            trades.append(
                Trade(
                    agg_id + i,
                    trade_id,
                    trade_id + fills[i] - 1,
                    sec * SECOND_MS + offsets_ms[i],
                    price,
                    qty,
                    maker_buyer,
                )
            )
            trade_id += fills[i]
            previous = price
        return trades

    def minute_trades(self, minute: int) -> list[Trade]:
        result: list[Trade] = []
        for sec in range(minute * 60, minute * 60 + 60):
            result.extend(self.second_trades(sec))
        return result

    def trades_between(self, start_ms: int, end_ms: int, limit: int) -> list[Trade]:
        """Trades with start_ms <= T <= end_ms, oldest first, at most `limit`."""
        result: list[Trade] = []
        start_ms = max(start_ms, self.origin_minute * MINUTE_MS)
        for sec in range(start_ms // SECOND_MS, end_ms // SECOND_MS + 1):
            for trade in self.second_trades(sec):
                if start_ms <= trade.ts_ms <= end_ms:
                    result.append(trade)
                    if len(result) >= limit:
                        return result
        return result

    def minute_of_agg_id(self, agg_id: int, last_minute: int) -> int | None:
        """The minute holding aggregate trade `agg_id` (binary search of the prefix sums), if it exists yet."""
        if agg_id < self._agg_base or agg_id >= self.first_ids(last_minute + 1)[0]:
            return None
        lo, hi = self.origin_minute, last_minute
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.first_ids(mid)[0] <= agg_id:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # ------------------------------------------------------------------------------------------------- klines

    def kline(self, minute: int) -> Kline | None:
        """The complete candle of `minute` as the exchange's history has it; None when it has no row."""
        if minute in self._klines:
            return self._klines[minute]
        trades = self.minute_trades(minute)
        result: Kline | None
        if trades:
            result = build_kline(minute * MINUTE_MS, trades, 0)
        elif minute < self.origin_minute or self.empty_kline_mode == "skip" or self.outage_overlaps(minute):
            result = None
        else:
            result = build_kline(minute * MINUTE_MS, [], self.close_before(minute))
        self._klines[minute] = result
        if len(self._klines) > _CACHE_KLINES:
            self._klines.popitem(last=False)
        return result

    def close_before(self, minute: int) -> int:
        """The last traded price before `minute` (the level a flat, trade-less candle sits at)."""
        for m in range(minute - 1, max(self.origin_minute, minute - _PREV_CLOSE_LOOKBACK_MINUTES) - 1, -1):
            candle = self.kline(m)
            if candle is not None and candle.trade_count:
                return candle.close_ticks
        return self.anchor_price_ticks(minute * 60)

    def rest_kline(self, minute: int) -> Kline | None:
        """What REST reports: the candle, or its revision when a candle-revision fault touched the minute."""
        candle = self.kline(minute)
        if candle is None or minute * MINUTE_MS not in self.revisions:
            return candle
        close = candle.close_ticks + 1
        return replace(
            candle,
            close_ticks=close,
            high_ticks=max(candle.high_ticks, close),
            volume_steps=candle.volume_steps + 1,
            quote_volume=candle.quote_volume + close,
        )
