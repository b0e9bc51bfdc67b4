from __future__ import annotations

from decimal import Decimal
from typing import cast

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.common import _samples
from tickstrata.common.events import BookLevel, DataType, Event, Gap, GapKind, InstrumentSpec, Side, Trade
from tickstrata.common.streams import (
    FIELD_EVENTS,
    FIELD_TRACEPARENT,
    FIELD_TRACESTATE,
    FIELD_VERSION,
    GAP_STREAM,
    MARKET_DATA_STREAM_PATTERN,
    MAX_EVENTS_PER_ENTRY,
    QUARANTINE_STREAM,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    CacheValueDecodeError,
    CodecError,
    EntryDecodeError,
    LatestPrice,
    UnsupportedSchemaError,
    dead_letter_stream,
    decode_dead_letter,
    decode_entry,
    decode_latest_price,
    encode_dead_letter,
    encode_entry,
    encode_latest_price,
    gap_stream,
    latest_price_key,
    market_data_stream,
    parse_latest_price_key,
    parse_market_data_stream,
    quarantine_stream,
    stream_for,
    xadd_args,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _wire(event: object) -> bytes:
    # Decimals encode as their exact string, so equal bytes prove trailing zeros and exponents survived.
    return msgspec.msgpack.encode(event)


def _entry(payload: object, *, version: bytes = b"1") -> dict[bytes, bytes]:
    return {FIELD_VERSION: version, FIELD_EVENTS: msgspec.msgpack.encode(payload)}


# ---- round trips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("event", _samples.all_events(), ids=lambda event: type(event).__name__)
def test_every_event_type_round_trips_exactly(event: Event) -> None:
    entry = decode_entry(encode_entry([event]))
    assert entry.schema_version == SCHEMA_VERSION
    assert entry.events == (event,)
    assert type(entry.events[0]) is type(event)
    assert _wire(entry.events[0]) == _wire(event)


def test_decimal_trailing_zeros_survive_the_round_trip() -> None:
    (decoded,) = decode_entry(encode_entry([_samples.trade(price=Decimal("64123.45000000"))])).events
    assert isinstance(decoded, Trade)
    assert str(decoded.price) == "64123.45000000"
    assert str(decoded.size) == "0.00120000"
    assert isinstance(decoded.price, Decimal)
    assert decoded.side is Side.BUY


def test_heterogeneous_batch_round_trips_in_order() -> None:
    events = _samples.all_events() * 3
    assert decode_entry(encode_entry(events)).events == tuple(events)


def test_largest_allowed_batch_round_trips_and_one_more_is_refused() -> None:
    events = [_samples.trade(trade_id=str(i)) for i in range(MAX_EVENTS_PER_ENTRY)]
    assert decode_entry(encode_entry(tuple(events))).events == tuple(events)
    with pytest.raises(ValueError, match="at most"):
        encode_entry([*events, _samples.trade()])


def test_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        encode_entry([])


@pytest.mark.parametrize("thing", [BookLevel(Decimal(1), Decimal(1)), LatestPrice(Decimal(1), None, 1, 2), {}])
def test_encoding_a_non_event_raises_type_error(thing: object) -> None:
    with pytest.raises(TypeError, match="not an event"):
        encode_entry([_samples.trade(), thing])  # type: ignore[list-item]


def test_entry_fields_are_short_bytes() -> None:
    fields = encode_entry([_samples.trade()], traceparent=TRACEPARENT, tracestate="vendor=abc")
    assert set(fields) == {b"v", b"d", b"tp", b"tst"}
    assert fields[FIELD_VERSION] == b"4"
    assert all(isinstance(value, bytes) for value in fields.values())


# ---- trace context ----------------------------------------------------------------------------------------


def test_traceparent_and_tracestate_are_carried() -> None:
    entry = decode_entry(encode_entry([_samples.trade()], traceparent=TRACEPARENT, tracestate="congo=t61rcWkgMzE"))
    assert entry.traceparent == TRACEPARENT
    assert entry.tracestate == "congo=t61rcWkgMzE"


def test_absent_trace_context_decodes_as_none() -> None:
    fields = encode_entry([_samples.trade()])
    assert FIELD_TRACEPARENT not in fields
    entry = decode_entry(fields)
    assert (entry.traceparent, entry.tracestate) == (None, None)


@pytest.mark.parametrize("traceparent", ["00-\u00e9", "0" * 513])
def test_non_ascii_or_oversized_traceparent_is_refused_at_encode(traceparent: str) -> None:
    with pytest.raises(ValueError, match=r"ascii|bytes"):
        encode_entry([_samples.trade()], traceparent=traceparent)


def test_oversized_tracestate_is_dropped_at_encode() -> None:
    assert FIELD_TRACESTATE not in encode_entry([_samples.trade()], tracestate="a=" + "b" * 600)


def test_trace_context_is_carried_verbatim_for_the_propagator_to_validate() -> None:
    entry = decode_entry({**encode_entry([_samples.trade()]), FIELD_TRACEPARENT: b"00-not-validated-here"})
    assert entry.traceparent == "00-not-validated-here"


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"0" * 513])
def test_non_ascii_or_oversized_trace_context_decodes_as_none(raw: bytes) -> None:
    fields = {**encode_entry([_samples.trade()]), FIELD_TRACEPARENT: raw, FIELD_TRACESTATE: raw}
    entry = decode_entry(fields)
    assert (entry.traceparent, entry.tracestate) == (None, None)
    assert len(entry.events) == 1


