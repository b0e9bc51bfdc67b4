"""The tier-compression bench's data: Binance spot trades and closed 1-minute klines, as the venue sends them.

Generated from a seed (see `bench_tier_compression.py` for what the bench answers): the venue's JSON texts (whose
bytes are the baseline) and the rows parsed back out of them, as the collector does, with every price and size
also kept as an exact integer x 10^8 and as the venue's string for the exactness checks.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa

I64 = npt.NDArray[np.int64]
Numeric = Literal["float64", "int64"]

SCALE: Final = 8  # Binance sends every price and quantity with 8 decimals: 10^8 makes all of them exact integers
E8: Final = 10**SCALE
QUANTUM: Final = Decimal(1).scaleb(-SCALE)
START_MS: Final = 1_764_720_000_000  # 2025-12-03 00:00:00 UTC
MINUTE_MS: Final = 60_000
EXCHANGE: Final = "binance"
FILL_P: Final = 0.6  # fills per taker order ~ geometric(0.6): 1.67 on average, 1 in 40 sweeps 5+ levels
CANDLE_VALUE_KEYS: Final = {"open": "o", "high": "h", "low": "l", "close": "c", "volume": "v", "quote_volume": "q"}


# ---- venue numbers ----------------------------------------------------------------------------------------------


def scaled_e8(text: str) -> int:
    """The venue's decimal string as an exact integer count of 10^-8; anything finer than 8 decimals is refused."""
    whole, _, frac = text.partition(".")
    if len(frac) > SCALE or not (whole + frac).isdigit():
        raise ValueError(f"not a non-negative decimal with at most {SCALE} places: {text!r}")
    return int(whole + frac.ljust(SCALE, "0"))


def venue_text(value_e8: int) -> str:
    """Format an integer count of 10^-8 the way Binance does: always 8 decimals."""
    return f"{value_e8 // E8}.{value_e8 % E8:08d}"


@dataclass(frozen=True)
class SymbolSpec:
    venue: str  # Binance's spelling, as in the JSON
    symbol: str  # ours, as stored
    open_price: str
    tick: str
    step: str
    median_qty: float
    trades_per_sec: float
    daily_vol: float
    first_trade_id: int

    @property
    def tick_e8(self) -> int:
        return scaled_e8(self.tick)

    @property
    def step_e8(self) -> int:
        return scaled_e8(self.step)


# Sorted by our symbol, so concatenating them keeps the cold files sorted by (symbol, ts).
SYMBOLS: Final = (
    SymbolSpec("BTCUSDT", "BTC-USDT", "97123.45", "0.01", "0.00001", 0.003, 8.0, 0.025, 5_123_456_789),
    SymbolSpec("DOGEUSDT", "DOGE-USDT", "0.38512", "0.00001", "1", 1500.0, 1.5, 0.05, 1_012_345_678),
    SymbolSpec("ETHUSDT", "ETH-USDT", "3612.34", "0.01", "0.0001", 0.08, 5.0, 0.035, 3_212_345_678),
    SymbolSpec("SOLUSDT", "SOL-USDT", "231.57", "0.01", "0.001", 2.0, 3.0, 0.045, 1_512_345_678),
    SymbolSpec("XRPUSDT", "XRP-USDT", "2.2345", "0.0001", "0.1", 250.0, 2.0, 0.045, 912_345_678),
)


class BinanceTrade(msgspec.Struct, frozen=True):
    """One ``trade`` WebSocket message; the single-letter keys are the venue's."""

    event_type: str = msgspec.field(name="e")
    event_ms: int = msgspec.field(name="E")
    venue_symbol: str = msgspec.field(name="s")
    trade_id: int = msgspec.field(name="t")
    price: str = msgspec.field(name="p")
    qty: str = msgspec.field(name="q")
    trade_ms: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")
    best_match: bool = msgspec.field(name="M")


_trades_decoder = msgspec.json.Decoder(list[BinanceTrade])


# ---- trades: simulate the venue, then ingest its JSON -----------------------------------------------------------


def _event_offsets_ms(rng: np.random.Generator, spec: SymbolSpec, duration_ms: int) -> I64:
    """Taker-order times: a Poisson process whose log rate is an AR(1) per second, so bursts and lulls alternate."""
    seconds = duration_ms // 1000
    noise = rng.standard_normal(seconds) * 0.15
    log_rate = np.empty(seconds)
    level = 0.0
    for i in range(seconds):  # 86,400 steps: cheap, and an AR(1) has no closed vectorised form in numpy alone
        level = 0.98 * level + noise[i]
        log_rate[i] = level
    stationary_var = 0.15**2 / (1 - 0.98**2)
    orders_per_sec = spec.trades_per_sec * FILL_P * np.exp(log_rate - stationary_var / 2)  # mean-preserving
    cumulative = np.concatenate(([0.0], np.cumsum(orders_per_sec)))
    arrivals = np.cumsum(rng.exponential(1.0, int(cumulative[-1] * 1.2) + 100))
    arrivals = arrivals[arrivals < cumulative[-1]]
    # Time change: unit-rate arrivals mapped through the inverse of the cumulative rate.
    offsets_ms = np.interp(arrivals, cumulative, np.arange(seconds + 1) * 1000.0)
    floored: I64 = np.floor(offsets_ms).astype(np.int64)
    return floored


