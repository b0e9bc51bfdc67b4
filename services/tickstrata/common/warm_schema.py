"""The warm tier's schema (ClickHouse): one table per market-data table, derived from its ``TableSpec``. Pure.

The hot tier's specs are the one contract: each warm table has the same rows and the same names, so the tierer's
copy and the query service's reads need no mapping of their own. What changes is the storage:

- **Prices and sizes are exact integers.** A column with a ``Scale`` holds ``value * 10**scale`` as ``Int64``, and
  the row carries the scales it was written with (``price_scale``, ``size_scale``: the decimals of the instrument's
  tick and lot size when the row was moved, ``tickstrata.tierer.scaling``). Values on a tick grid are multiples of
  the tick, so the integers are exact, and a row read back as a double equals the hot tier's double bit for bit.
  Per-row scales cost nothing stored (a constant run compresses to a few bytes a part) and keep every row readable
  when a venue changes a tick size. Columns without a ``Scale`` (rates, mark and index prices, quote volumes: values
  the venue computes) keep the hot tier's double.
- **Book levels** become four arrays per snapshot (``bids_prices``, ``bids_sizes``, ``asks_prices``, ``asks_sizes``),
  scaled like prices and sizes: ClickHouse's arrays of one type are what its array functions and codecs take.
- **Codecs chosen by measurement** (``bench/bench_tier_compression.py``, figures in bench/README.md): ``GCD`` first
  on timestamps and scaled values (venue stamps are whole milliseconds in a nanosecond column, and values sit on a
  tick grid: the common divisor removes bits neither delta nor zstd finds), then ``Delta``/``DoubleDelta``/``T64``
  by how the column moves along the sort order, then ``ZSTD(3)``. Names and enumerations are
  ``LowCardinality(String)``.
- **Layout:** ``MergeTree`` ordered by ``(exchange, symbol, ts)`` and the rest of the hot tier's dedup keys (one
  instrument's rows are contiguous, so its deltas are small and a symbol's range is one seek), partitioned by month.
  A move writes whole days with a content-derived insert deduplication token, so a retried insert adds nothing
  (``non_replicated_deduplication_window`` is set on every table for that; the tierer checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tickstrata.common.questdb_schema import TABLES, Column, Kind, Scale, TableSpec

WARM_DATABASE: Final = "tickstrata"
DEDUP_WINDOW_INSERTS: Final = 10_000
"""How many recent inserts per table ClickHouse remembers the deduplication tokens of: far more than one tierer run
makes (one insert per feed, table and day), so a re-run of any recent move is recognised."""

PRICE_SCALE_COLUMN: Final = "price_scale"
SIZE_SCALE_COLUMN: Final = "size_scale"
SCALE_COLUMN_OF: Final = {Scale.PRICE: PRICE_SCALE_COLUMN, Scale.SIZE: SIZE_SCALE_COLUMN}
LEVEL_PARTS: Final = (("prices", Scale.PRICE), ("sizes", Scale.SIZE))
"""A book side ``[[prices], [sizes]]`` becomes ``<side>_prices`` and ``<side>_sizes``."""
LEVEL_PART_INDEX: Final = {scale: index for index, (_, scale) in enumerate(LEVEL_PARTS)}
"""Where a scale's values sit in a book side: ``[[prices], [sizes]]``."""

_ZSTD: Final = "ZSTD(3)"
_TIMESTAMP: Final = f"DateTime64(9, 'UTC') CODEC(GCD, Delta, {_ZSTD})"
_SCALE_TYPE: Final = f"UInt8 CODEC({_ZSTD})"
# Prices move by a few ticks between neighbouring rows (DoubleDelta); sizes jump about but are small (T64).
_SCALED: Final = {
    Scale.PRICE: f"Int64 CODEC(GCD, DoubleDelta, {_ZSTD})",
    Scale.SIZE: f"Int64 CODEC(GCD, T64, {_ZSTD})",
}
_LEVELS: Final = {Scale.PRICE: f"Array(Int64) CODEC({_ZSTD})", Scale.SIZE: f"Array(Int64) CODEC({_ZSTD})"}
_PLAIN: Final = {
    Kind.SYMBOL: "LowCardinality(String)",
    Kind.ID: f"String CODEC({_ZSTD})",
    Kind.DOUBLE: f"Float64 CODEC(Gorilla, {_ZSTD})",
    Kind.DOUBLE_OR_NULL: f"Nullable(Float64) CODEC({_ZSTD})",
    Kind.LONG: f"Int64 CODEC(Delta, T64, {_ZSTD})",
    Kind.LONG_OR_NULL: f"Nullable(Int64) CODEC({_ZSTD})",
    Kind.POSITIVE_INT: f"UInt32 CODEC(T64, {_ZSTD})",
    Kind.BOOLEAN: "Bool",
}


@dataclass(frozen=True, slots=True)
class WarmColumn:
    name: str
    ddl_type: str
    """ClickHouse type and codec."""
    source: Column | None
    """The hot column the values come from; None for the per-row scales."""
    scale: Scale | None
    """The instrument precision the values are multiples of (scaled columns and level parts)."""


@dataclass(frozen=True, slots=True)
class WarmTable:
    spec: TableSpec
    columns: tuple[WarmColumn, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def order_by(self) -> tuple[str, ...]:
        return self.spec.instrument_time_order

    def create_sql(self, database: str = WARM_DATABASE) -> str:
        columns = ", ".join(f"{column.name} {column.ddl_type}" for column in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.name} ({columns}) ENGINE = MergeTree "
            f"PARTITION BY toYYYYMM(ts) ORDER BY ({', '.join(self.order_by)}) "
            f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW_INSERTS}"
        )


def warm_columns(spec: TableSpec) -> tuple[WarmColumn, ...]:
    """The warm columns of a hot table, in its order, then the scales its scaled columns need."""
    columns: list[WarmColumn] = []
    scales: set[Scale] = set()
    for column in spec.columns:
        if column.kind is Kind.TIMESTAMP:
            columns.append(WarmColumn(column.name, _TIMESTAMP, column, None))
        elif column.kind is Kind.LEVELS:
            for part, scale in LEVEL_PARTS:
                columns.append(WarmColumn(f"{column.name}_{part}", _LEVELS[scale], column, scale))
                scales.add(scale)
        elif column.scale is not None:
            if column.kind is not Kind.DOUBLE:
                raise ValueError(f"{spec.name}.{column.name}: only non-null DOUBLE columns are scaled")
            columns.append(WarmColumn(column.name, _SCALED[column.scale], column, column.scale))
            scales.add(column.scale)
        else:
            columns.append(WarmColumn(column.name, _PLAIN[column.kind], column, None))
    for scale in (Scale.PRICE, Scale.SIZE):
        if scale in scales:
            columns.append(WarmColumn(SCALE_COLUMN_OF[scale], _SCALE_TYPE, None, None))
    return tuple(columns)


WARM_TABLES: Final = tuple(WarmTable(spec, warm_columns(spec)) for spec in TABLES)
WARM_TABLES_BY_NAME: Final = {table.name: table for table in WARM_TABLES}


def create_warm_statements(database: str = WARM_DATABASE) -> list[str]:
    """The DDL the tierer runs before a move; idempotent (``IF NOT EXISTS``)."""
    return [f"CREATE DATABASE IF NOT EXISTS {database}", *(table.create_sql(database) for table in WARM_TABLES)]