# ---- versions and garbage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [b"5", b"17", b"999999"])
def test_unknown_newer_version_raises_unsupported_schema(version: bytes) -> None:
    fields = {**encode_entry([_samples.trade()]), FIELD_VERSION: version}
    with pytest.raises(UnsupportedSchemaError, match="unsupported stream schema version") as excinfo:
        decode_entry(fields)
    assert excinfo.value.version == int(version)
    # Not a poison entry: a consumer catching EntryDecodeError must not dead-letter it.
    assert not isinstance(excinfo.value, EntryDecodeError)


@pytest.mark.parametrize("version", [b"", b"0", b"01", b"-1", b"+1", b" 1", b"1 ", b"1_0", b"abc", b"1.0",
                                     b"1234567", b"\xd9\xa1"])  # fmt: skip
def test_malformed_version_raises_entry_decode_error(version: bytes) -> None:
    fields = {**encode_entry([_samples.trade()]), FIELD_VERSION: version}
    with pytest.raises(EntryDecodeError) as excinfo:
        decode_entry(fields)
    assert excinfo.value.reason == "bad_version"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "missing_version"),
        ({FIELD_VERSION: b"1"}, "missing_events"),
        ({FIELD_VERSION: b"1", FIELD_EVENTS: b""}, "bad_events"),
        ({FIELD_VERSION: b"1", FIELD_EVENTS: b"\xc1"}, "bad_events"),
        ({FIELD_VERSION: b"1", FIELD_EVENTS: b'[{"price": "1"}]'}, "bad_events"),
        ({FIELD_VERSION: b"1", FIELD_EVENTS: b"\x91\x99\xa1\x80"}, "bad_events"),  # invalid UTF-8 in the tag
        (_entry([]), "empty_batch"),
        (_entry({"t": 1}), "bad_events"),
        (_entry([["z", "binance"]]), "bad_events"),  # unknown tag
        (_entry([["t", "binance", "BTC-USDT", "1", "1.5", "2"]]), "bad_events"),  # too short
        ({"v": "1", "d": "x"}, "bad_field_type"),  # a decode_responses=True client
        ({FIELD_VERSION: 1, FIELD_EVENTS: b""}, "bad_field_type"),
        ({FIELD_VERSION: b"1", FIELD_EVENTS: "x"}, "bad_field_type"),
    ],
)
def test_garbage_raises_entry_decode_error_with_reason(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(EntryDecodeError) as excinfo:
        decode_entry(fields)
    assert excinfo.value.reason == reason
    assert str(excinfo.value).startswith(reason)


def _trade_array(price: object = "1.5", ts_event_ns: object = 1, exchange: object = "binance") -> list[object]:
    return ["t", exchange, "BTC-USDT", "7", price, "2", "sell", ts_event_ns, 2]


@pytest.mark.parametrize(
    ("array", "detail"),
    [
        (_trade_array(price="NaN"), "price must be a finite Decimal"),
        (_trade_array(price="-Infinity"), "price must be a finite Decimal"),
        (_trade_array(price="1,5"), "Invalid decimal"),
        (_trade_array(ts_event_ns=-1), "ts_event_ns must be within"),
        (_trade_array(ts_event_ns=2**64 - 1), "ts_event_ns must be within"),
        (_trade_array(ts_event_ns=1.0), "Expected `int`"),
        (_trade_array(exchange="BINANCE"), "invalid exchange id"),
        (["t", "binance", "BTC-USDT", "7", "1", "2", "hold", 1, 2], "Invalid enum value 'hold'"),
    ],
)
def test_invalid_event_values_are_rejected_on_decode(array: list[object], detail: str) -> None:
    with pytest.raises(EntryDecodeError, match=detail) as excinfo:
        decode_entry(_entry([array]))
    assert excinfo.value.reason == "bad_events"


def test_unknown_fields_and_appended_event_fields_are_ignored() -> None:
    # Forward compatibility: a newer producer may add entry fields or append defaulted fields to an event.
    fields = {**_entry([[*_trade_array(), True, "appended-later"]]), b"future": b"x"}
    (trade,) = decode_entry(fields).events
    assert isinstance(trade, Trade)
    assert trade.price == Decimal("1.5")
    assert trade.backfilled is True


DECIMALS = st.decimals(allow_nan=False, allow_infinity=False)
NANOSECONDS = st.integers(min_value=0, max_value=2**63 - 1)
SYMBOL_PART = st.from_regex(r"[A-Z0-9]{1,8}", fullmatch=True).filter(lambda part: part != "PERP")


TRADES = st.builds(
    Trade,
    exchange=st.just("binance-usdm"),
    symbol=st.tuples(SYMBOL_PART, SYMBOL_PART, st.booleans()).map(
        lambda parts: f"{parts[0]}-{parts[1]}" + ("-PERP" if parts[2] else "")
    ),
    trade_id=st.text(min_size=1, max_size=40),
    price=DECIMALS,
    size=DECIMALS,
    side=st.sampled_from(Side),
    ts_event_ns=NANOSECONDS,
    ts_recv_ns=NANOSECONDS,
)


@given(trades=st.lists(TRADES, min_size=1, max_size=5))
def test_any_trade_round_trips_exactly(trades: list[Trade]) -> None:
    decoded = decode_entry(encode_entry(trades, traceparent=TRACEPARENT)).events
    assert decoded == tuple(trades)
    for before, after in zip(trades, decoded, strict=True):
        assert isinstance(after, Trade)
        assert (str(after.price), str(after.size)) == (str(before.price), str(before.size))
        assert (after.ts_event_ns, after.ts_recv_ns) == (before.ts_event_ns, before.ts_recv_ns)


def _decodes_or_raises_entry_decode_error(fields: dict[bytes, bytes]) -> None:
    error: CodecError
    try:
        decode_entry(fields)
    except (EntryDecodeError, UnsupportedSchemaError) as exc:
        error = exc
    else:
        return
    if isinstance(error, UnsupportedSchemaError):
        # Only a well-formed but unknown version may raise this; everything else is garbage.
        assert fields[FIELD_VERSION] == str(error.version).encode()
    else:
        assert isinstance(error, EntryDecodeError)
        assert error.reason


MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20) | st.sampled_from(["t", "c", "q", "b", "f", "g", "x", "binance", "BTC-USDT", "1.5"]),
    lambda children: st.lists(children, max_size=16) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=40,
)  # fmt: skip


