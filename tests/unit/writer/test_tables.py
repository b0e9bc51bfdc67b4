"""The hot-tier schema and the event → column mapping (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.unit.common import _samples
from tickstrata.writer.tables import TABLES, create_table_statements, to_table_columns


def test_every_table_is_wal_partitioned_by_day_with_dedup_keys_including_the_timestamp() -> None:
    for spec, sql in zip(TABLES, create_table_statements(), strict=True):
        assert sql.startswith(f"CREATE TABLE IF NOT EXISTS {spec.name} (ts TIMESTAMP_NS, ")
        assert "TIMESTAMP(ts) PARTITION BY DAY WAL DEDUP UPSERT KEYS(ts, exchange, symbol" in sql
        column_names = [name for name, _ in spec.columns]
        assert set(spec.dedup_keys) <= set(column_names)
        assert dict(spec.columns)["exchange"] == dict(spec.columns)["symbol"] == "SYMBOL"


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        ("trades", ("ts", "exchange", "symbol", "trade_id")),
        ("candles", ("ts", "exchange", "symbol", "interval_secs")),
        ("quotes", ("ts", "exchange", "symbol")),
        ("funding", ("ts", "exchange", "symbol")),
    ],
)
def test_dedup_keys(table: str, keys: tuple[str, ...]) -> None:
    assert {spec.name: spec.dedup_keys for spec in TABLES}[table] == keys


def test_trade_maps_to_one_row_with_exact_values() -> None:
    trade = _samples.trade()
    [batch] = to_table_columns([trade])
    assert batch.table == "trades"
    [(symbols, columns, ts_ns)] = list(batch.rows())
    assert ts_ns == trade.ts_event_ns
    assert symbols == {"exchange": "binance", "symbol": "BTC-USDT", "side": "buy"}
    assert columns == {
        "trade_id": "3400123456",
        "price": 64123.45,
        "size": 0.0012,
        "ts_recv_ns": trade.ts_recv_ns,
        "backfilled": False,
    }
    # The DOUBLE round trip is exact at the venue's precision.
    assert Decimal(repr(columns["price"])) == trade.price


def test_candle_is_keyed_by_open_time_and_missing_optionals_stay_null() -> None:
    candle = _samples.candle(quote_volume=None, trade_count=None)
    [batch] = to_table_columns([candle])
    [(symbols, columns, ts_ns)] = list(batch.rows())
    assert ts_ns == candle.open_time_ns
    assert symbols["source"] == "ws"
    assert "quote_volume" not in columns
    assert "trade_count" not in columns
    assert columns["interval_secs"] == 60
    assert columns["closed"] is True
    assert columns["ts_event_ns"] == candle.ts_event_ns


def test_quote_and_funding_rows() -> None:
    quote, funding = _samples.quote(), _samples.funding(mark_price=None)
    quotes, funding_batch = to_table_columns([funding, quote])  # table order is stable, not input order
    assert quotes.table == "quotes"
    assert funding_batch.table == "funding"
    [(_, quote_columns, quote_ts)] = list(quotes.rows())
    assert quote_ts == quote.ts_event_ns
    assert quote_columns["bid_price"] == float(quote.bid_price)
    [(_, funding_columns, _)] = list(funding_batch.rows())
    assert "mark_price" not in funding_columns
    assert funding_columns["rate"] == float(funding.rate)
    assert funding_columns["next_funding_time_ns"] == funding.next_funding_time_ns


def test_batch_groups_by_table_keeps_order_and_skips_books() -> None:
    trades = [_samples.trade(trade_id=str(i), ts_event_ns=_samples.TS_EVENT_NS + i) for i in range(3)]
    batches = to_table_columns([trades[0], _samples.book(), trades[1], _samples.candle(), trades[2]])
    assert [(batch.table, len(batch)) for batch in batches] == [("trades", 3), ("candles", 1)]
    assert [columns["trade_id"] for _, columns, _ in batches[0].rows()] == ["0", "1", "2"]
    assert to_table_columns([_samples.book()]) == []