def _within_order_index(fills: I64) -> tuple[I64, I64]:
    """For fills expanded from orders: each fill's index inside its order, and each order's first fill position."""
    starts = np.cumsum(fills) - fills
    index = np.arange(int(fills.sum()), dtype=np.int64) - np.repeat(starts, fills)
    return index, starts


def _prices_e8(rng: np.random.Generator, spec: SymbolSpec, offsets_ms: I64, fills: I64, sells: I64) -> I64:
    """Taker sells hit the bid and buys lift the ask; a multi-fill order walks one level further with p=0.35."""
    orders = len(offsets_ms)
    dt_days = np.diff(offsets_ms, prepend=offsets_ms[:1]) / 86_400_000
    log_mid = np.cumsum(rng.standard_normal(orders) * spec.daily_vol * np.sqrt(dt_days))
    bid_ticks = np.floor(scaled_e8(spec.open_price) / spec.tick_e8 * np.exp(log_mid)).astype(np.int64)
    index, starts = _within_order_index(fills)
    walks: I64 = np.cumsum((rng.random(len(index)) < 0.35) & (index > 0), dtype=np.int64)
    levels: I64 = walks - np.repeat(walks[starts], fills)
    bids = np.repeat(bid_ticks, fills)
    ticks = np.where(np.repeat(sells, fills) == 1, bids - levels, bids + 1 + levels)
    return np.maximum(ticks, 1) * spec.tick_e8


def _sizes_e8(rng: np.random.Generator, spec: SymbolSpec, count: int) -> I64:
    """Log-normal quantities on the step size; 30% are round (one significant digit), as people type them."""
    qty = rng.lognormal(np.log(spec.median_qty), 1.2, count)
    magnitude = 10.0 ** np.floor(np.log10(qty))
    qty = np.where(rng.random(count) < 0.3, np.round(qty / magnitude) * magnitude, qty)
    steps = np.maximum(1, np.rint(qty / (spec.step_e8 / E8))).astype(np.int64)
    return steps * spec.step_e8


def simulate_trades(spec: SymbolSpec, hours: int, seed: int) -> tuple[list[bytes], I64]:
    """The venue's JSON texts for one symbol, and the collector's receive clock (ns) for each."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.venue.encode())])
    offsets_ms = _event_offsets_ms(rng, spec, hours * 3_600_000)
    orders = len(offsets_ms)
    fills = rng.geometric(FILL_P, orders).astype(np.int64)
    sells = (rng.random(orders) < 0.5).astype(np.int64)
    prices_e8 = _prices_e8(rng, spec, offsets_ms, fills, sells)
    count = len(prices_e8)
    sizes_e8 = _sizes_e8(rng, spec, count)
    trade_ms = np.repeat(offsets_ms + START_MS, fills)
    event_ms = trade_ms + np.repeat(rng.integers(0, 3, orders), fills)  # E is stamped a few ms after the match
    index, _ = _within_order_index(fills)
    # One message per fill, back to back on the socket: a latency per order plus a few µs per message after it.
    latency_ns = np.repeat(rng.lognormal(np.log(2.5e6), 0.35, orders).astype(np.int64), fills)
    recv_ns = event_ms * 1_000_000 + latency_ns + index * rng.integers(2_000, 40_000, count)
    maker = np.repeat(sells, fills)
    messages = [
        (
            f'{{"e":"trade","E":{e},"s":"{spec.venue}","t":{spec.first_trade_id + i},"p":"{venue_text(p)}",'
            f'"q":"{venue_text(q)}","T":{t},"m":{"true" if m else "false"},"M":true}}'
        ).encode()
        for i, (e, p, q, t, m) in enumerate(
            zip(
                event_ms.tolist(), prices_e8.tolist(), sizes_e8.tolist(), trade_ms.tolist(), maker.tolist(), strict=True
            )
        )
    ]
    return messages, recv_ns.astype(np.int64)


def ingest_trades(spec: SymbolSpec, messages: list[bytes], recv_ns: I64) -> pa.Table:
    """Parse the venue's JSON as the collector does: exact integer values plus the original strings for checking."""
    trades = _trades_decoder.decode(b"[" + b",".join(messages) + b"]")
    if any(t.venue_symbol != spec.venue or t.event_type != "trade" for t in trades):
        raise SystemExit(f"{spec.venue}: unexpected message in the generated feed")
    price_texts = [t.price for t in trades]
    size_texts = [t.qty for t in trades]
    return pa.table(
        {
            "ts": pa.array(np.array([t.trade_ms for t in trades], dtype=np.int64) * 1_000_000, pa.int64()),
            "exchange": pa.array([EXCHANGE] * len(trades)),
            "symbol": pa.array([spec.symbol] * len(trades)),
            "trade_id": pa.array([t.trade_id for t in trades], pa.uint64()),
            "price_e8": pa.array([scaled_e8(s) for s in price_texts], pa.int64()),
            "size_e8": pa.array([scaled_e8(s) for s in size_texts], pa.int64()),
            "side": pa.array(["sell" if t.buyer_is_maker else "buy" for t in trades]),
            "ts_recv_ns": pa.array(recv_ns, pa.int64()),
            "price_text": pa.array(price_texts),
            "size_text": pa.array(size_texts),
        }
    )


