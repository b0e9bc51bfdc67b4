"""The warm tier as the tierer writes it: the bench's trades and candles through `common.warm_schema`'s own tables.

The variants in `bench_tier_compression` isolate one choice each; this one measures the production layout as a
whole: the DDL the tierer runs (`WarmTable.create_sql`), rows built by the function the tierer calls
(`common.warm_rows.to_warm`, scales from each symbol's tick and step), the hot tier's columns included (string trade
ids, `backfilled`, a candle's `closed`, `source`, event and receive times). Read back through `from_warm`, every
price and size must equal the hot tier's double, or the bench stops.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bench._tier_data import E8, SYMBOLS, Dataset

from tickstrata.common.questdb_schema import Scale
from tickstrata.common.scaled import scale_of_increment
from tickstrata.common.warm_rows import from_warm, to_warm
from tickstrata.common.warm_schema import WARM_TABLES_BY_NAME

DATABASE: Final = "bench_production"
NS: Final = pa.timestamp("ns", tz="UTC")


def _doubles(dataset: Dataset, name: str) -> pa.Array:
    return pa.array(dataset.ingested[f"{name}_e8"].to_numpy() / E8, pa.float64())


def _scales(dataset: Dataset) -> dict[Scale, Any]:
    """Per row: the decimals of its symbol's tick (prices) and step (sizes), as the instruments table gives them."""
    by_symbol = {spec.symbol: spec for spec in SYMBOLS}
    symbols = dataset.ingested["symbol"].to_pylist()
    price = {s: scale_of_increment(Decimal(spec.tick)) for s, spec in by_symbol.items()}
    size = {s: scale_of_increment(Decimal(spec.step)) for s, spec in by_symbol.items()}
    return {
        Scale.PRICE: np.array([price[s] for s in symbols], np.uint8),
        Scale.SIZE: np.array([size[s] for s in symbols], np.uint8),
    }


def hot_trades(dataset: Dataset) -> pa.Table:
    rows = dataset.rows
    return pa.table(
        {
            "ts": dataset.ingested["ts"].cast(NS),
            "exchange": dataset.ingested["exchange"],
            "symbol": dataset.ingested["symbol"],
            "trade_id": pc.cast(dataset.ingested["trade_id"], pa.string()),
            "price": _doubles(dataset, "price"),
            "size": _doubles(dataset, "size"),
            "side": dataset.ingested["side"],
            "ts_recv_ns": dataset.ingested["ts_recv_ns"],
            "backfilled": pa.array(np.zeros(rows, np.bool_)),
        }
    )


def hot_candles(dataset: Dataset) -> pa.Table:
    ts_ns = dataset.ingested["ts"].to_numpy()
    closes_ns = ts_ns + 59_999_000_000  # a kline's close time, as the venue stamps it
    return pa.table(
        {
            "ts": dataset.ingested["ts"].cast(NS),
            "exchange": dataset.ingested["exchange"],
            "symbol": dataset.ingested["symbol"],
            "interval_secs": dataset.ingested["interval_secs"],
            **{name: _doubles(dataset, name) for name in ("open", "high", "low", "close", "volume", "quote_volume")},
            "trade_count": pc.cast(dataset.ingested["trade_count"], pa.int64()),
            "closed": pa.array(np.ones(dataset.rows, np.bool_)),
            "source": pa.array(["ws"] * dataset.rows),
            "ts_event_ns": pa.array(closes_ns, pa.int64()),
            "ts_recv_ns": pa.array(closes_ns + 1_800_000, pa.int64()),  # ~2 ms later, as received
        }
    )


def measure(session: Any, stage_dir: Path, datasets: Sequence[Dataset]) -> tuple[dict[str, float], float, int]:
    """(bytes per row by dataset, seconds to write, values not read back exactly)."""
    session.query(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    bytes_per_row: dict[str, float] = {}
    write_secs = 0.0
    inexact = 0
    for dataset, hot in ((datasets[0], hot_trades(datasets[0])), (datasets[1], hot_candles(datasets[1]))):
        table = WARM_TABLES_BY_NAME[dataset.name]
        session.query(table.create_sql(DATABASE))
        started = time.perf_counter()
        warm = to_warm(table, hot, _scales(dataset))
        stage = stage_dir / f"production-{dataset.name}.parquet"
        pq.write_table(warm, stage, compression="none")
        names = ", ".join(warm.column_names)
        insert = f"INSERT INTO {DATABASE}.{table.name} ({names}) SELECT {names} FROM file('{stage}', Parquet)"  # noqa: S608 - our names
        session.query(insert)
        session.query(f"OPTIMIZE TABLE {DATABASE}.{table.name} FINAL")
        write_secs += time.perf_counter() - started
        where = f"database = '{DATABASE}' AND table = '{table.name}' AND active"
        total = session.query(f"SELECT sum(data_compressed_bytes) FROM system.parts WHERE {where}", "CSV")  # noqa: S608
        bytes_per_row[dataset.name] = int(str(total).strip()) / dataset.rows
        columns = ", ".join(column.name for column in table.columns)
        order = ", ".join(table.order_by)
        back = session.query(f"SELECT {columns} FROM {DATABASE}.{table.name} ORDER BY {order}", "ArrowTable")  # noqa: S608
        expected = hot.sort_by([(key, "ascending") for key in table.order_by])
        restored = from_warm(table, back)
        for column in table.spec.columns:
            if column.scale is not None:
                got = restored.column(column.name).to_numpy()
                want = expected.column(column.name).to_numpy()
                inexact += int(np.count_nonzero(got != want))
    return bytes_per_row, write_secs, inexact