@settings(max_examples=300)
@given(payload=st.binary(max_size=200))
def test_any_byte_garbage_decodes_or_raises_entry_decode_error(payload: bytes) -> None:
    _decodes_or_raises_entry_decode_error({FIELD_VERSION: b"1", FIELD_EVENTS: payload})


@settings(max_examples=300)
@given(value=MSGPACK_VALUES)
def test_any_well_formed_msgpack_decodes_or_raises_entry_decode_error(value: object) -> None:
    _decodes_or_raises_entry_decode_error({FIELD_VERSION: b"1", FIELD_EVENTS: msgspec.msgpack.encode(value)})


@settings(max_examples=300)
@given(data=st.data(), event_index=st.integers(0, 6))
def test_any_corruption_of_a_valid_entry_decodes_or_raises_entry_decode_error(
    data: st.DataObject, event_index: int
) -> None:
    payload = bytearray(encode_entry([_samples.all_events()[event_index]])[FIELD_EVENTS])
    position = data.draw(st.integers(0, len(payload) - 1))
    payload[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(payload)))
    _decodes_or_raises_entry_decode_error({FIELD_VERSION: b"1", FIELD_EVENTS: bytes(payload[:cut])})


@given(fields=st.dictionaries(st.sampled_from([FIELD_VERSION, FIELD_EVENTS, FIELD_TRACEPARENT]) | st.binary(),
                              st.binary(max_size=60), max_size=5))  # fmt: skip
