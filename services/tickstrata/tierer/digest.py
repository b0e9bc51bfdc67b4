"""A content digest of a set of rows, the same whichever tier they were read from. Pure.

A move proves its copy by reading it back from the destination and comparing digests: equal row counts are not
enough (a column exported as nulls, a price rounded on the way, a row replaced by its neighbour all keep the count).
Rows are first put in one canonical form (the hot tier's columns and order; timestamps as int64 nanoseconds;
strings plain, not dictionary-encoded; sorted by instrument, time and the rest of the dedup key), then each
column's values, validity and list offsets are hashed from their Arrow buffers, so a digest costs a pass over the
memory rather than a Python object per value.
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickstrata.common.questdb_schema import Kind, TableSpec

_LEVELS: Final = pa.list_(pa.list_(pa.float64()))
_CANONICAL: Final = {
    Kind.TIMESTAMP: pa.int64(),
    Kind.SYMBOL: pa.large_string(),
    Kind.ID: pa.large_string(),
    Kind.TEXT: pa.large_string(),
    Kind.DECIMAL_TEXT: pa.large_string(),
    Kind.DOUBLE: pa.float64(),
    Kind.DOUBLE_OR_NULL: pa.float64(),
    Kind.LONG: pa.int64(),
    Kind.LONG_OR_NULL: pa.int64(),
    Kind.POSITIVE_INT: pa.int64(),
    Kind.DECIMALS: pa.int64(),
    Kind.BOOLEAN: pa.bool_(),
    Kind.LEVELS: _LEVELS,
}


def canonical(spec: TableSpec, rows: pa.Table) -> pa.Table:
    """``rows`` (any tier's read, the spec's column names) in the canonical types and order."""
    arrays = {}
    for column in spec.columns:
        values = rows.column(column.name).combine_chunks()
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        if column.kind is Kind.TIMESTAMP and pa.types.is_timestamp(values.type):
            values = values.cast(pa.timestamp("ns", tz=values.type.tz)).cast(pa.int64())
        arrays[column.name] = values.cast(_CANONICAL[column.kind])
    table = pa.table(arrays)
    return table.sort_by([(key, "ascending") for key in spec.instrument_time_order])


def digest(table: pa.Table) -> str:
    """sha256 over every column of a canonical table: names, values, nulls and list structure."""
    hasher = hashlib.sha256()
    hasher.update(str(table.num_rows).encode())
    for name in table.column_names:
        hasher.update(name.encode() + b"\x00")
        _hash_array(hasher, table.column(name).combine_chunks())
    return hasher.hexdigest()


def _hash_array(hasher: hashlib._Hash, array: pa.Array) -> None:
    validity = np.asarray(array.is_valid(), dtype=np.bool_) if array.null_count else None
    hasher.update(b"nulls" + (validity.tobytes() if validity is not None else b"none"))
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        offsets = np.asarray(array.offsets, dtype=np.int64)
        hasher.update(b"offsets" + (offsets - offsets[0]).tobytes())
        _hash_array(hasher, array.flatten())
    elif pa.types.is_large_string(array.type):
        filled = array.fill_null("") if array.null_count else array
        _, offsets_buffer, data = filled.buffers()
        assert offsets_buffer is not None
        offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[filled.offset : filled.offset + len(filled) + 1]
        hasher.update(b"offsets" + (offsets - offsets[0]).tobytes())
        if data is not None and len(offsets):
            hasher.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
    else:
        filled = array.fill_null(False if pa.types.is_boolean(array.type) else 0) if array.null_count else array
        hasher.update(np.asarray(filled.to_numpy(zero_copy_only=False)).tobytes())


def column_sum(table: pa.Table, name: str) -> float:
    """The sum of one numeric column (the catalogued volume), 0.0 for no rows."""
    total = pc.sum(table.column(name)).as_py()
    return float(total or 0.0)
