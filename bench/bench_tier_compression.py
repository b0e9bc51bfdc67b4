"""Tier compression: bytes per stored trade and 1-minute candle, warm (chDB) and cold (Parquet), vs the venue's JSON.

What it answers: how many bytes one trade row and one closed 1-minute candle row cost in the warm tier (ClickHouse
MergeTree through the embedded chDB engine, after ``OPTIMIZE TABLE ... FINAL``) and in the cold tier (one Parquet
file per data type written by pyarrow), for several column encodings, against the raw Binance JSON that produced
them (ratio = raw JSON bytes / stored bytes). Goals: cold >= 30x and warm >= 25x for trades, warm >= 8x for candles.

Data, generated from a seed: Binance spot ``trade`` messages, one JSON text per trade exactly as the venue sends
them (prices and quantities as 8-decimal strings), for five symbols over a day (``--quick``: an hour): taker orders
arrive as a Poisson process whose rate wanders second by second, each fills one or more resting orders (same ``T``,
consecutive ids, walking the book), the mid price is a random walk on the symbol's tick and quantities sit on its
step size. Candles are the closed ``kline`` messages built from the same trades, one per symbol-minute. The stored
values are parsed back out of that JSON, as the collector does.

Variants per tier: float64 with the engine's default compression (the baseline), float64 with float codecs and
zstd, and prices/sizes as scaled int64 (value x 10^8: the venue's 8 decimals, exact) with integer codecs and zstd.
Every variant is read back and compared row by row with the venue's strings; a scaled-int variant that does not
give back every price and size exactly stops the bench. Run: ``python bench/bench_tier_compression.py [--quick]``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import chdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from chdb.session import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package when run as a script
from bench._tier_data import (
    CANDLE_VALUE_KEYS,
    QUANTUM,
    SCALE,
    SYMBOLS,
    Dataset,
    Numeric,
    build_datasets,
    venue_text,
)
from bench._tier_production import measure as measure_production

DECIMAL_SAMPLE_ROWS: Final = 10_000
GOALS: Final = (("cold", "trades", 30.0), ("warm", "trades", 25.0), ("warm", "candles", 8.0))


# ---- exactness --------------------------------------------------------------------------------------------------


def _as_decimal(value: float | int, numeric: Numeric) -> Decimal:
    exact = Decimal(value).scaleb(-SCALE) if numeric == "int64" else Decimal(value)
    return exact.quantize(QUANTUM)


def _formatting_misses(dataset: Dataset, numeric: Numeric) -> int:
    """Values as written (before any engine) that do not format back to the venue's 8-decimal string."""
    if numeric not in dataset.formatting_misses:  # the same for every variant of a kind: computed once
        stored = dataset.stored_table(numeric)
        to_text: Callable[[Any], str] = venue_text if numeric == "int64" else "{:.8f}".format
        dataset.formatting_misses[numeric] = sum(
            sum(
                to_text(value) != text
                for value, text in zip(
                    stored[name].to_pylist(), dataset.ingested[f"{name}_text"].to_pylist(), strict=True
                )
            )
            for name in dataset.value_columns
        )
    return dataset.formatting_misses[numeric]


def count_inexact(readback: pa.Table, dataset: Dataset, numeric: Numeric, seed: int) -> int:
    """Values that do not give back the venue's strings; any other column not read back identically stops the bench.

    Every row: each decimal read back must equal the number written, and every number written must format to the
    venue's string (8 decimals). A random sample is also checked the long way on what was read back:
    Decimal(stored) quantized to 8 decimals == Decimal(venue string).
    """
    stored = dataset.stored_table(numeric)
    inexact = _formatting_misses(dataset, numeric)
    for name in dataset.stored_columns:
        column = readback[name].cast(stored[name].type)
        if name in dataset.value_columns:
            inexact += int(np.count_nonzero(column.to_numpy() != stored[name].to_numpy()))
        elif not column.equals(stored[name]):
            raise SystemExit(f"{dataset.name}: column {name} did not read back identically")
    sample = random.Random(seed).sample(range(dataset.rows), min(dataset.rows, DECIMAL_SAMPLE_ROWS))
    for name in dataset.value_columns:
        values, texts = readback[name], dataset.ingested[f"{name}_text"]
        inexact += sum(_as_decimal(values[i].as_py(), numeric) != Decimal(texts[i].as_py()) for i in sample)
    return inexact


# ---- variants ---------------------------------------------------------------------------------------------------

ColumnDDL = dict[str, str]


@dataclass(frozen=True)
class WarmVariant:
    name: str
    numeric: Numeric
    trades: ColumnDDL
    candles: ColumnDDL


@dataclass(frozen=True)
class ColdVariant:
    name: str
    numeric: Numeric
    options: Callable[[Dataset], dict[str, Any]]  # keyword arguments of pyarrow.parquet.write_table


