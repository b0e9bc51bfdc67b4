"""Hot rows of every market-data table as QuestDB returns them (Arrow), with the scales of their instruments."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa

from tickstrata.common.questdb_schema import Scale

T0_NS = 1_717_000_000_123_000_000
NS = pa.timestamp("ns", tz="UTC")


def trades() -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([T0_NS, T0_NS + 1, T0_NS + 1_000_000], type=NS),
            "exchange": ["binance", "binance", "binance"],
            "symbol": ["BTC-USDT", "BTC-USDT", "SHIB-USDT"],
            "trade_id": ["1", "2", "3"],
            "price": [float(Decimal("64123.40000000")), 64123.5, float(Decimal("0.00001234"))],
            "size": [0.00012, 1.5, 123456789.0],
            "side": ["buy", "sell", "buy"],
            "ts_recv_ns": pa.array([T0_NS + 5, T0_NS + 6, T0_NS + 1_000_007], type=pa.int64()),
            "backfilled": [False, True, False],
        }
    )


def hot_rows() -> dict[str, tuple[pa.Table, dict[Scale, Any]]]:
    candles = pa.table(
        {
            "ts": pa.array([T0_NS, T0_NS + 60 * 10**9], type=NS),
            "exchange": ["binance"] * 2,
            "symbol": ["BTC-USDT"] * 2,
            "interval_secs": pa.array([60, 60], type=pa.int32()),
            "open": [64000.1, 64001.0],
            "high": [64010.5, 64002.0],
            "low": [63990.0, 64000.0],
            "close": [64001.0, 64000.5],
            "volume": [12.345, 0.0],
            "quote_volume": pa.array([790123.456789, None], type=pa.float64()),
            "trade_count": pa.array([17, None], type=pa.int64()),
            "closed": [True, False],
            "source": ["ws", "built"],
            "ts_event_ns": pa.array([T0_NS + 59_999_000_000, T0_NS + 61 * 10**9], type=pa.int64()),
            "ts_recv_ns": pa.array([T0_NS + 60 * 10**9, T0_NS + 62 * 10**9], type=pa.int64()),
        }
    )
    quotes = pa.table(
        {
            "ts": pa.array([T0_NS], type=NS),
            "exchange": ["binance"],
            "symbol": ["ETH-USDT"],
            "bid_price": [3456.78],
            "bid_size": [1.5],
            "ask_price": [3456.79],
            "ask_size": [0.25],
            "ts_recv_ns": pa.array([T0_NS + 3], type=pa.int64()),
        }
    )
    books = pa.table(
        {
            "ts": pa.array([T0_NS, T0_NS + 100_000_000], type=NS),
            "exchange": ["binance"] * 2,
            "symbol": ["BTC-USDT"] * 2,
            "bids": [[[64000.1, 64000.0], [0.001, 0.002]], [[63999.9], [1.25]]],
            "asks": [[[64000.2], [0.5]], []],
            "sequence": pa.array([7, None], type=pa.int64()),
            "ts_recv_ns": pa.array([T0_NS + 9, T0_NS + 100_000_009], type=pa.int64()),
        }
    )
    funding = pa.table(
        {
            "ts": pa.array([T0_NS], type=NS),
            "exchange": ["binance-usdm"],
            "symbol": ["BTC-USDT-PERP"],
            "rate": [-0.000125],
            "mark_price": pa.array([None], type=pa.float64()),
            "index_price": [64000.12345678],
            "next_funding_time_ns": pa.array([T0_NS + 8 * 3600 * 10**9], type=pa.int64()),
            "ts_recv_ns": pa.array([T0_NS + 1], type=pa.int64()),
        }
    )
    return {
        "trades": (trades(), {Scale.PRICE: [2, 2, 8], Scale.SIZE: [5, 5, 0]}),
        "candles": (candles, {Scale.PRICE: 1, Scale.SIZE: 3}),
        "quotes": (quotes, {Scale.PRICE: 2, Scale.SIZE: 2}),
        "books": (books, {Scale.PRICE: 1, Scale.SIZE: 3}),
        "funding": (funding, {}),
    }
