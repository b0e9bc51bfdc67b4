"""Result tables in the contract's Arrow schemas, cut into self-contained IPC streams. Pure: no I/O.

The schemas are fixed by `market_data_service.proto`'s file comment: dictionary-encoded exchange and symbol,
timestamp[ns, UTC] for every time, numeric columns typed by the request's `NumericEncoding` with one decimal
scale per column for the whole response stream (computed here over the whole result, before the first batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np
import pyarrow as pa

from tickstrata.query.numeric import encode_column, exact_scale

TIMESTAMP: Final = pa.timestamp("ns", tz="UTC")
CANDLE_NUMERIC: Final = ("open", "high", "low", "close", "volume", "quote_volume")
TRADE_NUMERIC: Final = ("price", "size")


def _dictionary(value: str, rows: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value], pa.string()))


def _small_dictionary(values: pa.Array) -> pa.DictionaryArray:
    encoded = values.dictionary_encode()
    return pa.DictionaryArray.from_arrays(encoded.indices.cast(pa.int8()), encoded.dictionary)


def _numeric(table: pa.Table, names: tuple[str, ...], encoding: int) -> dict[str, pa.Array]:
    columns = {}
    for name in names:
        values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        columns[name] = encode_column(values, encoding, exact_scale(values))
    return columns


def candle_table(exchange: str, symbol: str, candles: pa.Table, encoding: int) -> pa.Table:
    """Candles (the resampler's schema) → the contract's candle schema."""
    rows = candles.num_rows
    numeric = _numeric(candles, CANDLE_NUMERIC, encoding)
    return pa.table(
        {
            "exchange": _dictionary(exchange, rows),
            "symbol": _dictionary(symbol, rows),
            "open_time_ns": candles.column("open_time_ns").cast(TIMESTAMP),
            **numeric,
            "trade_count": candles.column("trade_count"),
            "closed": candles.column("closed"),
            "source": _small_dictionary(candles.column("source").combine_chunks()),
        }
    )


def trade_table(exchange: str, symbol: str, trades: pa.Table, encoding: int) -> pa.Table:
    """Trades as read (ts_event_ns, ts_recv_ns int64, trade_id, price, size, side) → the contract's schema."""
    rows = trades.num_rows
    numeric = _numeric(trades, TRADE_NUMERIC, encoding)
    return pa.table(
        {
            "exchange": _dictionary(exchange, rows),
            "symbol": _dictionary(symbol, rows),
            "ts_event_ns": trades.column("ts_event_ns").cast(TIMESTAMP),
            "ts_recv_ns": trades.column("ts_recv_ns").cast(TIMESTAMP),
            "trade_id": trades.column("trade_id"),
            **numeric,
            "side": _small_dictionary(trades.column("side").combine_chunks()),
        }
    )


def ipc_streams(table: pa.Table, max_rows: int) -> Iterator[tuple[bytes, int]]:
    """Slices of at most `max_rows` rows, each one complete IPC stream (schema, batch, end marker)."""
    if table.num_rows == 0:
        yield _ipc(table), 0
        return
    for offset in range(0, table.num_rows, max_rows):
        part = table.slice(offset, max_rows)
        yield _ipc(part), part.num_rows


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