ZSTD: Final = "ZSTD(3)"
_DATETIME: Final = "DateTime64(9, 'UTC')"
_LOW_CARDINALITY: Final = "LowCardinality(String)"
_SIDE: Final = f"Enum8('buy' = 1, 'sell' = 2) CODEC({ZSTD})"  # 1 byte, then zstd takes it to ~1.3 bits


def _codec_ddl(
    decimal_type: str, *, ts: str, trade_id: str, price: str, size: str, ts_recv: str
) -> tuple[ColumnDDL, ColumnDDL]:
    """Trade and candle columns from one codec per kind of column; candle prices share the trade price codec."""
    trades = {
        "ts": f"{_DATETIME} CODEC({ts}, {ZSTD})",
        "exchange": _LOW_CARDINALITY,
        "symbol": _LOW_CARDINALITY,
        "trade_id": f"UInt64 CODEC({trade_id}, {ZSTD})",
        "price": f"{decimal_type} CODEC({price}, {ZSTD})",
        "size": f"{decimal_type} CODEC({size}, {ZSTD})",
        "side": _SIDE,
        "ts_recv_ns": f"Int64 CODEC({ts_recv}, {ZSTD})",
    }
    candles = {
        "ts": f"{_DATETIME} CODEC({ts}, {ZSTD})",
        "exchange": _LOW_CARDINALITY,
        "symbol": _LOW_CARDINALITY,
        "interval_secs": f"UInt32 CODEC({ZSTD})",
        **dict.fromkeys(("open", "high", "low", "close"), f"{decimal_type} CODEC({price}, {ZSTD})"),
        **dict.fromkeys(("volume", "quote_volume"), f"{decimal_type} CODEC({size}, {ZSTD})"),
        "trade_count": f"UInt32 CODEC(T64, {ZSTD})",
    }
    return trades, candles


def warm_variants() -> list[WarmVariant]:
    baseline_trades = {
        "ts": _DATETIME,
        "exchange": "String",
        "symbol": "String",
        "trade_id": "UInt64",
        "price": "Float64",
        "size": "Float64",
        "side": "String",
        "ts_recv_ns": "Int64",
    }
    baseline_candles = {
        "ts": _DATETIME,
        "exchange": "String",
        "symbol": "String",
        "interval_secs": "UInt32",
        **dict.fromkeys(CANDLE_VALUE_KEYS, "Float64"),
        "trade_count": "UInt32",
    }
    # b and c share every non-decimal codec, so b vs c isolates float vs scaled-int decimals.
    keys = {"ts": "DoubleDelta", "trade_id": "Delta", "ts_recv": "DoubleDelta"}
    gorilla = _codec_ddl("Float64", **keys, price="Gorilla", size="Gorilla")
    scaled = _codec_ddl("Int64", **keys, price="Delta", size="T64")
    # d: GCD first. Venue timestamps are whole milliseconds in a nanosecond column and prices/sizes sit on the
    # symbol's tick/step grid: dividing each block by its common divisor removes up to 20 always-zero bits per
    # value before the delta, which neither DoubleDelta nor zstd can find by themselves (a 1.7-2.3x smaller column).
    grid = _codec_ddl(
        "Int64", ts="GCD, Delta", trade_id="Delta", price="GCD, DoubleDelta", size="GCD, T64", ts_recv="Delta, T64"
    )
    return [
        WarmVariant("a float64, LZ4 (default)", "float64", baseline_trades, baseline_candles),
        WarmVariant("b float64 Gorilla+ZSTD", "float64", *gorilla),
        WarmVariant("c int64e8 Delta/T64+ZSTD", "int64", *scaled),
        WarmVariant("d int64e8 GCD+Delta+ZSTD", "int64", *grid),
    ]


def _delta_parquet_options(dataset: Dataset, delta: set[str], level: int | None) -> dict[str, Any]:
    # DELTA_BINARY_PACKED stores bit-packed differences, for integers that move slowly along the sort order; zstd
    # then takes what repeats. Parquet forbids a column encoding on a dictionary-encoded column, so the dictionary
    # is named per column.
    return {
        "compression": "zstd",
        "compression_level": level,
        "use_dictionary": [name for name in dataset.stored_columns if name not in delta],
        "column_encoding": {name: "DELTA_BINARY_PACKED" for name in dataset.stored_columns if name in delta},
        "row_group_size": 1 << 20,  # ~1M rows: a day of one data type in one or two row groups
    }


def _cold_c(dataset: Dataset) -> dict[str, Any]:
    options = _delta_parquet_options(dataset, {"ts", "trade_id", *dataset.value_columns}, None)
    options["use_dictionary"] = ["exchange", "symbol", "side"]  # the rest plain
    return options


