"""The writer's entry rules: may this stream entry be stored? Pure: no I/O, no clock (the caller passes ``now_ns``).

A stream is writable by anyone with Redis access, so the writer does not trust its producers: before an entry's
rows are written, every event must belong to the entry's stream (its exchange and its data type), carry plausible
times (from ``EARLIEST_MARKET_EVENT_NS`` to now plus a tolerance, so no row lands in a 1970 or 2262 partition),
and obey the domain rules the collector applies at its parse boundary: positive prices, sizes and volumes >= 0,
uncrossed quotes and books, candle OHLC invariants, magnitudes within ``tickstrata.common.bounds``. An entry that
breaks one is dead-lettered with the reason ``entry_violation`` returns (``<code>: <detail>``, the code one of
``Rule``); its neighbours are stored.

What the rules do not repeat: types (msgspec decoded them), exchange-id and symbol syntax, non-empty trade ids,
positive intervals, integers in [0, 2**63) and prices finite as doubles are checked column by column by
``tickstrata.writer.frames``.

Cost, chosen for the writer's 200k rows/s: the rules run on the wire events the writer decodes anyway (prices as
text). Each data type has one fast loop whose test is a single boolean expression per event, with numbers read
as doubles (``float(text)``, about half the cost of a ``Decimal`` and its checks). The fast test is *sufficient*,
never decisive: the double bounds carry a margin wider than any rounding, a size passes as zero only in the codec's
spellings of zero, and a comparison between two numbers passes only when it holds strictly as doubles (correctly
rounded parsing is monotonic, so it holds for the decimals too) or the two texts are equal. Whatever the fast test
does not pass (a value at a bound, equal open and high written differently, a real violation) is judged exactly
by ``event_violation`` with ``Decimal`` arithmetic and the shared bounds, which also names the failed rule, the
event's index and the field. So the result is always the exact judge's, and only suspects pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from tickstrata.common.bounds import MAX_ABS_FLOAT, MIN_ABS_FLOAT, ZERO, decimal_in_range
from tickstrata.common.events import MAX_DECIMALS, DataType
from tickstrata.common.streams import MAX_EVENTS_PER_ENTRY, MarketDataStream, market_data_stream
from tickstrata.writer.wire import WireBook, WireCandle, WireEvent, WireFunding, WireInstrument, WireQuote, WireTrade

# The earliest plausible crypto market event: the Bitcoin genesis block's day, 2009-01-03T00:00:00Z. No venue
# publishes listing times the writer could know (the collector checks those it is told), so this one floor serves
# every venue; it is far above the 1973 seconds-for-milliseconds floor of ``bounds.MIN_PLAUSIBLE_NS``.
EARLIEST_MARKET_EVENT_NS: Final = 1_230_940_800 * 1_000_000_000


class Rule(StrEnum):
    """The rule an entry broke: the stable code its dead-letter reason starts with (metrics count by it)."""

    ENTRY_TOO_LARGE = "entry_too_large"
    WRONG_DATA_TYPE = "wrong_data_type"
    WRONG_EXCHANGE = "wrong_exchange"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_SIZE = "negative_size"
    CROSSED_QUOTE = "crossed_quote"
    CANDLE_INVARIANT = "candle_invariant"


WIRE_TYPE_OF_DATA_TYPE: Final[Mapping[DataType, type[WireEvent]]] = {
    DataType.TRADES: WireTrade,
    DataType.CANDLES: WireCandle,
    DataType.QUOTES: WireQuote,
    DataType.BOOKS: WireBook,
    DataType.FUNDING: WireFunding,
    DataType.INSTRUMENTS: WireInstrument,
}
_DATA_TYPE_OF_WIRE_TYPE: Final = {wire_type: data_type for data_type, wire_type in WIRE_TYPE_OF_DATA_TYPE.items()}

# The fast test's double bounds: the shared ones narrowed by 2**-50 relative, more than the three roundings involved
# (the bound literal, the product, float(text): 2**-53 each), so a double inside them proves the decimal inside the
# Decimal bounds [1e-20, 1e20). A double of 0.0 proves nothing ("1e-400" reads as 0.0 and is out of range).
_LOW: Final = MIN_ABS_FLOAT * (1 + 2**-50)
_HIGH: Final = MAX_ABS_FLOAT * (1 - 2**-50)
_FLOOR: Final = EARLIEST_MARKET_EVENT_NS
# Zero as the codec writes it at every precision a venue uses ("0", "0.00", "0E-8"): an empty candle's volume or
# a quote side's size is zero often enough that the fast test takes these texts without asking the exact judge.
_ZEROS: Final = frozenset(str(Decimal((0, (0,), exponent))) for exponent in range(-30, 31))
_SHOWN_CHARS: Final = 40  # of a refused value in a reason: a reason must stay a short line


def entry_violation(
    stream: MarketDataStream,
    events: Sequence[WireEvent],
    *,
    now_ns: int,
    future_tolerance_ns: int,
    entry_bytes: int,
    max_entry_bytes: int,
) -> str | None:
    """None when the entry (``events`` decoded from ``entry_bytes`` bytes read from ``stream``) may be stored;
    otherwise why not, as ``"<Rule>: <detail>"`` naming the first bad event's index and field."""
    if entry_bytes > max_entry_bytes:
        return size_violation(entry_bytes, max_entry_bytes)
    if len(events) > MAX_EVENTS_PER_ENTRY:
        return f"{Rule.ENTRY_TOO_LARGE}: {len(events)} events, at most {MAX_EVENTS_PER_ENTRY}"
    latest_ns = now_ns + future_tolerance_ns
    fast = _FAST_TESTS[stream.data_type]
    start = 0
    while (suspect := fast(events, start, stream.exchange, latest_ns)) >= 0:
        reason = event_violation(
            stream, suspect, events[suspect], now_ns=now_ns, future_tolerance_ns=future_tolerance_ns
        )
        if reason is not None:
            return reason
        start = suspect + 1  # a false alarm (a value a double cannot place, say): back to the fast loop
    return None


