"""Rows read from the hot tier → Arrow record batches, built as the rows arrive. Pure: no I/O.

A read never holds more than `batch_rows` rows as Python tuples (~500 bytes a trade row): every full slice
becomes a record batch (~60 bytes a trade row), so a 2M-row answer costs ~120 MiB of Arrow instead of ~1 GiB of
Python objects. Each row is checked before it is kept: a price or size outside the stored bounds
(`bad_values.float_problem`), or a null where the schema needs a value, leaves the row out and is returned to the
reader, which counts and logs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa

from tickstrata.query.bad_values import float_problem
from tickstrata.query.resample import MINUTE_SCHEMA
from tickstrata.query.tiers import TRADE_SCHEMA

BATCH_ROWS: Final = 16_384
"""Rows kept as Python tuples before they become one record batch."""

Row = Sequence[Any]
RowCheck = Callable[[Row], "str | None"]


def trade_row_problem(row: Row) -> str | None:
    """(ts, ts_recv_ns, trade_id, price, size, side): why the row cannot be served, or None."""
    if row[0] is None or row[1] is None or not row[2] or row[5] is None:
        return "a time, the trade id or the side is null"
    return float_problem("price", row[3], positive=True) or float_problem("size", row[4])


def minute_row_problem(row: Row) -> str | None:
    """(ts, open, high, low, close, volume, quote_volume, trade_count, closed, source): why not, or None."""
    if row[0] is None or row[8] is None or row[9] is None:
        return "the open time, closed flag or source is null"
    for index, name in ((1, "open"), (2, "high"), (3, "low"), (4, "close")):
        if problem := float_problem(name, row[index], positive=True):
            return problem
    return float_problem("volume", row[5]) or float_problem("quote_volume", row[6], nullable=True)


class RowBatcher:
    """Collects checked rows of one schema into record batches of at most `batch_rows` rows."""

    def __init__(self, schema: pa.Schema, check: RowCheck, *, batch_rows: int = BATCH_ROWS) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be positive, got {batch_rows}")
        self.schema = schema
        self._check = check
        self._batch_rows = batch_rows
        self._rows: list[Row] = []
        self._batches: list[pa.RecordBatch] = []
        self.kept = 0

    def add(self, row: Row) -> str | None:
        """Keep `row` unless it fails the check; return the check's reason when it does."""
        problem = self._check(row)
        if problem is not None:
            return problem
        self._rows.append(row)
        self.kept += 1
        if len(self._rows) >= self._batch_rows:
            self._flush()
        return None

    def table(self) -> pa.Table:
        """Every kept row, in arrival order."""
        self._flush()
        return pa.Table.from_batches(self._batches, schema=self.schema)

    def _flush(self) -> None:
        if not self._rows:
            return
        columns = list(zip(*self._rows, strict=True))
        self._rows = []
        arrays = []
        for field, values in zip(self.schema, columns, strict=True):
            if pa.types.is_floating(field.type):
                # None → NaN: the tiers' convention for a null number (numpy turns None into nan for float64).
                arrays.append(pa.array(np.array(values, dtype=np.float64), type=field.type))
            else:
                arrays.append(pa.array(values, type=field.type))
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))


def trade_batcher(*, batch_rows: int = BATCH_ROWS) -> RowBatcher:
    return RowBatcher(TRADE_SCHEMA, trade_row_problem, batch_rows=batch_rows)


def minute_batcher(*, batch_rows: int = BATCH_ROWS) -> RowBatcher:
    return RowBatcher(MINUTE_SCHEMA, minute_row_problem, batch_rows=batch_rows)
