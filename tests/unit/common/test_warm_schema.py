"""The warm schema follows the hot tier's specs: same rows and names, prices and sizes as scaled integers."""

from __future__ import annotations

from tickstrata.common.questdb_schema import TABLES, Kind, Scale
from tickstrata.common.warm_schema import (
    DEDUP_WINDOW_INSERTS,
    WARM_TABLES,
    WARM_TABLES_BY_NAME,
    create_warm_statements,
)


def _types(table: str) -> dict[str, str]:
    return {column.name: column.ddl_type for column in WARM_TABLES_BY_NAME[table].columns}


def test_every_market_data_table_has_a_warm_table_with_every_hot_column() -> None:
    assert [table.name for table in WARM_TABLES] == [spec.name for spec in TABLES]
    for table in WARM_TABLES:
        sources = {column.source.name for column in table.columns if column.source is not None}
        assert sources == {column.name for column in table.spec.columns}


def test_trade_prices_and_sizes_are_scaled_integers_with_their_scales_per_row() -> None:
    types = _types("trades")
    assert types["price"].startswith("Int64 CODEC(GCD, DoubleDelta")
    assert types["size"].startswith("Int64 CODEC(GCD, T64")
    assert types["price_scale"].startswith("UInt8")
    assert types["size_scale"].startswith("UInt8")
    assert types["ts"].startswith("DateTime64(9, 'UTC')")
    assert types["exchange"] == types["symbol"] == types["side"] == "LowCardinality(String)"
    assert types["backfilled"] == "Bool"


def test_values_the_venue_computes_keep_the_hot_double() -> None:
    assert _types("candles")["quote_volume"].startswith("Nullable(Float64)")
    assert _types("funding")["rate"].startswith("Float64")
    assert _types("funding")["mark_price"].startswith("Nullable(Float64)")
    assert "price_scale" not in _types("funding")  # nothing in funding is scaled


def test_book_sides_become_scaled_price_and_size_arrays() -> None:
    book = WARM_TABLES_BY_NAME["books"]
    levels = [(c.name, c.scale) for c in book.columns if c.source is not None and c.source.kind is Kind.LEVELS]
    assert levels == [
        ("bids_prices", Scale.PRICE),
        ("bids_sizes", Scale.SIZE),
        ("asks_prices", Scale.PRICE),
        ("asks_sizes", Scale.SIZE),
    ]


def test_tables_are_monthly_mergetrees_ordered_by_instrument_then_time_with_a_dedup_window() -> None:
    sql = WARM_TABLES_BY_NAME["trades"].create_sql("warm")
    assert sql.startswith("CREATE TABLE IF NOT EXISTS warm.trades (ts DateTime64(9, 'UTC')")
    assert sql.endswith(
        "ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (exchange, symbol, ts, trade_id) "
        f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW_INSERTS}"
    )
    assert WARM_TABLES_BY_NAME["candles"].order_by == ("exchange", "symbol", "ts", "interval_secs")
    assert create_warm_statements("warm")[0] == "CREATE DATABASE IF NOT EXISTS warm"