def size_violation(entry_bytes: int, max_entry_bytes: int) -> str | None:
    """The size rule alone, for a caller that refuses an oversized entry before it spends time decoding it."""
    if entry_bytes > max_entry_bytes:
        return f"{Rule.ENTRY_TOO_LARGE}: {entry_bytes} bytes, at most {max_entry_bytes}"
    return None


# ---- the fast tests: the index of the first event they do not pass, or -1 ----------------------------------------
# One boolean expression per event; `float(text)` raises ValueError for text that is no number, which makes the
# event a suspect. Comparisons with NaN are false, and infinities fail the bounds, so neither passes.


def _trades_fast(events: Sequence[WireEvent], start: int, exchange: str, latest_ns: int) -> int:
    index = start
    try:
        for index in range(start, len(events)):
            event = events[index]
            if not (
                type(event) is WireTrade
                and event.exchange == exchange
                and _FLOOR <= event.ts_event_ns <= latest_ns
                and _FLOOR <= event.ts_recv_ns <= latest_ns
                and _LOW <= float(event.price) < _HIGH
                and (_LOW <= float(event.size) < _HIGH or event.size in _ZEROS)
            ):
                return index
    except ValueError:
        return index
    return -1


def _quotes_fast(events: Sequence[WireEvent], start: int, exchange: str, latest_ns: int) -> int:
    index = start
    try:
        for index in range(start, len(events)):
            event = events[index]
            if not (
                type(event) is WireQuote
                and event.exchange == exchange
                and _FLOOR <= event.ts_event_ns <= latest_ns
                and _FLOOR <= event.ts_recv_ns <= latest_ns
                and _LOW <= float(event.bid_price) < float(event.ask_price) < _HIGH
                and (_LOW <= float(event.bid_size) < _HIGH or event.bid_size in _ZEROS)
                and (_LOW <= float(event.ask_size) < _HIGH or event.ask_size in _ZEROS)
            ):
                return index
    except ValueError:
        return index
    return -1


