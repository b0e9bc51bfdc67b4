from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from tests.unit.common import _samples
from tickstrata.common.events import (
    QUARANTINE_RAW_LIMIT_BYTES,
    BookLevel,
    DataType,
    Event,
    Quarantine,
    Side,
    data_type_of,
    validate_exchange,
    validate_symbol,
)

NON_FINITE = ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf"]

# (builder, name of a Decimal field) for every Decimal field of every event type.
DECIMAL_FIELDS: list[tuple[Callable[..., Event], str]] = [
    (_samples.trade, "price"),
    (_samples.trade, "size"),
    *[(_samples.candle, name) for name in ("open", "high", "low", "close", "volume", "quote_volume")],
    *[(_samples.quote, name) for name in ("bid_price", "bid_size", "ask_price", "ask_size")],
    *[(_samples.funding, name) for name in ("rate", "mark_price", "index_price")],
    *[(_samples.instrument, name) for name in ("tick_size", "lot_size")],
]
# (builder, name of an int field) for every non-negative int field.
INT_FIELDS: list[tuple[Callable[..., Event], str]] = [
    (_samples.trade, "ts_event_ns"),
    (_samples.trade, "ts_recv_ns"),
    (_samples.quote, "ts_event_ns"),
    (_samples.quote, "ts_recv_ns"),
    (_samples.candle, "open_time_ns"),
    (_samples.candle, "trade_count"),
    (_samples.book, "sequence"),
    (_samples.funding, "next_funding_time_ns"),
    (_samples.instrument, "ts_event_ns"),
    (_samples.gap, "ts_recv_ns"),
    (_samples.quarantine, "ts_recv_ns"),
]


def test_every_sample_event_constructs() -> None:
    assert [type(event).__name__ for event in _samples.all_events()] == [
        "Trade", "Candle", "Quote", "BookSnapshot", "Funding", "InstrumentSpec", "Gap", "Quarantine",
    ]  # fmt: skip


def test_events_are_frozen() -> None:
    trade = _samples.trade()
    with pytest.raises(AttributeError):
        trade.price = Decimal(1)  # type: ignore[misc]


def test_trade_keeps_the_decimal_exactly_as_given() -> None:
    assert str(_samples.trade().price) == "64123.45000000"


