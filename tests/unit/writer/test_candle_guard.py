"""A closed candle is never regressed to an open version by a re-delivery; open updates before it still land."""

from __future__ import annotations

import msgspec
import pytest

from tests.unit.common import _samples
from tickstrata.common.streams import encode_entry
from tickstrata.writer.candle_guard import ClosedCandles
from tickstrata.writer.frames import build_batch
from tickstrata.writer.wire import WireCandle, decode_wire_entry


def _candle(minute: int, *, closed: bool, close: str = "64001.0") -> WireCandle:
    [event] = decode_wire_entry(encode_entry([_samples.candle()]))
    assert isinstance(event, WireCandle)
    return msgspec.structs.replace(
        event, open_time_ns=event.open_time_ns + minute * 60_000_000_000, closed=closed, close=close
    )


def test_open_versions_of_a_minute_already_written_closed_are_dropped() -> None:
    guard = ClosedCandles()
    assert guard.keep(_candle(0, closed=False))  # the open minute's updates land
    assert guard.keep(_candle(0, closed=True))
    assert not guard.keep(_candle(0, closed=False, close="1.0"))  # a stale re-delivery
    assert guard.keep(_candle(1, closed=False))  # another minute
    assert guard.keep(_candle(0, closed=True, close="64001.5"))  # a revision of a closed candle is newer
    assert guard.dropped == 1


def test_other_events_always_pass() -> None:
    [trade] = decode_wire_entry(encode_entry([_samples.trade()]))
    assert ClosedCandles().keep(trade)


def test_the_memory_is_bounded_oldest_first() -> None:
    guard = ClosedCandles(capacity=2)
    for minute in range(3):
        guard.keep(_candle(minute, closed=True))
    assert guard.keep(_candle(0, closed=False))  # forgotten: the oldest went first
    assert not guard.keep(_candle(2, closed=False))
    with pytest.raises(ValueError, match="capacity"):
        ClosedCandles(capacity=0)


def test_a_batch_replaying_open_versions_after_the_closed_one_writes_only_the_closed_row() -> None:
    guard = ClosedCandles()
    closed = encode_entry([_samples.candle(closed=True)])
    stale_open = encode_entry([_samples.candle(closed=False)])
    entries = [(fields, decode_wire_entry(fields)) for fields in (closed, stale_open)]
    batch = build_batch(entries, guard.keep)
    [frame] = batch.frames
    assert frame.frame["closed"].tolist() == [True]
    assert batch.rejected == {}