def _candles_fast(events: Sequence[WireEvent], start: int, exchange: str, latest_ns: int) -> int:
    index = start
    try:
        for index in range(start, len(events)):
            event = events[index]
            if not (
                type(event) is WireCandle
                and event.exchange == exchange
                and _FLOOR <= event.open_time_ns <= latest_ns
                and _FLOOR <= event.ts_event_ns <= latest_ns
                and _FLOOR <= event.ts_recv_ns <= latest_ns
                and _candle_fast(event)
            ):
                return index
    except ValueError:
        return index
    return -1


def _candle_fast(candle: WireCandle) -> bool:
    open_, high, low, close = float(candle.open), float(candle.high), float(candle.low), float(candle.close)
    quote_volume = candle.quote_volume
    # low <= open, close <= high, each as strict doubles or equal texts; then low and high bound all four.
    return (
        low >= _LOW
        and high < _HIGH
        and (low < open_ or candle.low == candle.open)
        and (low < close or candle.low == candle.close)
        and (open_ < high or candle.open == candle.high)
        and (close < high or candle.close == candle.high)
        and (_LOW <= float(candle.volume) < _HIGH or candle.volume in _ZEROS)
        and (quote_volume is None or _LOW <= float(quote_volume) < _HIGH or quote_volume in _ZEROS)
    )


def _books_fast(events: Sequence[WireEvent], start: int, exchange: str, latest_ns: int) -> int:
    index = start
    try:
        for index in range(start, len(events)):
            event = events[index]
            if not (
                type(event) is WireBook
                and event.exchange == exchange
                and _FLOOR <= event.ts_event_ns <= latest_ns
                and _FLOOR <= event.ts_recv_ns <= latest_ns
                and _book_fast(event)
            ):
                return index
    except ValueError:
        return index
    return -1


def _book_fast(book: WireBook) -> bool:
    # Levels come best first: bids strictly falling, asks strictly rising from above the best bid. A book in
    # another order is only a suspect: the exact judge compares the highest bid with the lowest ask.
    bound = _HIGH
    for price_text, size_text in book.bids:
        price = float(price_text)
        if not (_LOW <= price < bound and (_LOW <= float(size_text) < _HIGH or size_text in _ZEROS)):
            return False
        bound = price
    bound = float(book.bids[0][0]) if book.bids else 0.0
    for price_text, size_text in book.asks:
        price = float(price_text)
        if not (bound < price < _HIGH and price >= _LOW and (_LOW <= float(size_text) < _HIGH or size_text in _ZEROS)):
            return False
        bound = price
    return True


def _funding_fast(events: Sequence[WireEvent], start: int, exchange: str, latest_ns: int) -> int:
    index = start
    try:
        for index in range(start, len(events)):
            event = events[index]
            if not (
                type(event) is WireFunding
                and event.exchange == exchange
                and _FLOOR <= event.ts_event_ns <= latest_ns
                and _FLOOR <= event.ts_recv_ns <= latest_ns
                and event.next_funding_time_ns >= _FLOOR  # a schedule: in the future by design
                and (_LOW <= abs(float(event.rate)) < _HIGH or event.rate in _ZEROS)  # signed: rates go negative
                and (event.mark_price is None or _LOW <= float(event.mark_price) < _HIGH)
                and (event.index_price is None or _LOW <= float(event.index_price) < _HIGH)
            ):
                return index
    except ValueError:
        return index
    return -1


def _instruments_fast(events: Sequence[WireEvent], start: int, exchange: str, latest_ns: int) -> int:
    # A few events per collector start: no need for speed, but the same shape as the others.
    index = start
    try:
        for index in range(start, len(events)):
            event = events[index]
            if not (
                type(event) is WireInstrument
                and event.exchange == exchange
                and _FLOOR <= event.ts_event_ns <= latest_ns
                and _FLOOR <= event.ts_recv_ns <= latest_ns
                and 0 <= event.price_decimals <= MAX_DECIMALS
                and 0 <= event.size_decimals <= MAX_DECIMALS
                and _LOW <= float(event.tick_size) < _HIGH
                and _LOW <= float(event.lot_size) < _HIGH
            ):
                return index
    except ValueError:
        return index
    return -1


