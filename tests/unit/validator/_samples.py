"""Events for the rule tests: one sound trade and candle, with any field overridden."""

from __future__ import annotations

from decimal import Decimal

from tickstrata.common.events import Candle, CandleSource, Side, Trade

OPEN_TIME_NS = 1_717_000_020_000_000_000
MINUTE_NS = 60_000_000_000


def trade(**overrides: object) -> Trade:
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "trade_id": "1000",
        "price": Decimal("64010.5"),
        "size": Decimal("0.012"),
        "side": Side.BUY,
        "ts_event_ns": OPEN_TIME_NS,
        "ts_recv_ns": OPEN_TIME_NS + 2_000_000,
    }
    fields.update(overrides)
    return Trade(**fields)  # type: ignore[arg-type]


def candle(**overrides: object) -> Candle:
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "interval_secs": 60,
        "open_time_ns": OPEN_TIME_NS,
        "open": Decimal("64000.0"),
        "high": Decimal("64020.0"),
        "low": Decimal("63990.0"),
        "close": Decimal("64011.0"),
        "volume": Decimal("12.5"),
        "quote_volume": Decimal("800100.25"),
        "trade_count": 42,
        "closed": True,
        "source": CandleSource.WS,
        "ts_event_ns": OPEN_TIME_NS + MINUTE_NS - 1,
        "ts_recv_ns": OPEN_TIME_NS + MINUTE_NS + 5_000_000,
    }
    fields.update(overrides)
    return Candle(**fields)  # type: ignore[arg-type]
