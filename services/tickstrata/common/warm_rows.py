"""Hot rows ↔ warm rows as Arrow tables: prices and sizes scaled exactly, book sides split into arrays. Pure.

The hot shape is what QuestDB returns for a ``TableSpec`` (its column names; ``ts`` a nanosecond timestamp, book
sides ``list<list<double>>`` as ``[[prices], [sizes]]``, an empty side ``[]``). The warm shape is
``tickstrata.common.warm_schema``'s columns. ``to_warm`` takes the scales per row (the tierer finds them in the
instruments table); ``from_warm`` needs none (every warm row carries its own), and ``from_warm(to_warm(hot))``
equals ``hot`` value for value, which is how a move verifies what it wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from tickstrata.common.questdb_schema import Kind, Scale
from tickstrata.common.scaled import from_scaled, to_scaled
from tickstrata.common.warm_schema import LEVEL_PART_INDEX, LEVEL_PARTS, SCALE_COLUMN_OF, WarmColumn, WarmTable

_TIMESTAMP: Final = pa.timestamp("ns", tz="UTC")
_ARROW_TYPES: Final = {
    Kind.SYMBOL: pa.string(),
    Kind.ID: pa.string(),
    Kind.DOUBLE: pa.float64(),
    Kind.DOUBLE_OR_NULL: pa.float64(),
    Kind.LONG: pa.int64(),
    Kind.LONG_OR_NULL: pa.int64(),
    Kind.POSITIVE_INT: pa.uint32(),
    Kind.BOOLEAN: pa.bool_(),
}
_LEVELS_TYPE: Final = pa.list_(pa.list_(pa.float64()))


class ScaleError(ValueError):
    """A value that cannot be stored exactly at its instrument's scale; names the table, column and row."""


def to_warm(
    table: WarmTable,
    hot: pa.Table,
    scales: Mapping[Scale, npt.ArrayLike],
) -> pa.Table:
    """The warm rows of ``hot`` (one row each, same order); ``scales[Scale.PRICE]`` etc. per row or one for all."""
    rows = hot.num_rows
    per_row = {scale: np.broadcast_to(np.asarray(value, dtype=np.uint8), (rows,)) for scale, value in scales.items()}
    arrays: dict[str, pa.Array] = {}
    for column in table.columns:
        arrays[column.name] = _warm_array(table, column, hot, per_row)
    return pa.table(arrays)


def _warm_array(
    table: WarmTable, column: WarmColumn, hot: pa.Table, per_row: dict[Scale, npt.NDArray[np.uint8]]
) -> pa.Array:
    source = column.source
    if source is None:  # a scale column
        [scale] = [scale for scale, name in SCALE_COLUMN_OF.items() if name == column.name]
        return pa.array(_scales(per_row, scale, table.name), type=pa.uint8())
    values = hot.column(source.name).combine_chunks()
    try:
        if source.kind is Kind.TIMESTAMP:
            return values.cast(_TIMESTAMP)
        if source.kind is Kind.LEVELS:
            assert column.scale is not None
            part = LEVEL_PART_INDEX[column.scale]
            return _scaled_level_part(values.cast(_LEVELS_TYPE), part, _scales(per_row, column.scale, table.name))
        if column.scale is not None:
            doubles = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
            return pa.array(to_scaled(doubles, _scales(per_row, column.scale, table.name)), type=pa.int64())
        return values.cast(_ARROW_TYPES[source.kind])
    except ValueError as error:  # OffGridError, or a bad cast
        raise ScaleError(f"{table.name}.{column.name}: {error}") from error


def _scales(per_row: dict[Scale, npt.NDArray[np.uint8]], scale: Scale, table: str) -> npt.NDArray[np.uint8]:
    if scale not in per_row:
        raise ScaleError(f"{table}: no {scale.value} scale given for its scaled columns")
    return per_row[scale]


def _scaled_level_part(sides: pa.ListArray, part: int, row_scales: npt.NDArray[np.uint8]) -> pa.Array:
    """Part ``part`` (0 prices, 1 sizes) of each side, scaled by its row's scale; an empty side gives ``[]``."""
    outer_lengths = pc.list_value_length(sides).fill_null(0).to_numpy(zero_copy_only=False)
    # Pick inner list `part` of each non-empty side: the flattened inner lists, at offsets of the outer ones.
    inner = sides.flatten()
    starts = sides.offsets.to_numpy()[:-1]
    picked = pa.array([], type=pa.list_(pa.float64()))
    lengths = np.zeros(len(sides), dtype=np.int64)
    if len(inner):
        has_part = outer_lengths > part
        picked = inner.take(pa.array(starts[has_part] + part))
        lengths[has_part] = pc.list_value_length(picked).fill_null(0).to_numpy(zero_copy_only=False)
    values = picked.flatten().to_numpy(zero_copy_only=False) if len(picked) else np.array([], dtype=np.float64)
    scaled = to_scaled(values, np.repeat(row_scales, lengths))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), pa.array(scaled, type=pa.int64()))


def from_warm(table: WarmTable, warm: pa.Table) -> pa.Table:
    """The hot rows ``warm`` stands for, with the hot tier's column names and values (doubles bit for bit)."""
    arrays: dict[str, pa.Array] = {}
    scale_of = {
        scale: warm.column(name).to_numpy() for scale, name in SCALE_COLUMN_OF.items() if name in warm.schema.names
    }
    for spec_column in table.spec.columns:
        if spec_column.kind is Kind.LEVELS:
            parts = [_unscaled_level_part(warm.column(f"{spec_column.name}_{name}").combine_chunks(), scale_of[scale])
                     for name, scale in LEVEL_PARTS]  # fmt: skip
            arrays[spec_column.name] = _join_sides(*parts)
        elif spec_column.scale is not None:
            scaled = warm.column(spec_column.name).to_numpy()
            arrays[spec_column.name] = pa.array(from_scaled(scaled, scale_of[spec_column.scale]), type=pa.float64())
        else:
            arrays[spec_column.name] = warm.column(spec_column.name).combine_chunks()
    return pa.table(arrays)


def _unscaled_level_part(scaled: pa.ListArray, row_scales: npt.NDArray[np.uint8]) -> pa.ListArray:
    lengths = pc.list_value_length(scaled).fill_null(0).to_numpy(zero_copy_only=False)
    values = from_scaled(scaled.flatten().to_numpy(zero_copy_only=False), np.repeat(row_scales, lengths))
    return pa.ListArray.from_arrays(scaled.offsets, pa.array(values, type=pa.float64()))


def _join_sides(prices: pa.ListArray, sizes: pa.ListArray) -> pa.Array:
    """``[[prices], [sizes]]`` per row, or ``[]`` for an empty side, as the hot tier shows it."""
    rows = []
    for row_prices, row_sizes in zip(prices.to_pylist(), sizes.to_pylist(), strict=True):
        rows.append([row_prices, row_sizes] if row_prices else [])
    return pa.array(rows, type=_LEVELS_TYPE)