def test_any_field_mapping_decodes_or_raises_entry_decode_error(fields: dict[bytes, bytes]) -> None:
    _decodes_or_raises_entry_decode_error(fields)


# ---- names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", list(DataType))
def test_market_data_stream_name_round_trips(data_type: DataType) -> None:
    name = market_data_stream("binance-usdm", data_type)
    assert name == f"md:binance-usdm:{data_type.value}"
    assert parse_market_data_stream(name) == ("binance-usdm", data_type)
    assert parse_market_data_stream(name.encode()).data_type is data_type


def test_market_data_stream_examples() -> None:
    assert market_data_stream("binance", DataType.TRADES) == "md:binance:trades"
    assert MARKET_DATA_STREAM_PATTERN == "md:*"
    assert (gap_stream(), quarantine_stream()) == (GAP_STREAM, QUARANTINE_STREAM) == ("qa:gaps", "qa:quarantine")


def test_market_data_stream_with_bad_exchange_raises() -> None:
    with pytest.raises(ValueError, match="invalid exchange id"):
        market_data_stream("Binance", DataType.TRADES)
    with pytest.raises(ValueError, match="not a valid DataType"):
        market_data_stream("binance", "ticks")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("md:binance", "not a market-data stream name"),
        ("md:binance:trades:extra", "not a market-data stream name"),
        ("px:binance:trades", "not a market-data stream name"),
        ("qa:gaps", "not a market-data stream name"),
        ("md:binance:ticks", "unknown data type 'ticks'"),
        ("md:Binance:trades", "invalid exchange id"),
        (b"md:\xff:trades", "invalid exchange id"),
    ],
)
def test_parse_market_data_stream_rejects_other_names(name: str | bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_market_data_stream(name)


def test_latest_price_key_round_trips() -> None:
    key = latest_price_key("okx", "BTC-USDT-PERP")
    assert key == "px:okx:BTC-USDT-PERP"
    assert parse_latest_price_key(key) == ("okx", "BTC-USDT-PERP")
    assert parse_latest_price_key(key.encode()) == ("okx", "BTC-USDT-PERP")


@pytest.mark.parametrize(("exchange", "symbol"), [("OKX", "BTC-USDT"), ("okx", "BTCUSDT"), ("okx", "btc-usdt")])
def test_latest_price_key_with_bad_exchange_or_symbol_raises(exchange: str, symbol: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        latest_price_key(exchange, symbol)


@pytest.mark.parametrize("key", ["px:okx", "md:okx:BTC-USDT", "px:okx:BTCUSDT", "px:okx:BTC-USDT:x"])
def test_parse_latest_price_key_rejects_other_names(key: str) -> None:
    with pytest.raises(ValueError, match=r"latest-price key|invalid symbol"):
        parse_latest_price_key(key)


def test_dead_letter_stream_is_per_group() -> None:
    assert dead_letter_stream("writer") == "dlq:writer"
    assert dead_letter_stream("validator") == "dlq:validator"
    with pytest.raises(ValueError, match="unknown consumer group"):
        dead_letter_stream("tierer")


@pytest.mark.parametrize(
    ("event", "stream"),
    [
        (_samples.trade(), "md:binance:trades"),
        (_samples.candle(), "md:binance-usdm:candles"),
        (_samples.quote(), "md:coinbase:quotes"),
        (_samples.book(), "md:kraken:books"),
        (_samples.funding(), "md:bybit:funding"),
        (_samples.gap(), "qa:gaps"),
        (_samples.quarantine(), "qa:quarantine"),
    ],
)
def test_stream_for_routes_each_event(event: Event, stream: str) -> None:
    assert stream_for(event) == stream


def test_xadd_args_names_the_stream_and_refuses_mixed_batches() -> None:
    name, fields = xadd_args([_samples.trade(), _samples.trade(trade_id="2")], traceparent=TRACEPARENT)
    assert name == "md:binance:trades"
    assert decode_entry(cast("dict[bytes, bytes]", fields)).traceparent == TRACEPARENT
    with pytest.raises(ValueError, match="mixes streams"):
        xadd_args([_samples.trade(), _samples.trade(exchange="okx")])
    with pytest.raises(ValueError, match="at least one event"):
        xadd_args([])


# ---- dead letters and the latest-price cache --------------------------------------------------------------


def test_dead_letter_round_trips_arbitrary_original_fields() -> None:
    original = {b"v": b"1", b"d": b"\xc1garbage", b"\x00odd": b""}
    fields = encode_dead_letter(
        source_stream="md:binance:trades", entry_id=b"1717000000000-3", reason="bad_events", delivery_count=5,
        fields=original,
    )  # fmt: skip
    letter = decode_dead_letter(fields)
    assert (letter.source_stream, letter.entry_id, letter.reason, letter.delivery_count) == (
        "md:binance:trades", "1717000000000-3", "bad_events", 5,
    )  # fmt: skip
    assert letter.fields == original


@pytest.mark.parametrize(
    "fields", [{}, {b"src": b"x"}, {b"src": b"x", b"id": b"1", b"why": b"", b"n": b"x", b"raw": b""}]
)
def test_malformed_dead_letter_raises_entry_decode_error(fields: dict[bytes, bytes]) -> None:
    with pytest.raises(EntryDecodeError, match="bad_dead_letter"):
        decode_dead_letter(fields)


def test_latest_price_round_trips_compactly() -> None:
    value = LatestPrice.from_trade(_samples.trade())
    raw = encode_latest_price(value)
    assert len(raw) < 50
    decoded = decode_latest_price(raw)
    assert decoded == value
    assert str(decoded.price) == "64123.45000000"
    assert decode_latest_price(encode_latest_price(LatestPrice(Decimal("1"), None, 1, 2))).size is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        b"64123.45",
        b"\x95\x01\xa1\x80\xc0\x01\x02",  # invalid UTF-8 where the price string should be
        msgspec.msgpack.encode([2, "1", None, 1, 2]),  # a future format
        msgspec.msgpack.encode([1, "NaN", None, 1, 2]),
        None,
    ],
)
def test_malformed_latest_price_raises_cache_value_decode_error(raw: bytes) -> None:
    with pytest.raises(CacheValueDecodeError):
        decode_latest_price(raw)


