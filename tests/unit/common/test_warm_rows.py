"""Hot rows → warm rows → hot rows: every value back bit for bit, prices and sizes as exact integers between."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.unit.common._hot_rows import NS, T0_NS, hot_rows, trades
from tickstrata.common.questdb_schema import Scale
from tickstrata.common.warm_rows import ScaleError, from_warm, to_warm
from tickstrata.common.warm_schema import WARM_TABLES_BY_NAME


def test_trades_become_exact_integers_and_come_back_bit_for_bit() -> None:
    table = WARM_TABLES_BY_NAME["trades"]
    hot = trades()
    warm = to_warm(table, hot, {Scale.PRICE: [2, 2, 8], Scale.SIZE: [5, 5, 0]})
    assert warm.column("price").to_pylist() == [6412340, 6412350, 1234]
    assert warm.column("size").to_pylist() == [12, 150000, 123456789]
    assert warm.column("price_scale").to_pylist() == [2, 2, 8]
    back = from_warm(table, warm)
    assert back.column_names == hot.column_names
    for name in hot.column_names:
        assert back.column(name).to_pylist() == hot.column(name).to_pylist(), name


def test_a_price_off_its_instruments_grid_fails_the_move_naming_the_column_and_row() -> None:
    with pytest.raises(ScaleError, match=r"trades\.price: row 1: 64123\.5 is not a whole number of 1e-0 units"):
        to_warm(WARM_TABLES_BY_NAME["trades"], trades(), {Scale.PRICE: [2, 0, 8], Scale.SIZE: 8})


def test_a_missing_scale_is_an_error_not_a_guess() -> None:
    with pytest.raises(ScaleError, match="no size_decimals scale"):
        to_warm(WARM_TABLES_BY_NAME["trades"], trades(), {Scale.PRICE: 8})


def test_book_sides_split_into_scaled_arrays_and_join_back_empty_sides_included() -> None:
    table = WARM_TABLES_BY_NAME["books"]
    hot = pa.table(
        {
            "ts": pa.array([T0_NS, T0_NS + 100], type=NS),
            "exchange": ["binance", "binance"],
            "symbol": ["BTC-USDT", "BTC-USDT"],
            "bids": [[[64000.1, 64000.0], [0.001, 0.002]], [[63999.9], [1.25]]],
            "asks": [[[64000.2], [0.5]], []],  # QuestDB shows an empty side as []
            "sequence": pa.array([7, None], type=pa.int64()),
            "ts_recv_ns": pa.array([T0_NS + 9, T0_NS + 109], type=pa.int64()),
        }
    )
    warm = to_warm(table, hot, {Scale.PRICE: 1, Scale.SIZE: 3})
    assert warm.column("bids_prices").to_pylist() == [[640001, 640000], [639999]]
    assert warm.column("bids_sizes").to_pylist() == [[1, 2], [1250]]
    assert warm.column("asks_prices").to_pylist() == [[640002], []]
    back = from_warm(table, warm)
    assert back.column("bids").to_pylist() == hot.column("bids").to_pylist()
    assert back.column("asks").to_pylist() == hot.column("asks").to_pylist()
    assert back.column("sequence").to_pylist() == [7, None]


def test_funding_keeps_its_doubles_and_nulls_unscaled() -> None:
    table = WARM_TABLES_BY_NAME["funding"]
    hot, scales = hot_rows()["funding"]
    assert scales == {}
    back = from_warm(table, to_warm(table, hot, scales))
    assert back.to_pylist() == hot.to_pylist()
