"""Stream entries decoded into *wire events*: the writer's light, unvalidated mirrors of the market-data events.

Why not ``tickstrata.common.streams.decode_entry``: it builds a ``Decimal`` per price and runs each event's
``__post_init__`` checks, about 2.8 µs per trade, more than all the rest of the writer's per-row work together.
The writer needs prices only as text (they become doubles), so it decodes the same bytes into structs that keep
prices as ``str`` and check nothing beyond their types (about 0.5 µs per trade). What the canonical decoder would
refuse (a NaN price, an invalid symbol, a negative timestamp, ...) is then checked column by column over the whole
batch (``tickstrata.writer.frames``), and a batch that fails is sorted out entry by entry with the canonical
decoder, which stays the one judge of what is poison.

An entry this decoder cannot read (another schema version, an unknown tag such as a gap event, a value of another
type) goes through the canonical decoder too: it raises the classified error (``UnsupportedSchemaError`` → leave
pending, ``EntryDecodeError`` → dead letter), or yields valid events that are re-encoded by the same codec and read
again, so odd but valid spellings reach the columns in the codec's canonical text form.

The mirrors repeat the events' field names, order, tags and defaults (``tests/unit/writer/test_wire.py`` fails
when they drift); a field appended to an event later is ignored here until its mirror and column are added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, TypeAlias

import msgspec

from tickstrata.common.events import (
    BookSnapshot,
    Candle,
    CandleSource,
    Event,
    Funding,
    InstrumentSpec,
    Quote,
    Side,
    Trade,
)
from tickstrata.common.streams import (
    FIELD_EVENTS,
    FIELD_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    EntryDecodeError,
    EntryFields,
    decode_entry,
)


class _Wire(msgspec.Struct, frozen=True, array_like=True, gc=False):
    pass


class WireTrade(_Wire, frozen=True, tag="t"):
    exchange: str
    symbol: str
    trade_id: str
    price: str
    size: str
    side: Side
    ts_event_ns: int
    ts_recv_ns: int
    backfilled: bool = False


class WireCandle(_Wire, frozen=True, tag="c"):
    exchange: str
    symbol: str
    interval_secs: int
    open_time_ns: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    quote_volume: str | None
    trade_count: int | None
    closed: bool
    source: CandleSource
    ts_event_ns: int
    ts_recv_ns: int


class WireQuote(_Wire, frozen=True, tag="q"):
    exchange: str
    symbol: str
    bid_price: str
    bid_size: str
    ask_price: str
    ask_size: str
    ts_event_ns: int
    ts_recv_ns: int


class WireBook(_Wire, frozen=True, tag="b"):
    exchange: str
    symbol: str
    bids: tuple[tuple[str, str], ...]
    """(price, size) per level, best first, as ``BookLevel`` travels."""
    asks: tuple[tuple[str, str], ...]
    sequence: int | None
    ts_event_ns: int
    ts_recv_ns: int


class WireFunding(_Wire, frozen=True, tag="f"):
    exchange: str
    symbol: str
    rate: str
    mark_price: str | None
    index_price: str | None
    next_funding_time_ns: int
    ts_event_ns: int
    ts_recv_ns: int


class WireInstrument(_Wire, frozen=True, tag="i"):
    exchange: str
    symbol: str
    price_decimals: int
    size_decimals: int
    tick_size: str
    lot_size: str
    ts_event_ns: int
    ts_recv_ns: int


WireEvent: TypeAlias = WireTrade | WireCandle | WireQuote | WireBook | WireFunding | WireInstrument

# Each stored event type and its mirror.
WIRE_TYPES: Final[Mapping[type[Event], type[WireEvent]]] = {
    Trade: WireTrade,
    Candle: WireCandle,
    Quote: WireQuote,
    BookSnapshot: WireBook,
    Funding: WireFunding,
    InstrumentSpec: WireInstrument,
}
_STORED_EVENT_TYPES: Final = tuple(WIRE_TYPES)

# Every supported version has the same layout for the events the writer stores (version 2 only added gap kinds,
# version 3 only changed what a gap's end means, the writer stores no gaps; version 4 only added the instrument
# spec), so all take the fast path.
_FAST_VERSIONS: Final = frozenset(str(version).encode("ascii") for version in SUPPORTED_SCHEMA_VERSIONS)
_decoder: Final = msgspec.msgpack.Decoder(tuple[WireEvent, ...])
_encoder: Final = msgspec.msgpack.Encoder()


def decode_wire_entry(fields: EntryFields) -> tuple[WireEvent, ...]:
    """The entry's events as wire events; raise what ``decode_entry`` raises, or ``EntryDecodeError`` with reason
    ``unexpected_event_type`` for events the writer does not store (gap or quarantine events)."""
    if fields.get(FIELD_VERSION) in _FAST_VERSIONS:
        payload = fields.get(FIELD_EVENTS)
        if type(payload) is bytes:
            try:
                events = _decoder.decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError):
                pass  # the canonical decoder below says what is wrong, or reads what we could not
            else:
                if events:
                    return events
    return to_wire(decode_entry(fields).events)


def to_wire(events: Sequence[Event]) -> tuple[WireEvent, ...]:
    """Valid events as wire events, through the codec (so prices are in its canonical text form)."""
    if not all(isinstance(event, _STORED_EVENT_TYPES) for event in events):
        raise EntryDecodeError("unexpected_event_type", "gap or quarantine events on a market-data stream")
    return _decoder.decode(_encoder.encode(events))


def canonical_wire_entry(fields: EntryFields) -> tuple[WireEvent, ...]:
    """The entry through the canonical decoder only: every check the events make; raise what it raises."""
    return to_wire(decode_entry(fields).events)