def test_latest_price_refuses_non_finite_values() -> None:
    with pytest.raises(ValueError, match="finite"):
        LatestPrice(Decimal("NaN"), None, 1, 2)
    with pytest.raises(ValueError, match="ts_event_ns"):
        LatestPrice(Decimal(1), None, -1, 2)


def test_a_version_1_entry_still_decodes() -> None:
    # Version 2 only added gap kinds: what a version-1 collector wrote stays readable through an upgrade.
    fields = encode_entry([_samples.trade()])
    fields[FIELD_VERSION] = b"1"
    assert decode_entry(fields).schema_version == 1


def test_the_current_version_is_4_and_older_ones_still_decode() -> None:
    assert SCHEMA_VERSION == 4
    assert sorted(SUPPORTED_SCHEMA_VERSIONS) == [1, 2, 3, 4]
    assert encode_entry([_samples.trade()])[FIELD_VERSION] == b"4"
    # Version 4 only added the instrument spec: what a version-3 collector wrote reads the same.
    fields = encode_entry([_samples.trade(), _samples.gap()])
    fields[FIELD_VERSION] = b"3"
    assert decode_entry(fields).events == (_samples.trade(), _samples.gap())


def test_an_instrument_spec_round_trips_with_its_precision_as_written() -> None:
    spec = _samples.instrument(tick_size=Decimal("0.010"), lot_size=Decimal("1E-8"))
    (decoded,) = decode_entry(encode_entry([spec])).events
    assert decoded == spec
    assert isinstance(decoded, InstrumentSpec)
    assert (str(decoded.tick_size), str(decoded.lot_size)) == ("0.010", "1E-8")


