"""Which scale a row is stored with: the instrument spec in force at its time, or the values' own when none is."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tests.unit.common._hot_rows import NS, T0_NS, hot_rows
from tickstrata.common.questdb_schema import TABLES_BY_NAME, Scale
from tickstrata.tierer.scales import ScaleBook

TRADES = TABLES_BY_NAME["trades"]


def _rows_at(*ts_ns: int) -> pa.Table:
    count = len(ts_ns)
    return pa.table({"ts": pa.array(ts_ns, type=NS), "price": [1.5] * count, "size": [0.25] * count})


def test_each_row_takes_the_spec_in_force_at_its_time_and_older_rows_the_first_one() -> None:
    book = ScaleBook.from_rows(
        [("BTC-USDT", T0_NS + 100, "0.01", "0.0001"), ("BTC-USDT", T0_NS, "0.10", "0.001")]  # any order
    )
    scales = book.scales(TRADES, "BTC-USDT", _rows_at(T0_NS - 5, T0_NS, T0_NS + 99, T0_NS + 100, T0_NS + 10**12))
    assert not scales.inferred
    assert scales.by_scale[Scale.PRICE].tolist() == [1, 1, 1, 2, 2]
    assert scales.by_scale[Scale.SIZE].tolist() == [3, 3, 3, 4, 4]


def test_an_instrument_no_collector_described_gets_the_smallest_exact_scale_of_its_values() -> None:
    rows, _ = hot_rows()["trades"]
    scales = ScaleBook().scales(TRADES, "SHIB-USDT", rows)
    assert scales.inferred
    assert np.unique(scales.by_scale[Scale.PRICE]).tolist() == [8]  # 0.00001234
    assert np.unique(scales.by_scale[Scale.SIZE]).tolist() == [5]  # 0.00012


def test_book_levels_count_for_the_inferred_scales() -> None:
    rows, _ = hot_rows()["books"]
    scales = ScaleBook().scales(TABLES_BY_NAME["books"], "BTC-USDT", rows)
    assert scales.by_scale[Scale.PRICE].tolist() == [1, 1]
    assert scales.by_scale[Scale.SIZE].tolist() == [3, 3]


def test_funding_has_nothing_to_scale() -> None:
    rows, _ = hot_rows()["funding"]
    assert ScaleBook().scales(TABLES_BY_NAME["funding"], "BTC-USDT-PERP", rows).by_scale == {}


def test_a_spec_with_an_impossible_increment_is_refused() -> None:
    with pytest.raises(ValueError, match="increment"):
        ScaleBook.from_rows([("BTC-USDT", T0_NS, "0", "0.001")])