_FastTest = Callable[[Sequence[WireEvent], int, str, int], int]
_FAST_TESTS: Final[Mapping[DataType, _FastTest]] = {
    DataType.TRADES: _trades_fast,
    DataType.CANDLES: _candles_fast,
    DataType.QUOTES: _quotes_fast,
    DataType.BOOKS: _books_fast,
    DataType.FUNDING: _funding_fast,
    DataType.INSTRUMENTS: _instruments_fast,
}


# ---- the exact judge ----------------------------------------------------------------------------------------------


class _RuleBrokenError(Exception):
    """Raised inside the exact judge to leave it with a reason; never escapes this module."""


def event_violation(
    stream: MarketDataStream, index: int, event: WireEvent, *, now_ns: int, future_tolerance_ns: int
) -> str | None:
    """The exact judgement of one event (the ``index``-th of its entry): None, or ``"<Rule>: <detail>"``.

    Slow (``Decimal`` arithmetic); ``entry_violation`` calls it only for events its fast test did not pass.
    """
    where = f"event {index}"
    expected = WIRE_TYPE_OF_DATA_TYPE[stream.data_type]
    if type(event) is not expected:
        found = _DATA_TYPE_OF_WIRE_TYPE.get(type(event), type(event).__name__)
        return f"{Rule.WRONG_DATA_TYPE}: {where} is a {found} event on {_stream_name(stream)}"
    if event.exchange != stream.exchange:
        return f"{Rule.WRONG_EXCHANGE}: {where} exchange {_show(event.exchange)} on {_stream_name(stream)}"
    try:
        _check_times(where, event, now_ns, future_tolerance_ns)
        _check_numbers(where, event)
    except _RuleBrokenError as refusal:
        return str(refusal)
    return None


def _check_times(where: str, event: WireEvent, now_ns: int, future_tolerance_ns: int) -> None:
    times: list[tuple[str, int]] = []
    if type(event) is WireCandle:
        times.append(("open_time_ns", event.open_time_ns))  # the candles table's designated timestamp
    times += [("ts_event_ns", event.ts_event_ns), ("ts_recv_ns", event.ts_recv_ns)]
    for name, value_ns in times:
        if value_ns < _FLOOR:
            raise _RuleBrokenError(
                f"{Rule.TIMESTAMP_OUT_OF_RANGE}: {where} {name} {value_ns} ({_iso(value_ns)}) is before "
                f"{_iso(_FLOOR)}, the earliest plausible market event"
            )
        if value_ns > now_ns + future_tolerance_ns:
            raise _RuleBrokenError(
                f"{Rule.TIMESTAMP_OUT_OF_RANGE}: {where} {name} {value_ns} ({_iso(value_ns)}) is "
                f"{(value_ns - now_ns) / 1e9:.3f} s after now, tolerance {future_tolerance_ns / 1e9:.3f} s"
            )
    if type(event) is WireFunding and event.next_funding_time_ns < _FLOOR:
        raise _RuleBrokenError(
            f"{Rule.TIMESTAMP_OUT_OF_RANGE}: {where} next_funding_time_ns {event.next_funding_time_ns} "
            f"({_iso(event.next_funding_time_ns)}) is before {_iso(_FLOOR)}, the earliest plausible market event"
        )


