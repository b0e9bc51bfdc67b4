"""One valid instance of every event type, shared by the event and stream tests."""

from __future__ import annotations

from decimal import Decimal

from tickstrata.common.events import (
    BookLevel,
    BookSnapshot,
    Candle,
    CandleSource,
    DataType,
    Event,
    Funding,
    Gap,
    GapKind,
    InstrumentSpec,
    Quarantine,
    Quote,
    Side,
    Trade,
)

TS_EVENT_NS = 1_717_000_000_123_000_000
TS_RECV_NS = 1_717_000_000_125_456_789


def trade(**overrides: object) -> Trade:
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "trade_id": "3400123456",
        "price": Decimal("64123.45000000"),
        "size": Decimal("0.00120000"),
        "side": Side.BUY,
        "ts_event_ns": TS_EVENT_NS,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return Trade(**fields)  # type: ignore[arg-type]


def candle(**overrides: object) -> Candle:
    fields: dict[str, object] = {
        "exchange": "binance-usdm",
        "symbol": "BTC-USDT-PERP",
        "interval_secs": 60,
        "open_time_ns": 1_717_000_020_000_000_000,
        "open": Decimal("64100.10"),
        "high": Decimal("64150.00"),
        "low": Decimal("64090.00"),
        "close": Decimal("64123.40"),
        "volume": Decimal("12.345"),
        "quote_volume": Decimal("791234.5678"),
        "trade_count": 812,
        "closed": True,
        "source": CandleSource.WS,
        "ts_event_ns": TS_EVENT_NS,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return Candle(**fields)  # type: ignore[arg-type]


def quote(**overrides: object) -> Quote:
    fields: dict[str, object] = {
        "exchange": "coinbase",
        "symbol": "ETH-USD",
        "bid_price": Decimal("3456.78"),
        "bid_size": Decimal("1.50000000"),
        "ask_price": Decimal("3456.79"),
        "ask_size": Decimal("0.25"),
        "ts_event_ns": TS_EVENT_NS,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return Quote(**fields)  # type: ignore[arg-type]


def book(**overrides: object) -> BookSnapshot:
    fields: dict[str, object] = {
        "exchange": "kraken",
        "symbol": "BTC-USD",
        "bids": (BookLevel(Decimal("64000.0"), Decimal("1.2")), BookLevel(Decimal("63999.9"), Decimal("0.5"))),
        "asks": (BookLevel(Decimal("64000.1"), Decimal("0.75")),),
        "sequence": None,
        "ts_event_ns": TS_EVENT_NS,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return BookSnapshot(**fields)  # type: ignore[arg-type]


def funding(**overrides: object) -> Funding:
    fields: dict[str, object] = {
        "exchange": "bybit",
        "symbol": "BTC-USDT-PERP",
        "rate": Decimal("0.00010000"),
        "mark_price": Decimal("64120.5"),
        "index_price": None,
        "next_funding_time_ns": 1_717_027_200_000_000_000,
        "ts_event_ns": TS_EVENT_NS,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return Funding(**fields)  # type: ignore[arg-type]


def instrument(**overrides: object) -> InstrumentSpec:
    fields: dict[str, object] = {
        "exchange": "binance-usdm",
        "symbol": "BTC-USDT-PERP",
        "price_decimals": 2,
        "size_decimals": 3,
        "tick_size": Decimal("0.10"),
        "lot_size": Decimal("0.001"),
        "ts_event_ns": TS_EVENT_NS,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return InstrumentSpec(**fields)  # type: ignore[arg-type]


def gap(**overrides: object) -> Gap:
    fields: dict[str, object] = {
        "exchange": "okx",
        "data_type": DataType.TRADES,
        "symbol": None,
        "kind": GapKind.DISCONNECT,
        "start_ns": TS_EVENT_NS,
        "end_ns": TS_EVENT_NS + 3_000_000_000,
        "cause": "close code 1006 after 3 s without frames",
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return Gap(**fields)  # type: ignore[arg-type]


def quarantine(**overrides: object) -> Quarantine:
    fields: dict[str, object] = {
        "exchange": "binance",
        "data_type": DataType.TRADES,
        "symbol": "BTC-USDT",
        "reason": "non_finite_price",
        "detail": "p='NaN'",
        "raw": b'{"e":"trade","s":"BTCUSDT","p":"NaN","q":"\xff"}',
        "raw_size_bytes": 45,
        "ts_recv_ns": TS_RECV_NS,
    }
    fields.update(overrides)
    return Quarantine(**fields)  # type: ignore[arg-type]


def all_events() -> list[Event]:
    return [trade(), candle(), quote(), book(), funding(), instrument(), gap(), quarantine()]