# ---- candles: closed 1-minute klines from the same trades -------------------------------------------------------


def _quote_e8(spec: SymbolSpec, prices_e8: I64, sizes_e8: I64) -> I64:
    """price x qty at 8 decimals, exactly: on the tick and step grid the product needs no rounding.

    The naive product of two 8-decimal integers has 16 decimals and overflows int64 for BTC, so multiply tick and
    step counts instead and rescale by a factor the symbol's grid makes integral (checked).
    """
    factor, remainder = divmod(spec.tick_e8 * spec.step_e8, E8)
    if remainder or (prices_e8 % spec.tick_e8).any() or (sizes_e8 % spec.step_e8).any():
        raise SystemExit(f"{spec.venue}: prices or sizes off the tick/step grid")
    return (prices_e8 // spec.tick_e8) * (sizes_e8 // spec.step_e8) * factor


@dataclass(frozen=True)
class Minutes:
    """Per symbol-minute aggregates, every value an exact integer (x 10^8 for prices and volumes)."""

    start_ms: I64
    first_id: I64
    last_id: I64
    open_e8: I64
    high_e8: I64
    low_e8: I64
    close_e8: I64
    volume_e8: I64
    quote_e8: I64
    taker_buy_volume_e8: I64
    taker_buy_quote_e8: I64
    trade_count: I64


def aggregate_minutes(spec: SymbolSpec, trades: pa.Table, hours: int) -> Minutes:
    trade_ms = trades["ts"].to_numpy() // 1_000_000
    prices = trades["price_e8"].to_numpy()
    sizes = trades["size_e8"].to_numpy()
    ids = trades["trade_id"].to_numpy().astype(np.int64)
    buys = trades["side"].to_numpy(zero_copy_only=False) == "buy"
    counts = np.bincount((trade_ms - START_MS) // MINUTE_MS, minlength=hours * 60)
    if (counts == 0).any():  # Binance would send an n=0 kline; at these rates a silent minute means a bug here
        raise SystemExit(f"{spec.venue}: a minute without trades")
    starts = np.cumsum(counts) - counts
    ends = starts + counts - 1
    quote = _quote_e8(spec, prices, sizes)
    return Minutes(
        start_ms=START_MS + np.arange(len(counts), dtype=np.int64) * MINUTE_MS,
        first_id=ids[starts],
        last_id=ids[ends],
        open_e8=prices[starts],
        high_e8=np.maximum.reduceat(prices, starts),
        low_e8=np.minimum.reduceat(prices, starts),
        close_e8=prices[ends],
        volume_e8=np.add.reduceat(sizes, starts),
        quote_e8=np.add.reduceat(quote, starts),
        taker_buy_volume_e8=np.add.reduceat(np.where(buys, sizes, 0), starts),
        taker_buy_quote_e8=np.add.reduceat(np.where(buys, quote, 0), starts),
        trade_count=counts.astype(np.int64),
    )


def kline_messages(spec: SymbolSpec, m: Minutes) -> list[bytes]:
    """The closed-kline message (``x: true``) the venue sends for each minute, byte for byte in its shape."""
    rows = zip(
        *(
            a.tolist()
            for a in (m.start_ms, m.first_id, m.last_id, m.open_e8, m.close_e8, m.high_e8, m.low_e8, m.volume_e8)
        ),
        *(a.tolist() for a in (m.trade_count, m.quote_e8, m.taker_buy_volume_e8, m.taker_buy_quote_e8)),
        strict=True,
    )
    return [
        (
            f'{{"e":"kline","E":{t + MINUTE_MS + 7},"s":"{spec.venue}","k":{{"t":{t},"T":{t + MINUTE_MS - 1},'
            f'"s":"{spec.venue}","i":"1m","f":{f},"L":{last},"o":"{venue_text(o)}","c":"{venue_text(c)}",'
            f'"h":"{venue_text(h)}","l":"{venue_text(lo)}","v":"{venue_text(v)}","n":{n},"x":true,'
            f'"q":"{venue_text(q)}","V":"{venue_text(bv)}","Q":"{venue_text(bq)}","B":"0"}}}}'
        ).encode()
        for t, f, last, o, c, h, lo, v, n, q, bv, bq in rows
    ]


def ingest_klines(spec: SymbolSpec, messages: list[bytes]) -> pa.Table:
    """Parse the closed klines back into exact candle rows plus the venue's strings for checking."""
    klines = [msgspec.json.decode(message)["k"] for message in messages]
    texts = {name: [k[key] for k in klines] for name, key in CANDLE_VALUE_KEYS.items()}
    columns: dict[str, pa.Array] = {
        "ts": pa.array(np.array([k["t"] for k in klines], dtype=np.int64) * 1_000_000, pa.int64()),
        "exchange": pa.array([EXCHANGE] * len(klines)),
        "symbol": pa.array([spec.symbol] * len(klines)),
        "interval_secs": pa.array([60] * len(klines), pa.uint32()),
    }
    for name, values in texts.items():
        columns[f"{name}_e8"] = pa.array([scaled_e8(s) for s in values], pa.int64())
    columns["trade_count"] = pa.array([k["n"] for k in klines], pa.uint32())
    for name, values in texts.items():
        columns[f"{name}_text"] = pa.array(values)
    return pa.table(columns)


# ---- datasets ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    name: str
    raw_json_bytes: int
    ingested: pa.Table  # stored columns, values as *_e8 integers, plus the venue's strings as *_text
    stored_columns: tuple[str, ...]
    value_columns: tuple[str, ...]  # the decimal columns: float64 or scaled int64 depending on the variant
    readback_order: str  # SQL ORDER BY that gives rows back in `ingested` order
    formatting_misses: dict[Numeric, int] = field(default_factory=dict, compare=False)  # cache

    @property
    def rows(self) -> int:
        return int(self.ingested.num_rows)

    def stored_table(self, numeric: Numeric) -> pa.Table:
        """The rows as stored: decimal columns as float64 (nearest double) or int64 x 10^8; ts as UTC timestamps."""
        columns: dict[str, pa.ChunkedArray] = {}
        for name in self.stored_columns:
            if name in self.value_columns:
                scaled = self.ingested[f"{name}_e8"]
                # int64 -> float64 is exact below 2^53 and IEEE division rounds once: the double nearest the decimal.
                columns[name] = scaled if numeric == "int64" else pa.chunked_array([scaled.to_numpy() / E8])
            elif name == "ts":
                columns[name] = self.ingested[name].cast(pa.timestamp("ns", tz="UTC"))
            else:
                columns[name] = self.ingested[name]
        return pa.table(columns)


TRADE_COLUMNS: Final = ("ts", "exchange", "symbol", "trade_id", "price", "size", "side", "ts_recv_ns")
CANDLE_COLUMNS: Final = (
    "ts",
    "exchange",
    "symbol",
    "interval_secs",
    *CANDLE_VALUE_KEYS,
    "trade_count",
)


def build_datasets(hours: int, seed: int) -> tuple[Dataset, Dataset]:
    trade_tables, candle_tables = [], []
    trade_json_bytes = candle_json_bytes = 0
    for spec in SYMBOLS:  # one symbol at a time: its JSON texts are dropped as soon as they are parsed
        messages, recv_ns = simulate_trades(spec, hours, seed)
        trade_json_bytes += sum(map(len, messages))
        trades = ingest_trades(spec, messages, recv_ns)
        del messages
        klines = kline_messages(spec, aggregate_minutes(spec, trades, hours))
        candle_json_bytes += sum(map(len, klines))
        trade_tables.append(trades)
        candle_tables.append(ingest_klines(spec, klines))
    trades_ds = Dataset(
        "trades",
        trade_json_bytes,
        pa.concat_tables(trade_tables).combine_chunks(),
        TRADE_COLUMNS,
        ("price", "size"),
        "symbol, trade_id",
    )
    candles_ds = Dataset(
        "candles",
        candle_json_bytes,
        pa.concat_tables(candle_tables).combine_chunks(),
        CANDLE_COLUMNS,
        tuple(CANDLE_VALUE_KEYS),
        "symbol, ts",
    )
    return trades_ds, candles_ds
