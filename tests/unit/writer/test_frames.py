"""Wire events → one checked DataFrame per table: exact values, NULLs, nanoseconds, books, poison isolation."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest

from tests.unit.common import _samples
from tickstrata.common.events import BookLevel, Event
from tickstrata.common.streams import encode_entry
from tickstrata.writer.frames import ColumnCheckError, TableFrame, build_batch, build_frames, rows_by_table
from tickstrata.writer.wire import WireEvent, decode_wire_entry


def wire(*events: Event) -> tuple[WireEvent, ...]:
    return decode_wire_entry(encode_entry(list(events)))


def only_frame(*events: Event) -> pd.DataFrame:
    [table] = build_frames([wire(*events)])
    return table.frame


def raw_trade(price: object = "64000.5", **overrides: object) -> list[object]:
    """A trade as it travels, built by hand so that it can hold what no valid ``Trade`` holds."""
    fields: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "trade_id": "1",
        "price": price,
        "size": "0.5",
        "side": "buy",
        "ts_event_ns": _samples.TS_EVENT_NS,
        "ts_recv_ns": _samples.TS_RECV_NS,
    }
    fields.update(overrides)
    return ["t", *fields.values()]


def raw_entry(*events: list[object]) -> dict[bytes, bytes]:
    return {b"v": b"1", b"d": msgspec.msgpack.encode(list(events))}


def test_trade_row_is_exact() -> None:
    trade = _samples.trade()
    frame = only_frame(trade)
    [row] = frame.to_dict("records")
    assert row["trade_id"] == "3400123456"
    assert row["price"] == float(trade.price) == 64123.45
    assert Decimal(repr(row["price"])) == trade.price  # the DOUBLE round trip is exact at the venue's precision
    assert row["size"] == float(trade.size)
    assert (row["exchange"], row["symbol"], row["side"]) == ("binance", "BTC-USDT", "buy")
    assert row["ts_recv_ns"] == trade.ts_recv_ns
    assert not row["backfilled"]
    assert frame["backfilled"].dtype == np.bool_


def test_designated_timestamp_keeps_every_nanosecond() -> None:
    odd_ns = 1_717_000_000_123_456_789
    frame = only_frame(_samples.trade(ts_event_ns=odd_ns), _samples.trade(trade_id="2", ts_event_ns=odd_ns + 1))
    assert frame["ts"].dtype == np.dtype("datetime64[ns]")
    assert frame["ts"].to_numpy().view(np.int64).tolist() == [odd_ns, odd_ns + 1]


def test_symbol_columns_are_categoricals_of_plain_strings() -> None:
    trades = [_samples.trade(trade_id=str(i), symbol=("BTC-USDT", "ETH-USDT")[i % 2]) for i in range(4)]
    [table] = build_frames([wire(*trades)])
    assert table.symbols == ("exchange", "symbol", "side")
    for name in table.symbols:
        assert isinstance(table.frame[name].dtype, pd.CategoricalDtype)
        assert all(type(category) is str for category in table.frame[name].cat.categories)
    assert table.frame["symbol"].tolist() == ["BTC-USDT", "ETH-USDT", "BTC-USDT", "ETH-USDT"]


def test_missing_optional_values_are_nulls_not_zeros() -> None:
    full, bare = (
        _samples.candle(),
        _samples.candle(open_time_ns=_samples.TS_EVENT_NS, quote_volume=None, trade_count=None),
    )
    frame = only_frame(full, bare)
    assert frame["quote_volume"].isna().tolist() == [False, True]
    assert frame["trade_count"].isna().tolist() == [False, True]
    assert frame["quote_volume"].iloc[0] == float(full.quote_volume or 0)
    assert frame["trade_count"].iloc[0] == full.trade_count
    assert frame["interval_secs"].tolist() == [60, 60]
    assert frame["source"].tolist() == ["ws", "ws"]

    funding = only_frame(_samples.funding(mark_price=None, index_price=Decimal("64110.1")))
    assert funding["mark_price"].isna().tolist() == [True]
    assert funding["index_price"].tolist() == [64110.1]


def test_book_sides_become_price_and_size_rows() -> None:
    book = _samples.book(
        bids=(BookLevel(Decimal("64000.0"), Decimal("1.2")), BookLevel(Decimal("63999.9"), Decimal("0.5"))),
        asks=(),
        sequence=123456789,
    )
    [row] = only_frame(book).to_dict("records")
    np.testing.assert_array_equal(row["bids"], [[64000.0, 63999.9], [1.2, 0.5]])
    assert row["bids"].dtype == np.float64
    assert row["asks"].shape == (2, 0)
    assert row["sequence"] == 123456789


def test_tables_come_in_a_stable_order_and_events_keep_theirs() -> None:
    trades = [_samples.trade(trade_id=str(i)) for i in range(3)]
    frames = build_frames([wire(_samples.funding()), wire(*trades[:2]), wire(_samples.book()), wire(trades[2])])
    assert [(table.table, len(table)) for table in frames] == [("trades", 3), ("books", 1), ("funding", 1)]
    assert frames[0].frame["trade_id"].tolist() == ["0", "1", "2"]


def test_an_entry_mixing_types_is_split_by_table() -> None:
    mixed = wire(_samples.trade(), _samples.quote(), _samples.trade(trade_id="2"))
    assert rows_by_table(mixed) == {"trades": 2, "quotes": 1}
    assert [(table.table, len(table)) for table in build_frames([mixed])] == [("trades", 2), ("quotes", 1)]


def _bad_trade(**overrides: object) -> tuple[WireEvent, ...]:
    return decode_wire_entry(raw_entry(raw_trade(**overrides)))


@pytest.mark.parametrize(
    ("overrides", "column"),
    [
        ({"price": "NaN"}, "trades.price"),
        ({"price": "-Infinity"}, "trades.price"),
        ({"price": "1E+400"}, "trades.price"),
        ({"price": "abc"}, "trades.price"),
        ({"size": "sNaN"}, "trades.size"),
        ({"symbol": "btc-usdt"}, "trades.symbol"),
        ({"exchange": "Binance"}, "trades.exchange"),
        ({"trade_id": ""}, "trades.trade_id"),
        ({"ts_event_ns": -1}, "trades.ts"),
        ({"ts_recv_ns": 2**63}, "trades.ts_recv_ns"),
    ],
)
def test_values_the_canonical_decoder_refuses_fail_the_check(overrides: dict[str, object], column: str) -> None:
    with pytest.raises(ColumnCheckError, match=re.escape(column)):
        build_frames([_bad_trade(**overrides)])


def test_candle_and_book_checks() -> None:
    with pytest.raises(ColumnCheckError, match=re.escape("candles.interval_secs")):
        build_frames([wire(_samples.candle(interval_secs=2**31))])
    bad_book = msgspec.structs.replace(wire(_samples.book())[0], bids=(("NaN", "1"),))
    with pytest.raises(ColumnCheckError, match=re.escape("books.bids")):
        build_frames([(bad_book,)])
    negative_count = msgspec.structs.replace(wire(_samples.candle())[0], trade_count=-1)
    with pytest.raises(ColumnCheckError, match=re.escape("candles.trade_count")):
        build_frames([(negative_count,)])


def _batch(entries: Sequence[dict[bytes, bytes]]) -> Any:
    return build_batch([(fields, decode_wire_entry(fields)) for fields in entries])


def test_a_batch_stores_good_entries_and_rejects_each_poison_entry_alone_with_its_reason() -> None:
    entries = [
        raw_entry(raw_trade(trade_id="1")),
        raw_entry(raw_trade(trade_id="2", price="NaN")),  # the canonical decoder refuses it: dead letter
        raw_entry(raw_trade(trade_id="3", price="1E+400")),  # a valid Decimal, but not a double
        raw_entry(raw_trade(trade_id="4", price=" 1_000.5 ")),  # odd but valid: read in canonical form
        raw_entry(raw_trade(trade_id="5")),
    ]
    batch = _batch(entries)
    assert set(batch.rejected) == {1, 2}
    assert batch.rejected[1].startswith("bad_events: ")
    assert batch.rejected[2].startswith("unstorable_value: trades.price")
    [trades] = batch.frames
    assert isinstance(trades, TableFrame)
    assert trades.frame["trade_id"].tolist() == ["1", "4", "5"]
    assert trades.frame["price"].tolist() == [64000.5, 1000.5, 64000.5]


def test_a_clean_batch_rejects_nothing() -> None:
    batch = _batch([encode_entry([_samples.trade()]), encode_entry([_samples.candle()])])
    assert batch.rejected == {}
    assert [table.table for table in batch.frames] == ["trades", "candles"]
