"""Wire events: the writer's light mirrors of the events, read from the same bytes as the canonical decoder."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from tests.unit.common import _samples
from tickstrata.common.events import BookLevel, Event
from tickstrata.common.streams import EntryDecodeError, UnsupportedSchemaError, encode_entry, xadd_args
from tickstrata.writer.wire import WIRE_TYPES, WireBook, WireTrade, decode_wire_entry, to_wire

STORED_SAMPLES = [_samples.trade(), _samples.candle(), _samples.quote(), _samples.book(), _samples.funding()]


@pytest.mark.parametrize("event_type", list(WIRE_TYPES))
def test_each_mirror_has_its_events_fields_order_tag_and_defaults(event_type: type[Any]) -> None:
    wire_type = WIRE_TYPES[event_type]
    assert wire_type.__struct_fields__ == event_type.__struct_fields__
    assert wire_type.__struct_config__.tag == event_type.__struct_config__.tag
    assert wire_type.__struct_config__.array_like
    assert wire_type.__struct_defaults__ == event_type.__struct_defaults__


def _as_wire_values(value: object) -> object:
    """What a field looks like on a wire event: Decimals as the codec's text, levels as (price, size) pairs."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BookLevel):
        return (str(value.price), str(value.size))
    if isinstance(value, tuple):
        return tuple(_as_wire_values(item) for item in value)
    return value


@pytest.mark.parametrize("event", STORED_SAMPLES, ids=lambda event: type(event).__name__)
def test_decoded_wire_event_carries_every_field_with_prices_as_the_codecs_text(event: Event) -> None:
    [wire] = decode_wire_entry(encode_entry([event]))
    assert type(wire) is WIRE_TYPES[type(event)]
    for name in event.__struct_fields__:
        assert getattr(wire, name) == _as_wire_values(getattr(event, name)), name


def test_trailing_zeros_survive_as_text() -> None:
    [wire] = decode_wire_entry(encode_entry([_samples.trade(price=Decimal("64123.45000000"))]))
    assert isinstance(wire, WireTrade)
    assert wire.price == "64123.45000000"


def test_book_levels_keep_their_order() -> None:
    [wire] = decode_wire_entry(encode_entry([_samples.book()]))
    assert isinstance(wire, WireBook)
    assert wire.bids == (("64000.0", "1.2"), ("63999.9", "0.5"))
    assert wire.asks == (("64000.1", "0.75"),)
    assert wire.sequence is None


def test_a_newer_schema_version_is_reported_as_such() -> None:
    fields = dict(encode_entry([_samples.trade()]))
    fields[b"v"] = b"5"  # 4 is the current version
    with pytest.raises(UnsupportedSchemaError):
        decode_wire_entry(fields)


@pytest.mark.parametrize("event", [_samples.gap(), _samples.quarantine()], ids=["gap", "quarantine"])
def test_events_the_writer_does_not_store_are_a_decode_error(event: Event) -> None:
    fields = xadd_args([event]).fields
    with pytest.raises(EntryDecodeError) as raised:
        decode_wire_entry(fields)  # type: ignore[arg-type]
    assert raised.value.reason == "unexpected_event_type"


def test_garbage_is_the_canonical_decoders_error() -> None:
    with pytest.raises(EntryDecodeError) as raised:
        decode_wire_entry({b"v": b"1", b"d": b"\xc1 not msgpack"})
    assert raised.value.reason == "bad_events"


def test_another_producers_valid_spelling_is_read_through_the_canonical_decoder() -> None:
    # A price as a msgpack integer is a valid Decimal for the canonical decoder but not a wire str.
    raw = ["t", "binance", "BTC-USDT", "7", 64000, "0.5", "buy", 10, 11]
    [wire] = decode_wire_entry({b"v": b"1", b"d": msgspec.msgpack.encode([raw])})
    assert isinstance(wire, WireTrade)
    assert (wire.price, wire.size) == ("64000", "0.5")


def test_to_wire_refuses_gap_events() -> None:
    with pytest.raises(EntryDecodeError):
        to_wire([_samples.trade(), _samples.gap()])