@pytest.mark.parametrize(("builder", "field"), DECIMAL_FIELDS)
@pytest.mark.parametrize("text", NON_FINITE)
def test_event_with_non_finite_decimal_raises(builder: Callable[..., Event], field: str, text: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a finite Decimal"):
        builder(**{field: Decimal(text)})


@pytest.mark.parametrize(("builder", "field"), DECIMAL_FIELDS)
def test_event_with_float_decimal_field_raises_type_error(builder: Callable[..., Event], field: str) -> None:
    with pytest.raises(TypeError, match=f"{field} must be a Decimal"):
        builder(**{field: 1.5})


@pytest.mark.parametrize("text", NON_FINITE)
def test_book_level_with_non_finite_decimal_raises(text: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        BookLevel(Decimal(text), Decimal(1))
    with pytest.raises(ValueError, match="finite"):
        BookLevel(Decimal(1), Decimal(text))


@pytest.mark.parametrize(("builder", "field"), INT_FIELDS)
@pytest.mark.parametrize("value", [-1, 2**63, True, 1.0, "1"])
def test_event_with_bad_int_field_raises(builder: Callable[..., Event], field: str, value: object) -> None:
    with pytest.raises((TypeError, ValueError), match=field):
        builder(**{field: value})


def test_decimal_subclass_takes_the_slow_path_and_is_accepted() -> None:
    class Price(Decimal):
        pass

    assert _samples.trade(price=Price("1.5")).price == Decimal("1.5")
    assert _samples.quote(bid_price=Price("1.5")).bid_price == Decimal("1.5")


def test_optional_fields_accept_none() -> None:
    assert _samples.candle(quote_volume=None, trade_count=None).trade_count is None
    assert _samples.funding(mark_price=None).mark_price is None
    assert _samples.book(sequence=42).sequence == 42


def test_enum_fields_require_members_not_strings() -> None:
    with pytest.raises(TypeError, match="side must be a Side member"):
        _samples.trade(side="buy")
    with pytest.raises(TypeError, match="source"):
        _samples.candle(source="ws")
    with pytest.raises(TypeError, match="kind"):
        _samples.gap(kind="disconnect")


def test_trade_with_empty_trade_id_raises() -> None:
    with pytest.raises(ValueError, match="trade_id"):
        _samples.trade(trade_id="")


@pytest.mark.parametrize("interval", [0, -60, 60.0, True])
def test_candle_with_bad_interval_raises(interval: object) -> None:
    with pytest.raises(ValueError, match="interval_secs"):
        _samples.candle(interval_secs=interval)


def test_candle_close_time_is_open_time_plus_interval() -> None:
    candle = _samples.candle(interval_secs=300)
    assert candle.close_time_ns == candle.open_time_ns + 300_000_000_000


def test_book_levels_must_be_tuples_of_book_level() -> None:
    with pytest.raises(TypeError, match="tuples"):
        _samples.book(bids=[BookLevel(Decimal(1), Decimal(1))])
    with pytest.raises(TypeError, match="BookLevel"):
        _samples.book(asks=((Decimal(1), Decimal(1)),))


def test_gap_window_must_be_half_open_and_not_empty() -> None:
    with pytest.raises(ValueError, match="empty or inverted"):
        _samples.gap(start_ns=10, end_ns=9)
    with pytest.raises(ValueError, match="empty or inverted"):
        _samples.gap(start_ns=10, end_ns=10)  # [10, 10) holds nothing: a gap always holds its start
    assert _samples.gap(start_ns=10, end_ns=11).end_ns == 11  # events stamped exactly 10 may be missing


@pytest.mark.parametrize("reason", ["", "NonFinite", "non finite", "1abc", "x" * 65])
def test_quarantine_with_bad_reason_code_raises(reason: str) -> None:
    with pytest.raises(ValueError, match="snake_case"):
        _samples.quarantine(reason=reason)


def test_quarantine_capture_truncates_and_records_the_full_size() -> None:
    raw = b"x" * (QUARANTINE_RAW_LIMIT_BYTES + 10)
    event = Quarantine.capture(raw, exchange="binance", reason="oversized_frame", detail="", ts_recv_ns=1)
    assert len(event.raw) == QUARANTINE_RAW_LIMIT_BYTES
    assert event.raw_size_bytes == QUARANTINE_RAW_LIMIT_BYTES + 10
    assert event.data_type is None
    assert event.symbol is None


def test_quarantine_capture_keeps_undecodable_text_byte_for_byte() -> None:
    text = b'{"p":"\xff"}'.decode("utf-8", "surrogateescape")
    event = Quarantine.capture(text, exchange="kraken", reason="invalid_utf8", detail="", ts_recv_ns=1)
    assert event.raw == b'{"p":"\xff"}'


def test_quarantine_raw_over_the_limit_raises() -> None:
    raw = b"x" * (QUARANTINE_RAW_LIMIT_BYTES + 1)
    with pytest.raises(ValueError, match="limit"):
        _samples.quarantine(raw=raw, raw_size_bytes=len(raw))
    with pytest.raises(ValueError, match="below"):
        _samples.quarantine(raw=b"abc", raw_size_bytes=2)


@pytest.mark.parametrize("exchange", ["binance", "binance-usdm", "coinbase", "kraken", "bybit", "okx", "sim1"])
def test_validate_exchange_accepts_lower_case_ids(exchange: str) -> None:
    assert validate_exchange(exchange) == exchange


@pytest.mark.parametrize(
    "exchange", ["", "Binance", "BINANCE", "binance_usdm", "-binance", "binance-", "bin--ance", "1binance",
                 "bin ance", "binance:spot", "b" * 33, "bïnance"],
)  # fmt: skip
def test_validate_exchange_rejects_malformed_ids(exchange: str) -> None:
    with pytest.raises(ValueError, match="invalid exchange id"):
        validate_exchange(exchange)


def test_validate_exchange_rejects_non_str() -> None:
    with pytest.raises(TypeError, match="must be str"):
        validate_exchange(b"binance")  # type: ignore[arg-type]


@pytest.mark.parametrize("symbol", ["BTC-USDT", "BTC-USDT-PERP", "1000PEPE-USDT", "ETH-USD", "BTC-USDC-PERP"])
def test_validate_symbol_accepts_normalized_symbols(symbol: str) -> None:
    assert validate_symbol(symbol) == symbol


@pytest.mark.parametrize(
    "symbol", ["", "BTCUSDT", "btc-usdt", "BTC/USDT", "BTC-USDT-SWAP", "BTC-PERP", "BTC-USDT-PERP-PERP", "-USDT",
               "BTC-", "BTC_USDT", "BTC-USDT ", "XBT:USD"],
)  # fmt: skip
def test_validate_symbol_rejects_venue_spellings(symbol: str) -> None:
    with pytest.raises(ValueError, match="invalid symbol"):
        validate_symbol(symbol)


def test_event_with_bad_exchange_or_symbol_raises() -> None:
    with pytest.raises(ValueError, match="invalid exchange id 'Binance'"):
        _samples.trade(exchange="Binance")
    with pytest.raises(ValueError, match="invalid symbol 'BTCUSDT'"):
        _samples.quote(symbol="BTCUSDT")
    with pytest.raises(ValueError, match="invalid symbol"):
        _samples.gap(symbol="btc-usdt")


@pytest.mark.parametrize(
    ("event", "data_type"),
    [
        (_samples.trade(), DataType.TRADES),
        (_samples.candle(), DataType.CANDLES),
        (_samples.quote(), DataType.QUOTES),
        (_samples.book(), DataType.BOOKS),
        (_samples.funding(), DataType.FUNDING),
        (_samples.instrument(), DataType.INSTRUMENTS),
    ],
)
def test_data_type_of_maps_each_market_data_event(event: Event, data_type: DataType) -> None:
    assert data_type_of(event) is data_type  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["price_decimals", "size_decimals"])
@pytest.mark.parametrize("decimals", [-1, 19, True, 2.0])
def test_instrument_spec_refuses_decimals_outside_0_to_18(field: str, decimals: object) -> None:
    with pytest.raises(ValueError, match=f"{field} must be an int in \\[0, 18\\]"):
        _samples.instrument(**{field: decimals})


@pytest.mark.parametrize("field", ["tick_size", "lot_size"])
@pytest.mark.parametrize("size", ["0", "-0.01"])
def test_instrument_spec_refuses_an_increment_that_is_not_positive(field: str, size: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be positive"):
        _samples.instrument(**{field: Decimal(size)})


def test_instrument_spec_accepts_the_bounds_of_its_decimals() -> None:
    assert _samples.instrument(price_decimals=0, size_decimals=18).size_decimals == 18


def test_data_type_of_a_gap_raises() -> None:
    with pytest.raises(TypeError, match="not a market-data event"):
        data_type_of(_samples.gap())  # type: ignore[arg-type]


def test_side_values_are_the_wire_spelling() -> None:
    assert [side.value for side in Side] == ["buy", "sell"]
    assert [data_type.value for data_type in DataType] == [
        "trades",
        "candles",
        "quotes",
        "books",
        "funding",
        "instruments",
    ]
