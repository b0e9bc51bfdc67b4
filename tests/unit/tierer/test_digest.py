"""The content digest: the same rows give the same digest whatever their order, chunking or encoding; any change
of a value, a null or a list's structure gives another."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from tests.unit.common._hot_rows import hot_rows
from tickstrata.common.questdb_schema import TABLES_BY_NAME
from tickstrata.tierer.digest import canonical, column_sum, digest


def _digest(table: str, rows: pa.Table) -> str:
    return digest(canonical(TABLES_BY_NAME[table], rows))


@pytest.mark.parametrize("table", ["trades", "candles", "quotes", "books", "funding"])
def test_row_order_chunking_and_dictionary_encoding_do_not_change_the_digest(table: str) -> None:
    rows, _ = hot_rows()[table]
    reordered = rows.take(list(reversed(range(rows.num_rows))))
    chunked = pa.concat_tables([rows.slice(0, 1), rows.slice(1)])
    encoded = rows.set_column(1, "exchange", rows.column("exchange").dictionary_encode())
    assert _digest(table, rows) == _digest(table, reordered) == _digest(table, chunked) == _digest(table, encoded)


def _replace(rows: pa.Table, name: str, values: list[object]) -> pa.Table:
    index = rows.schema.get_field_index(name)
    return rows.set_column(index, name, pa.array(values, type=rows.schema.field(name).type))


@pytest.mark.parametrize(
    ("table", "column", "values"),
    [
        ("trades", "price", [64123.4, 64123.5, math.nextafter(1.234e-05, 1.0)]),  # one ulp: a rounding on the way
        ("trades", "trade_id", ["1", "2", "4"]),
        ("trades", "ts_recv_ns", [None, None, None]),
        ("candles", "trade_count", [17, 0]),  # NULL became 0
        ("books", "asks", [[[64000.2], [0.5]], [[], []]]),  # an empty side with another structure
        ("funding", "mark_price", [0.0]),
    ],
)
def test_any_changed_value_null_or_structure_changes_the_digest(table: str, column: str, values: list[object]) -> None:
    rows, _ = hot_rows()[table]
    assert _digest(table, _replace(rows, column, values)) != _digest(table, rows)


def test_a_string_split_differently_is_another_content() -> None:
    rows, _ = hot_rows()["trades"]
    one = _replace(rows, "trade_id", ["12", "3", "4"])
    other = _replace(rows, "trade_id", ["1", "23", "4"])
    assert _digest("trades", one) != _digest("trades", other)


def test_the_volume_sum_is_the_column_total() -> None:
    rows, _ = hot_rows()["trades"]
    assert column_sum(rows, "size") == pytest.approx(0.00012 + 1.5 + 123456789.0)
    assert column_sum(rows.slice(0, 0), "size") == 0.0