def _cold_d(dataset: Dataset) -> dict[str, Any]:
    # Sizes and volumes are not ordered, so their deltas are wider than the values: they keep the dictionary
    # (round lots repeat). The receive clock is a delta column too. zstd 9: a cold file is written once.
    prices = {"price", "open", "high", "low", "close"}
    return _delta_parquet_options(dataset, {"ts", "trade_id", "ts_recv_ns", "trade_count", *prices}, 9)


COLD_VARIANTS: Final = (
    ColdVariant("a float64, snappy (default)", "float64", lambda _: {"compression": "snappy"}),
    ColdVariant("b float64, zstd", "float64", lambda _: {"compression": "zstd"}),
    ColdVariant("c int64e8 DELTA+zstd", "int64", _cold_c),
    ColdVariant("d int64e8 DELTA/dict+zstd(9)", "int64", _cold_d),
)


# ---- measuring --------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    tier: str
    variant: str
    numeric: Numeric
    bytes_per_row: dict[str, float] = field(default_factory=dict)
    column_bytes: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> column -> bytes
    write_secs: float = 0.0
    inexact_rows: int = 0


def _query_rows(session: Any, sql: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = session.query(sql, "ArrowTable").to_pylist()
    return rows


def _warm_table(session: Any, table: str, ddl: ColumnDDL, stage: Path, dataset: Dataset) -> float:
    """Create, fill from the staged Parquet file, merge to one part per partition; return the seconds it took."""
    columns = ", ".join(f"{name} {ddl[name]}" for name in dataset.stored_columns)
    names = ", ".join(dataset.stored_columns)
    session.query(
        f"CREATE TABLE bench.{table} ({columns}) ENGINE = MergeTree PARTITION BY toYYYYMM(ts) "
        # Wide parts (one file per column) as every part of a real day's table is; they also give per-column sizes.
        "ORDER BY (exchange, symbol, ts) SETTINGS min_bytes_for_wide_part = 0, min_rows_for_wide_part = 0"
    )
    started = time.perf_counter()
    insert = f"INSERT INTO bench.{table} ({names}) SELECT {names} FROM file('{stage}', Parquet)"  # noqa: S608 - our names
    session.query(insert)
    session.query(f"OPTIMIZE TABLE bench.{table} FINAL")
    return time.perf_counter() - started


def measure_warm(session: Any, stage_dir: Path, datasets: Sequence[Dataset], seed: int) -> list[Measurement]:
    stages = {}
    for dataset in datasets:  # staged once per numeric kind, uncompressed: only the INSERT is timed
        for numeric in ("float64", "int64"):
            stages[dataset.name, numeric] = stage_dir / f"{dataset.name}-{numeric}.parquet"
            pq.write_table(dataset.stored_table(numeric), stages[dataset.name, numeric], compression="none")
    session.query("CREATE DATABASE IF NOT EXISTS bench")
    results = []
    for index, variant in enumerate(warm_variants()):
        result = Measurement("warm", variant.name, variant.numeric)
        for dataset in datasets:
            table = f"v{index}_{dataset.name}"
            ddl = variant.trades if dataset.name == "trades" else variant.candles
            result.write_secs += _warm_table(session, table, ddl, stages[dataset.name, variant.numeric], dataset)
            where = f"database = 'bench' AND table = '{table}' AND active"
            parts_sql = f"SELECT sum(data_compressed_bytes) AS b FROM system.parts WHERE {where}"  # noqa: S608 - our names
            parts = _query_rows(session, parts_sql)
            result.bytes_per_row[dataset.name] = parts[0]["b"] / dataset.rows
            per_column = _query_rows(
                session,
                f"SELECT column, sum(column_data_compressed_bytes) AS b FROM system.parts_columns WHERE {where} "  # noqa: S608
                "GROUP BY column",
            )
            result.column_bytes[dataset.name] = {row["column"]: row["b"] for row in per_column}
            # Enum8 comes out of chDB's Arrow as its int8 code; toString gives back the label that went in.
            names = ", ".join(f"toString({n}) AS {n}" if ddl[n].startswith("Enum") else n for n in ddl)
            readback = session.query(
                f"SELECT {names} FROM bench.{table} ORDER BY {dataset.readback_order}",  # noqa: S608 - our names
                "ArrowTable",
            )
            result.inexact_rows += count_inexact(readback, dataset, variant.numeric, seed)
        results.append(result)
    return results


def measure_cold(out_dir: Path, datasets: Sequence[Dataset], seed: int) -> list[Measurement]:
    results = []
    for index, variant in enumerate(COLD_VARIANTS):
        result = Measurement("cold", variant.name, variant.numeric)
        for dataset in datasets:
            table = dataset.stored_table(variant.numeric)
            path = out_dir / f"v{index}-{dataset.name}.parquet"
            started = time.perf_counter()
            pq.write_table(table, path, **variant.options(dataset))
            result.write_secs += time.perf_counter() - started
            result.bytes_per_row[dataset.name] = path.stat().st_size / dataset.rows
            result.column_bytes[dataset.name] = _parquet_column_bytes(path)
            result.inexact_rows += count_inexact(pq.read_table(path), dataset, variant.numeric, seed)
        results.append(result)
    return results


def _parquet_column_bytes(path: Path) -> dict[str, int]:
    metadata = pq.ParquetFile(path).metadata
    sizes: dict[str, int] = {}
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for i in range(row_group.num_columns):
            chunk = row_group.column(i)
            sizes[chunk.path_in_schema] = sizes.get(chunk.path_in_schema, 0) + chunk.total_compressed_size
    return sizes


def check_exact(results: Sequence[Measurement]) -> None:
    """A scaled-int variant must give back every value exactly: that is the whole reason to store integers."""
    for result in results:
        if result.numeric == "int64" and result.inexact_rows:
            raise SystemExit(f"{result.tier} {result.variant}: {result.inexact_rows} values not exact")


# ---- report -----------------------------------------------------------------------------------------------------


def report(datasets: Sequence[Dataset], results: Sequence[Measurement]) -> None:
    raw = {d.name: d.raw_json_bytes / d.rows for d in datasets}
    header = (
        f"{'tier':<5} {'variant':<28} {'trades B/row':>12} {'x JSON':>7} {'candles B/row':>13} {'x JSON':>7} "
        f"{'write s':>8} {'exact':>6}"
    )
    print(header)
    print("-" * len(header))
    print(f"{'raw':<5} {'venue JSON':<28} {raw['trades']:>12.1f} {1:>7.1f} {raw['candles']:>13.1f} {1:>7.1f}")
    for r in results:
        exact = "yes" if r.inexact_rows == 0 else f"{r.inexact_rows:,} off"
        print(
            f"{r.tier:<5} {r.variant:<28} {r.bytes_per_row['trades']:>12.2f} "
            f"{raw['trades'] / r.bytes_per_row['trades']:>7.1f} {r.bytes_per_row['candles']:>13.2f} "
            f"{raw['candles'] / r.bytes_per_row['candles']:>7.1f} {r.write_secs:>8.2f} {exact:>6}"
        )
    print()
    for tier, dataset, goal in GOALS:
        best = min((r for r in results if r.tier == tier), key=lambda r: r.bytes_per_row[dataset])
        ratio = raw[dataset] / best.bytes_per_row[dataset]
        verdict = "met" if ratio >= goal else "NOT met"
        print(f"goal {tier} {dataset} >= {goal:.0f}x: {verdict} ({ratio:.1f}x, best: {best.variant})")
    _report_columns(datasets[0], results)


def _report_columns(trades: Dataset, results: Sequence[Measurement]) -> None:
    """Where the bytes of a trade go, per column, in each tier's smallest variant."""
    best = [
        min((r for r in results if r.tier == tier), key=lambda r: r.bytes_per_row["trades"])
        for tier in ("warm", "cold")
    ]
    print(f"\ntrades, B/row per column: warm = {best[0].variant}; cold = {best[1].variant}")
    print(f"{'column':<12} {'warm':>8} {'cold':>8}")
    for name in trades.stored_columns:
        sizes = [r.column_bytes["trades"].get(name, 0) / trades.rows for r in best]
        print(f"{name:<12} {sizes[0]:>8.3f} {sizes[1]:>8.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="an hour of trades (~70k) instead of a day (~1.7M)")
    parser.add_argument("--hours", type=int, help="hours of market data to generate (default 24, or 1 with --quick)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    hours = args.hours or (1 if args.quick else 24)

    started = time.perf_counter()
    datasets = build_datasets(hours, args.seed)
    print(
        f"Python {sys.version.split()[0]}, chdb {chdb.__version__}, pyarrow {pa.__version__}; {hours} h, "
        f"{len(SYMBOLS)} symbols: {datasets[0].rows:,} trades, {datasets[1].rows:,} candles "
        f"(generated in {time.perf_counter() - started:.1f} s)\n"
    )
    work_dir = Path(tempfile.mkdtemp(prefix="bench-tier-compression-"))
    try:
        session = Session(str(work_dir / "chdb"))  # type: ignore[no-untyped-call]  # chdb ships no annotations
        try:
            results = measure_warm(session, work_dir, datasets, args.seed)
            production = Measurement("warm", "e tickstrata warm schema", "int64")
            production.bytes_per_row, production.write_secs, production.inexact_rows = measure_production(
                session, work_dir, datasets
            )
            results.append(production)
        finally:
            session.close()  # type: ignore[no-untyped-call]
        results += measure_cold(work_dir, datasets, args.seed)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    check_exact(results)
    report(datasets, results)
    print(f"\n(took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
