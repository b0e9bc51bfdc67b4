"""The writer's entry rules: every rule refuses its hand-made bad event of every data type, valid events pass, and the
fast test never passes what the exact judge refuses."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any, Final

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.common import _samples
from tickstrata.common.events import BookLevel, DataType, Event, data_type_of
from tickstrata.common.streams import MAX_EVENTS_PER_ENTRY, MarketDataStream, encode_entry, parse_market_data_stream
from tickstrata.writer import entry_rules
from tickstrata.writer.entry_rules import (
    EARLIEST_MARKET_EVENT_NS,
    WIRE_TYPE_OF_DATA_TYPE,
    Rule,
    entry_violation,
    event_violation,
    size_violation,
)
from tickstrata.writer.wire import (
    WireBook,
    WireCandle,
    WireEvent,
    WireFunding,
    WireInstrument,
    WireQuote,
    WireTrade,
    decode_wire_entry,
)

NOW_NS: Final = _samples.TS_RECV_NS + 60_000_000_000  # after every sample's times (the candle opens 20 s later)
TOLERANCE_NS: Final = 5_000_000_000
LATEST_NS: Final = NOW_NS + TOLERANCE_NS
EXAMPLES: Final = int(os.environ.get("TICKSTRATA_FUZZ_EXAMPLES", "200"))
PROPERTY: Final = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLES: Final[dict[DataType, Event]] = {
    DataType.TRADES: _samples.trade(),
    DataType.CANDLES: _samples.candle(),
    DataType.QUOTES: _samples.quote(),
    DataType.BOOKS: _samples.book(),
    DataType.FUNDING: _samples.funding(),
    DataType.INSTRUMENTS: _samples.instrument(),
}


def stream_of(event: Event | WireEvent, data_type: DataType | None = None) -> MarketDataStream:
    """The stream the event belongs on (or, given ``data_type``, the one of that type on its exchange)."""
    if data_type is None:
        [data_type] = [kind for kind, wire_type in WIRE_TYPE_OF_DATA_TYPE.items() if type(event) is wire_type] or [
            data_type_of(event)  # type: ignore[arg-type]  # an Event: gaps and quarantines are never drawn here
        ]
    return MarketDataStream(event.exchange, data_type)


def wire(*events: Event) -> tuple[WireEvent, ...]:
    """As the writer reads them: encoded by the producers' codec, decoded by the writer's."""
    return decode_wire_entry(encode_entry(list(events)))


def sample_wire(data_type: DataType, **changes: Any) -> WireEvent:
    [event] = wire(SAMPLES[data_type])
    return msgspec.structs.replace(event, **changes)


def violation(
    stream: MarketDataStream, *events: WireEvent, entry_bytes: int = 200, max_entry_bytes: int = 1 << 20
) -> str | None:
    return entry_violation(
        stream,
        events,
        now_ns=NOW_NS,
        future_tolerance_ns=TOLERANCE_NS,
        entry_bytes=entry_bytes,
        max_entry_bytes=max_entry_bytes,
    )


def refused(data_type: DataType, rule: Rule, **changes: Any) -> str:
    event = sample_wire(data_type, **changes)
    reason = violation(stream_of(SAMPLES[data_type]), event)
    assert reason is not None, f"{data_type} with {changes} was accepted"
    assert reason.startswith(f"{rule}: event 0 "), reason
    return reason


def accepted(data_type: DataType, **changes: Any) -> None:
    event = sample_wire(data_type, **changes)
    assert violation(stream_of(SAMPLES[data_type]), event) is None


ALL_TYPES: Final = list(DataType)


@pytest.mark.parametrize("data_type", ALL_TYPES)
def test_every_sample_may_be_stored(data_type: DataType) -> None:
    accepted(data_type)


# ---- the event belongs to its stream -------------------------------------------------------------------------------


@pytest.mark.parametrize("data_type", ALL_TYPES)
def test_an_event_of_another_exchange_is_refused(data_type: DataType) -> None:
    reason = refused(data_type, Rule.WRONG_EXCHANGE, exchange="okx")
    assert "exchange 'okx'" in reason
    assert f"md:{SAMPLES[data_type].exchange}:{data_type}" in reason


def test_a_kraken_trade_on_the_binance_trades_stream_is_refused() -> None:
    [kraken_trade] = wire(_samples.trade(exchange="kraken"))
    reason = violation(parse_market_data_stream("md:binance:trades"), kraken_trade)
    assert reason == "wrong_exchange: event 0 exchange 'kraken' on md:binance:trades"


@pytest.mark.parametrize("stream_type", ALL_TYPES)
@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_an_event_of_another_data_type_is_refused(stream_type: DataType, event_type: DataType) -> None:
    event = sample_wire(event_type)
    reason = violation(MarketDataStream(event.exchange, stream_type), event)
    if event_type is stream_type:
        assert reason is None
    else:
        assert reason == f"wrong_data_type: event 0 is a {event_type} event on md:{event.exchange}:{stream_type}"


def test_the_first_bad_event_is_named_even_after_a_false_alarm() -> None:
    good = sample_wire(DataType.TRADES)
    # Below 1e20 as a decimal but 1e20 as a double: not passed by the fast test, accepted by the exact judge.
    false_alarm = sample_wire(DataType.TRADES, size="99999999999999999999.5")
    candle = sample_wire(DataType.CANDLES, exchange="binance")
    stream = parse_market_data_stream("md:binance:trades")
    assert violation(stream, good, false_alarm, good) is None
    reason = violation(stream, good, false_alarm, good, candle, sample_wire(DataType.TRADES, price="-1"))
    assert reason == "wrong_data_type: event 3 is a candles event on md:binance:trades"


# ---- times ---------------------------------------------------------------------------------------------------------

TIME_FIELDS: Final = [(data_type, name) for data_type in ALL_TYPES for name in ("ts_event_ns", "ts_recv_ns")] + [
    (DataType.CANDLES, "open_time_ns")
]


@pytest.mark.parametrize(("data_type", "field"), TIME_FIELDS)
@pytest.mark.parametrize("value_ns", [0, 1_000_000_000, EARLIEST_MARKET_EVENT_NS - 1, LATEST_NS + 1, 2**63 - 1])
def test_a_time_outside_earliest_to_now_plus_tolerance_is_refused(
    data_type: DataType, field: str, value_ns: int
) -> None:
    reason = refused(data_type, Rule.TIMESTAMP_OUT_OF_RANGE, **{field: value_ns})
    assert f"{field} {value_ns}" in reason


@pytest.mark.parametrize(("data_type", "field"), TIME_FIELDS)
@pytest.mark.parametrize("value_ns", [EARLIEST_MARKET_EVENT_NS, LATEST_NS])
def test_times_at_the_bounds_are_accepted(data_type: DataType, field: str, value_ns: int) -> None:
    accepted(data_type, **{field: value_ns})


def test_reasons_for_times_say_how_far_off_they_are() -> None:
    assert refused(DataType.TRADES, Rule.TIMESTAMP_OUT_OF_RANGE, ts_event_ns=0) == (
        "timestamp_out_of_range: event 0 ts_event_ns 0 (1970-01-01T00:00:00Z) is before 2009-01-03T00:00:00Z, "
        "the earliest plausible market event"
    )
    reason = refused(DataType.QUOTES, Rule.TIMESTAMP_OUT_OF_RANGE, ts_recv_ns=NOW_NS + 3_600_000_000_000)
    assert reason.endswith("is 3600.000 s after now, tolerance 5.000 s")
    assert "beyond the calendar" in refused(DataType.TRADES, Rule.TIMESTAMP_OUT_OF_RANGE, ts_event_ns=2**70)


def test_the_next_funding_time_may_lie_in_the_future_but_not_before_the_earliest_event() -> None:
    accepted(DataType.FUNDING, next_funding_time_ns=LATEST_NS + 8 * 3_600_000_000_000)
    reason = refused(DataType.FUNDING, Rule.TIMESTAMP_OUT_OF_RANGE, next_funding_time_ns=0)
    assert "next_funding_time_ns 0" in reason


# ---- numbers -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["price_decimals", "size_decimals"])
@pytest.mark.parametrize("decimals", [-1, 19, 2**40])
def test_an_instrument_precision_beyond_0_to_18_decimals_is_refused(field: str, decimals: int) -> None:
    # The wire mirror takes any int: a hostile producer's precision would scale every stored price wrongly.
    reason = refused(DataType.INSTRUMENTS, Rule.NUMBER_OUT_OF_RANGE, **{field: decimals})
    assert reason.endswith(f"{field} {decimals} is not in [0, 18]")


@pytest.mark.parametrize("field", ["tick_size", "lot_size"])
@pytest.mark.parametrize("text", ["0", "-0.01"])
def test_an_instrument_increment_that_is_not_positive_is_refused(field: str, text: str) -> None:
    assert refused(DataType.INSTRUMENTS, Rule.NON_POSITIVE_PRICE, **{field: text}).endswith(f"{field} is {text!r}")


PRICE_FIELDS: Final = [
    (DataType.TRADES, "price"),
    (DataType.QUOTES, "bid_price"),
    (DataType.QUOTES, "ask_price"),
    (DataType.CANDLES, "open"),
    (DataType.CANDLES, "high"),
    (DataType.CANDLES, "low"),
    (DataType.CANDLES, "close"),
    (DataType.FUNDING, "mark_price"),
    (DataType.FUNDING, "index_price"),
]
SIZE_FIELDS: Final = [
    (DataType.TRADES, "size"),
    (DataType.QUOTES, "bid_size"),
    (DataType.QUOTES, "ask_size"),
    (DataType.CANDLES, "volume"),
    (DataType.CANDLES, "quote_volume"),
]


@pytest.mark.parametrize(("data_type", "field"), PRICE_FIELDS)
@pytest.mark.parametrize("text", ["0", "-0", "0E-8", "-64000.5", "-1E-20"])
def test_a_price_that_is_not_positive_is_refused(data_type: DataType, field: str, text: str) -> None:
    assert refused(data_type, Rule.NON_POSITIVE_PRICE, **{field: text}).endswith(f"{field} is {text!r}")


@pytest.mark.parametrize(("data_type", "field"), SIZE_FIELDS)
def test_a_negative_size_is_refused_and_zero_is_accepted(data_type: DataType, field: str) -> None:
    assert refused(data_type, Rule.NEGATIVE_SIZE, **{field: "-0.5"}).endswith(f"{field} is '-0.5'")
    accepted(data_type, **{field: "0"})
    accepted(data_type, **{field: "0E-8"})


@pytest.mark.parametrize(("data_type", "field"), [*PRICE_FIELDS, *SIZE_FIELDS, (DataType.FUNDING, "rate")])
@pytest.mark.parametrize(
    "text",
    [
        *("1e999999999", "NaN", "-Infinity", "1E+20", "1e-21", "-1E+30", "1e-400", "64k", "", "0x10"),
        "9.9999999999999999999E-21",  # reads as the double of 1e-20
    ],
)
def test_a_number_beyond_the_shared_bounds_or_no_number_is_refused(data_type: DataType, field: str, text: str) -> None:
    assert f"{field} {text!r}" in refused(data_type, Rule.NUMBER_OUT_OF_RANGE, **{field: text})


def test_a_long_value_is_cut_short_in_the_reason() -> None:
    reason = refused(DataType.TRADES, Rule.NUMBER_OUT_OF_RANGE, price="9" * 10_000)
    assert len(reason) < 200
    assert "(10000 chars)" in reason


@pytest.mark.parametrize("text", ["-0.00075", "0", "0.00010000", "-1E-20", "9.99E+19"])
def test_a_funding_rate_may_be_negative_or_zero(text: str) -> None:
    accepted(DataType.FUNDING, rate=text)


def test_optional_values_may_be_absent() -> None:
    accepted(DataType.FUNDING, mark_price=None, index_price=None)
    accepted(DataType.CANDLES, quote_volume=None, trade_count=None)


def test_numbers_at_the_shared_bounds_are_accepted() -> None:
    accepted(DataType.TRADES, price="1E-20", size="99999999999999999999")
    accepted(DataType.TRADES, price="9.9999999999999999999999E+19", size="1.0E-20")
    accepted(DataType.TRADES, price="99999999999999999999.5", size="1.0000000000000000001E-20")  # doubles: 1e20, 1e-20


# ---- cross-field rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask"), [("3456.79", "3456.79"), ("3456.80", "3456.79"), ("1.0000000000000000001", "1")]
)
def test_a_crossed_or_locked_quote_is_refused(bid: str, ask: str) -> None:
    reason = refused(DataType.QUOTES, Rule.CROSSED_QUOTE, bid_price=bid, ask_price=ask)
    assert reason == f"crossed_quote: event 0 bid_price {bid!r} >= ask_price {ask!r}"


def test_a_quote_apart_by_less_than_a_double_resolves_is_accepted() -> None:
    accepted(DataType.QUOTES, bid_price="1", ask_price="1.0000000000000000001")


def _levels(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(pairs)


@pytest.mark.parametrize(
    ("bids", "asks", "named"),
    [
        (_levels(("64000.1", "1")), _levels(("64000.1", "1")), "bids[0] price '64000.1' >= asks[0] price '64000.1'"),
        (_levels(("64000.2", "1")), _levels(("64000.1", "1")), "bids[0] price '64000.2' >= asks[0] price '64000.1'"),
        # Out of order: the best bid hides on the second level, the best ask on the third.
        (
            _levels(("63990", "1"), ("64010", "1")),
            _levels(("64030", "1"), ("64020", "1"), ("64005", "1")),
            "bids[1] price '64010' >= asks[2] price '64005'",
        ),
    ],
)
def test_a_crossed_book_is_refused(bids: Any, asks: Any, named: str) -> None:
    assert refused(DataType.BOOKS, Rule.CROSSED_QUOTE, bids=bids, asks=asks).endswith(named)


@pytest.mark.parametrize(
    ("bids", "asks"),
    [
        ((), ()),
        (_levels(("64000", "1")), ()),
        ((), _levels(("64000", "1"))),
        (_levels(("63990", "1"), ("64000", "0")), _levels(("64020", "1"), ("64010", "1"))),  # out of order, uncrossed
        (_levels(("64000", "1"), ("64000.0", "2")), _levels(("64000.5", "1"))),  # one price twice
    ],
)
def test_an_uncrossed_book_is_accepted_whatever_its_order_or_empty_sides(bids: Any, asks: Any) -> None:
    accepted(DataType.BOOKS, bids=bids, asks=asks)


@pytest.mark.parametrize(("side", "level"), [("bids", 0), ("bids", 1), ("asks", 0)])
def test_book_levels_obey_the_price_and_size_rules(side: str, level: int) -> None:
    book = SAMPLES[DataType.BOOKS]
    levels = [(str(entry.price), str(entry.size)) for entry in getattr(book, side)]
    price, size = levels[level]
    for bad, rule in [((price, "-1"), Rule.NEGATIVE_SIZE), (("0", size), Rule.NON_POSITIVE_PRICE)]:
        changed = tuple(bad if index == level else pair for index, pair in enumerate(levels))
        assert f"{side}[{level}] " in refused(DataType.BOOKS, rule, **{side: changed})
    changed = tuple(("NaN", size) if index == level else pair for index, pair in enumerate(levels))
    assert f"{side}[{level}] price 'NaN'" in refused(DataType.BOOKS, Rule.NUMBER_OUT_OF_RANGE, **{side: changed})


@pytest.mark.parametrize(
    ("open_", "high", "low", "close"),
    [
        ("100", "110", "101", "105"),  # low above open
        ("100", "110", "95", "94"),  # close below low
        ("111", "110", "95", "105"),  # open above high
        ("100", "110", "95", "110.5"),  # close above high
        # Each relation broken by less than a double resolves, alone:
        ("100", "110", "100.0000000000000000001", "105"),
        ("101", "110", "100.0000000000000000001", "100"),
        ("110.0000000000000000001", "110", "95", "105"),
        ("100", "110", "95", "110.0000000000000000001"),
    ],
)
def test_a_candle_breaking_low_le_open_close_le_high_is_refused(open_: str, high: str, low: str, close: str) -> None:
    reason = refused(DataType.CANDLES, Rule.CANDLE_INVARIANT, open=open_, high=high, low=low, close=close)
    assert f"open {open_!r} high {high!r} low {low!r} close {close!r}" in reason


@pytest.mark.parametrize(
    ("open_", "high", "low", "close"),
    [("100", "100", "100", "100"), ("100.0", "100.00", "100", "100.000"), ("100", "105", "95", "95.0")],
)
def test_a_flat_candle_or_one_spelled_differently_is_accepted(open_: str, high: str, low: str, close: str) -> None:
    accepted(DataType.CANDLES, open=open_, high=high, low=low, close=close)


# ---- entry size ----------------------------------------------------------------------------------------------------


def test_an_entry_over_the_byte_limit_is_refused_before_its_events_are_read() -> None:
    stream = parse_market_data_stream("md:binance:trades")
    good = sample_wire(DataType.TRADES)
    assert violation(stream, good, entry_bytes=1000, max_entry_bytes=1000) is None
    assert violation(stream, good, entry_bytes=1001, max_entry_bytes=1000) == (
        "entry_too_large: 1001 bytes, at most 1000"
    )
    assert size_violation(1000, 1000) is None
    assert size_violation(1001, 1000) == "entry_too_large: 1001 bytes, at most 1000"


def test_an_entry_over_the_event_limit_is_refused() -> None:
    stream = parse_market_data_stream("md:binance:trades")
    good = sample_wire(DataType.TRADES)
    assert violation(stream, *[good] * MAX_EVENTS_PER_ENTRY) is None
    assert violation(stream, *[good] * (MAX_EVENTS_PER_ENTRY + 1)) == (
        f"entry_too_large: {MAX_EVENTS_PER_ENTRY + 1} events, at most {MAX_EVENTS_PER_ENTRY}"
    )


# ---- properties ----------------------------------------------------------------------------------------------------

TIMES = st.integers(EARLIEST_MARKET_EVENT_NS, LATEST_NS)
# Up to 15 significant digits (what a double keeps) from 1E-20 to just below 1E+20; built, not drawn by
# st.decimals, which is several times slower at these magnitudes.
PRICES = st.builds(
    lambda digits, exponent: Decimal(digits).scaleb(exponent), st.integers(1, 10**15 - 1), st.integers(-20, 5)
)
SIZES = PRICES | st.sampled_from([Decimal(0), Decimal("0E-8"), Decimal("0.00000000")])
RATES = st.decimals(min_value=Decimal("-1"), max_value=Decimal("1"), places=8)


@st.composite
def valid_events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(ALL_TYPES))
    times = {"ts_event_ns": draw(TIMES), "ts_recv_ns": draw(TIMES)}
    if kind is DataType.TRADES:
        return _samples.trade(price=draw(PRICES), size=draw(SIZES), **times)
    if kind is DataType.QUOTES:
        bid, ask = sorted(draw(st.lists(PRICES, min_size=2, max_size=2, unique_by=float)))
        return _samples.quote(bid_price=bid, ask_price=ask, bid_size=draw(SIZES), ask_size=draw(SIZES), **times)
    if kind is DataType.CANDLES:
        low, first, second, high = sorted(draw(st.lists(PRICES, min_size=4, max_size=4)))
        open_, close = draw(st.permutations([first, second]))
        return _samples.candle(
            open=open_, high=high, low=low, close=close, volume=draw(SIZES), open_time_ns=draw(TIMES), **times
        )
    if kind is DataType.BOOKS:
        prices = sorted(draw(st.lists(PRICES, max_size=12, unique_by=float)))
        split = draw(st.integers(0, len(prices)))
        bids = tuple(BookLevel(price, draw(SIZES)) for price in reversed(prices[:split]))
        asks = tuple(BookLevel(price, draw(SIZES)) for price in prices[split:])
        return _samples.book(bids=bids, asks=asks, **times)
    return _samples.funding(rate=draw(RATES), mark_price=draw(st.none() | PRICES), **times)


@PROPERTY
@given(events=st.lists(valid_events(), min_size=1, max_size=4))
def test_valid_events_read_from_an_entry_may_be_stored(events: list[Event]) -> None:
    for event in events:  # one stream per event: a stream holds one data type of one exchange
        assert violation(stream_of(event), *wire(event)) is None


@pytest.mark.parametrize(
    ("data_type", "changes"),
    [(data_type, {}) for data_type in ALL_TYPES]
    + [
        (DataType.TRADES, {"size": "0"}),
        (DataType.QUOTES, {"bid_size": "0E-8", "ask_size": "0.00"}),
        (DataType.CANDLES, {"volume": "0E-8", "quote_volume": "0", "open": "64150.00", "close": "64090.00"}),
        (DataType.BOOKS, {"bids": (("64000.0", "0"),), "asks": ()}),
        (DataType.FUNDING, {"rate": "0E-8", "mark_price": None}),
    ],
)
def test_samples_and_zero_sizes_pass_the_fast_test_without_the_exact_judge(
    data_type: DataType, changes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def judge(*_: object, **__: object) -> str | None:
        raise AssertionError("the exact judge was asked about an ordinary event")

    monkeypatch.setattr(entry_rules, "event_violation", judge)
    events = [sample_wire(data_type, **changes)] * 100
    assert violation(stream_of(SAMPLES[data_type]), *events) is None


# Texts the fast test could misjudge. NEAR: numbers a double cannot tell apart (candles, quotes and books compare
# them). EDGE: each side of the bounds, zeros that underflow a double, spellings float() and Decimal() may read
# differently, and no number at all. KEEP leaves the sample's valid value, so one suspect field is often alone.
NEAR = st.sampled_from(["1", "1.0", "1.00", "1.0000000000000000001", "0.9999999999999999999", "2", "0.5"])
EDGE = (
    st.sampled_from(
        [
            *("0", "-0", "0E-8", "-1", "1E-20", "9.9999999999999999999E-21", "1.0000000000000000001E-20", "1E-400"),
            *("-1E-20", "5E-324", "1E+20", "9.9999999999999999999E+19", "99999999999999999999.5", "1e999999999"),
            *("NaN", "sNaN", "-Infinity", "", " 1", "1_0", "0x1p3", "\u0661", "+1", "1.", ".5", "e5"),
        ]
    )
    | st.decimals(allow_nan=True).map(str)
    | st.floats().map(repr)
    | st.text(max_size=6)
)
KEEP: Final = object()
EDGE_TIMES = st.sampled_from([0, EARLIEST_MARKET_EVENT_NS - 1, EARLIEST_MARKET_EVENT_NS, LATEST_NS, LATEST_NS + 1])
NUMBER_FIELDS: Final = {
    DataType.TRADES: ("price", "size"),
    DataType.QUOTES: ("bid_price", "ask_price", "bid_size", "ask_size"),
    DataType.CANDLES: ("volume", "quote_volume"),
    DataType.FUNDING: ("rate", "mark_price", "index_price"),
    DataType.BOOKS: (),
    DataType.INSTRUMENTS: ("tick_size", "lot_size"),
}
OPTIONAL_FIELDS: Final = {"quote_volume", "mark_price", "index_price"}


@st.composite
def suspicious_events(draw: st.DrawFn) -> WireEvent:
    kind = draw(st.sampled_from(ALL_TYPES))
    changes: dict[str, Any] = {}
    if draw(st.booleans()):
        time_fields = ["ts_event_ns", "ts_recv_ns"] + (["open_time_ns"] if kind is DataType.CANDLES else [])
        time_fields += ["next_funding_time_ns"] if kind is DataType.FUNDING else []
        changes[draw(st.sampled_from(time_fields))] = draw(EDGE_TIMES)
    for name in NUMBER_FIELDS[kind]:
        value = draw(st.just(KEEP) | NEAR | EDGE | (st.none() if name in OPTIONAL_FIELDS else st.nothing()))
        if value is not KEEP:
            changes[name] = value
    if kind is DataType.CANDLES:  # a valid candle, then one price nudged by less than a double resolves
        low, first, second, high = sorted(draw(st.lists(st.sampled_from([1, 2, 3]), min_size=4, max_size=4)))
        open_, close = draw(st.permutations([first, second]))
        ohlc = {"open": Decimal(open_), "high": Decimal(high), "low": Decimal(low), "close": Decimal(close)}
        ohlc[draw(st.sampled_from(list(ohlc)))] += draw(st.sampled_from([-1, 0, 1])) * Decimal("1E-19")
        changes |= {name: str(value) for name, value in ohlc.items()}
        if draw(st.booleans()):
            changes[draw(st.sampled_from(list(ohlc)))] = draw(EDGE)
    if kind is DataType.BOOKS:
        level = st.tuples(NEAR | EDGE, st.just("1") | EDGE)
        changes |= {side: tuple(draw(st.lists(level, max_size=3))) for side in ("bids", "asks")}
    return sample_wire(kind, **changes)


@settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=suspicious_events())
def test_the_fast_test_never_passes_what_the_exact_judge_refuses(event: WireEvent) -> None:
    stream = stream_of(event)
    exact = event_violation(stream, 0, event, now_ns=NOW_NS, future_tolerance_ns=TOLERANCE_NS)
    assert violation(stream, event) == exact


def test_wire_types_cover_every_data_type() -> None:
    kinds = {WireTrade: DataType.TRADES, WireCandle: DataType.CANDLES, WireQuote: DataType.QUOTES}
    kinds |= {WireBook: DataType.BOOKS, WireFunding: DataType.FUNDING, WireInstrument: DataType.INSTRUMENTS}
    assert {kind: wire_type for wire_type, kind in kinds.items()} == dict(WIRE_TYPE_OF_DATA_TYPE)