def _check_numbers(where: str, event: WireEvent) -> None:
    if type(event) is WireTrade:
        _price(where, "price", event.price)
        _size(where, "size", event.size)
    elif type(event) is WireQuote:
        bid = _price(where, "bid_price", event.bid_price)
        ask = _price(where, "ask_price", event.ask_price)
        _size(where, "bid_size", event.bid_size)
        _size(where, "ask_size", event.ask_size)
        if bid >= ask:
            raise _RuleBrokenError(
                f"{Rule.CROSSED_QUOTE}: {where} bid_price {_show(event.bid_price)} >= "
                f"ask_price {_show(event.ask_price)}"
            )
    elif type(event) is WireCandle:
        _check_candle(where, event)
    elif type(event) is WireBook:
        _check_book(where, event)
    elif type(event) is WireFunding:
        _number(where, "rate", event.rate)  # signed: funding rates go negative
        if event.mark_price is not None:
            _price(where, "mark_price", event.mark_price)
        if event.index_price is not None:
            _price(where, "index_price", event.index_price)
    elif type(event) is WireInstrument:
        _price(where, "tick_size", event.tick_size)  # an increment: positive, like a price
        _price(where, "lot_size", event.lot_size)
        for name, decimals in (("price_decimals", event.price_decimals), ("size_decimals", event.size_decimals)):
            if not 0 <= decimals <= MAX_DECIMALS:
                raise _RuleBrokenError(
                    f"{Rule.NUMBER_OUT_OF_RANGE}: {where} {name} {decimals} is not in [0, {MAX_DECIMALS}]"
                )


def _check_candle(where: str, candle: WireCandle) -> None:
    open_ = _price(where, "open", candle.open)
    high = _price(where, "high", candle.high)
    low = _price(where, "low", candle.low)
    close = _price(where, "close", candle.close)
    _size(where, "volume", candle.volume)
    if candle.quote_volume is not None:
        _size(where, "quote_volume", candle.quote_volume)
    if not (low <= open_ <= high and low <= close <= high):
        raise _RuleBrokenError(
            f"{Rule.CANDLE_INVARIANT}: {where} open {_show(candle.open)} high {_show(candle.high)} "
            f"low {_show(candle.low)} close {_show(candle.close)} (needs low <= open, close <= high)"
        )


def _check_book(where: str, book: WireBook) -> None:
    best_bid: tuple[Decimal, int] | None = None
    for level, (price_text, size_text) in enumerate(book.bids):
        price = _price(where, f"bids[{level}] price", price_text)
        _size(where, f"bids[{level}] size", size_text)
        if best_bid is None or price > best_bid[0]:
            best_bid = price, level
    best_ask: tuple[Decimal, int] | None = None
    for level, (price_text, size_text) in enumerate(book.asks):
        price = _price(where, f"asks[{level}] price", price_text)
        _size(where, f"asks[{level}] size", size_text)
        if best_ask is None or price < best_ask[0]:
            best_ask = price, level
    if best_bid is not None and best_ask is not None and best_bid[0] >= best_ask[0]:
        raise _RuleBrokenError(
            f"{Rule.CROSSED_QUOTE}: {where} bids[{best_bid[1]}] price {_show(book.bids[best_bid[1]][0])} >= "
            f"asks[{best_ask[1]}] price {_show(book.asks[best_ask[1]][0])}"
        )


def _number(where: str, name: str, text: str) -> Decimal:
    """The text as a finite Decimal within the shared bounds (zero included)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _RuleBrokenError(
            f"{Rule.NUMBER_OUT_OF_RANGE}: {where} {name} {_show(text)} is not a decimal number"
        ) from None
    if not decimal_in_range(value):
        raise _RuleBrokenError(
            f"{Rule.NUMBER_OUT_OF_RANGE}: {where} {name} {_show(text)} is not zero or within "
            f"[{MIN_ABS_FLOAT:g}, {MAX_ABS_FLOAT:g}) in magnitude"
        )
    return value


def _price(where: str, name: str, text: str) -> Decimal:
    value = _number(where, name, text)
    if value <= ZERO:
        raise _RuleBrokenError(f"{Rule.NON_POSITIVE_PRICE}: {where} {name} is {_show(text)}")
    return value


def _size(where: str, name: str, text: str) -> Decimal:
    value = _number(where, name, text)
    if value < ZERO:
        raise _RuleBrokenError(f"{Rule.NEGATIVE_SIZE}: {where} {name} is {_show(text)}")
    return value


def _stream_name(stream: MarketDataStream) -> str:
    return market_data_stream(stream.exchange, stream.data_type)


def _show(text: str) -> str:
    return repr(text) if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]!r}... ({len(text)} chars)"


def _iso(value_ns: int) -> str:
    try:
        return datetime.fromtimestamp(value_ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "beyond the calendar"
