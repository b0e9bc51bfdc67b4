"""The hot-tier schema: every table WAL, daily partitions, dedup keys with the timestamp, one per data type."""

from __future__ import annotations

import msgspec
import pytest

from tickstrata.common.events import BookSnapshot, Candle, DataType, Funding, InstrumentSpec, Quote, Trade
from tickstrata.common.questdb_schema import (
    INSTRUMENTS_SPEC,
    QUALITY_TABLES,
    STORED_DATA_TYPES,
    TABLES,
    TABLES_BY_NAME,
    WRITTEN_TABLES,
    create_quality_table_statements,
    create_table_statements,
)


def test_every_table_is_wal_partitioned_by_day_with_dedup_keys_including_the_timestamp() -> None:
    for spec, sql in zip(WRITTEN_TABLES, create_table_statements(), strict=True):
        partition = "YEAR" if spec is INSTRUMENTS_SPEC else "DAY"  # a few rows per collector start
        assert sql.startswith(f"CREATE TABLE IF NOT EXISTS {spec.name} (ts TIMESTAMP_NS, exchange SYMBOL, ")
        assert sql.endswith(
            f"TIMESTAMP(ts) PARTITION BY {partition} WAL DEDUP UPSERT KEYS({', '.join(spec.dedup_keys)})"
        )
        column_names = [column.name for column in spec.columns]
        assert len(set(column_names)) == len(column_names)
        assert set(spec.dedup_keys) <= set(column_names)
        assert spec.dedup_keys[:3] == ("ts", "exchange", "symbol")


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        ("trades", ("ts", "exchange", "symbol", "trade_id")),
        ("candles", ("ts", "exchange", "symbol", "interval_secs")),
        ("quotes", ("ts", "exchange", "symbol")),
        ("books", ("ts", "exchange", "symbol")),
        ("funding", ("ts", "exchange", "symbol")),
    ],
)
def test_dedup_keys(table: str, keys: tuple[str, ...]) -> None:
    assert TABLES_BY_NAME[table].dedup_keys == keys


def test_every_market_data_type_is_stored_books_included() -> None:
    assert frozenset(DataType) == STORED_DATA_TYPES
    assert {spec.data_type for spec in WRITTEN_TABLES} == set(DataType)
    # The tierer moves TABLES; the instruments stay in the hot tier for the warm and cold tiers to scale by.
    assert DataType.INSTRUMENTS not in {spec.data_type for spec in TABLES}


def test_instruments_keep_the_precision_and_the_increments_as_the_venue_wrote_them() -> None:
    assert INSTRUMENTS_SPEC.create_sql() == (
        "CREATE TABLE IF NOT EXISTS instruments (ts TIMESTAMP_NS, exchange SYMBOL, symbol SYMBOL, price_decimals INT, "
        "size_decimals INT, tick_size VARCHAR, lot_size VARCHAR, ts_recv_ns LONG) TIMESTAMP(ts) PARTITION BY YEAR WAL "
        "DEDUP UPSERT KEYS(ts, exchange, symbol)"
    )


def test_books_keep_each_side_as_a_two_dimensional_array_with_the_sequence() -> None:
    sql = TABLES_BY_NAME["books"].create_sql()
    assert "bids DOUBLE[][], asks DOUBLE[][], sequence LONG, ts_recv_ns LONG" in sql


@pytest.mark.parametrize(
    ("table", "event_type"),
    [
        ("trades", Trade),
        ("candles", Candle),
        ("quotes", Quote),
        ("books", BookSnapshot),
        ("funding", Funding),
        ("instruments", InstrumentSpec),
    ],
)
def test_every_column_comes_from_an_attribute_of_the_event(table: str, event_type: type[msgspec.Struct]) -> None:
    fields = set(event_type.__struct_fields__)
    spec = {spec.name: spec for spec in WRITTEN_TABLES}[table]
    assert {column.attribute for column in spec.columns} <= fields


def test_optional_event_fields_are_nullable_columns() -> None:
    types = {(spec.name, column.name): column.kind.name for spec in TABLES for column in spec.columns}
    assert types[("candles", "quote_volume")] == "DOUBLE_OR_NULL"
    assert types[("candles", "trade_count")] == "LONG_OR_NULL"
    assert types[("funding", "mark_price")] == types[("funding", "index_price")] == "DOUBLE_OR_NULL"
    assert types[("books", "sequence")] == "LONG_OR_NULL"


def test_quality_tables_are_keyed_by_identity_so_a_restarted_validator_overwrites() -> None:
    keys = {spec.name: spec.dedup_keys for spec in QUALITY_TABLES}
    assert keys == {
        "quality_buckets": ("ts", "exchange", "symbol"),
        "quality_gaps": ("ts", "gap_id"),
        "quality_violations": ("ts", "violation_id"),
    }
    for spec, sql in zip(QUALITY_TABLES, create_quality_table_statements(), strict=True):
        assert spec.data_type is None  # no stream lands here: the validator writes these rows itself
        names = [column.name for column in spec.columns]
        assert len(names) == len(set(names))
        assert names[0] == "ts"
        assert set(spec.dedup_keys) <= set(names)
        assert sql.startswith(f"CREATE TABLE IF NOT EXISTS {spec.name} (")
        assert "WAL DEDUP UPSERT KEYS" in sql
    # No market-data table name is reused by the ledger.
    assert not {spec.name for spec in QUALITY_TABLES} & {spec.name for spec in TABLES}