@pytest.mark.parametrize("version", [b"1", b"2"])
def test_a_closed_gap_of_version_2_or_older_decodes_half_open(version: bytes) -> None:
    # Versions 1 and 2 wrote [start, end] closed; version 3 reads every window as [start, end): the same events
    # must stay inside, so the end moves one nanosecond on. The bytes of a gap are otherwise unchanged.
    closed = ["g", "binance", "trades", "BTC-USDT", "trade_id", 1_000, 1_000, "ids 5..7 missing", 9]
    trade = _samples.trade()
    entry = decode_entry(_entry([closed, trade], version=version))
    gap, decoded_trade = entry.events
    assert isinstance(gap, Gap)
    assert (gap.start_ns, gap.end_ns, gap.kind, gap.cause) == (1_000, 1_001, GapKind.TRADE_ID, "ids 5..7 missing")
    assert decoded_trade == trade
    # The same bytes under version 3 mean [1000, 1000): empty, so refused as a bad entry.
    with pytest.raises(EntryDecodeError, match="empty or inverted"):
        decode_entry(_entry([closed], version=b"3"))


def test_a_version_3_gap_round_trips_unchanged() -> None:
    gap = _samples.gap(start_ns=5, end_ns=6)
    assert decode_entry(encode_entry([gap])).events == (gap,)


@pytest.mark.parametrize(
    ("start_ns", "end_ns"),
    [(10, 9), (0, 2**63 - 1)],  # inverted; or an end that has no half-open successor in int64
)
def test_a_closed_gap_that_cannot_be_converted_is_a_bad_entry(start_ns: int, end_ns: int) -> None:
    closed = ["g", "binance", "trades", None, "disconnect", start_ns, end_ns, "x", 1]
    with pytest.raises(EntryDecodeError) as excinfo:
        decode_entry(_entry([closed], version=b"2"))
    assert excinfo.value.reason == "bad_events"
