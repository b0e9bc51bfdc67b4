"""Price, size and volume columns from stored doubles to the request's `NumericEncoding`. Pure: no I/O.

The hot tier stores prices as DOUBLE; a venue string with at most 15 significant digits parses to the double
nearest to it, and the shortest decimal that parses back to that double is the venue's string again. So the
exact decimal of a column is found by the smallest scale `s` at which every value `v` satisfies
`round(v * 10**s) / 10**s == v` in double arithmetic (the integer `round(v * 10**s)` is exact while it stays
below 2**53). That scale is computed over the whole result, so a response stream has one scale per column as the
contract requires, and the unscaled integers become Arrow decimal128 without a Python object per value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from tickstrata.marketdata.v1 import market_data_pb2 as md

MAX_SCALE: Final = 18
_EXACT_INT_LIMIT: Final = float(2**53)

FloatArray = npt.NDArray[np.float64]


def exact_scale(values: FloatArray) -> int:
    """The smallest number of decimals that represents every finite value exactly (NaN = null is ignored)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0
    for scale in range(MAX_SCALE + 1):
        factor = 10.0**scale
        scaled = finite * factor
        if np.max(np.abs(scaled)) >= _EXACT_INT_LIMIT:
            break
        if np.array_equal(np.round(scaled) / factor, finite):
            return scale
    # Beyond what doubles hold as exact integers: fall back to each value's shortest repr.
    return min(MAX_SCALE, max(_repr_scale(float(v)) for v in finite))


def _repr_scale(value: float) -> int:
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _decimal_array(values: FloatArray, scale: int) -> pa.Array:
    nulls = ~np.isfinite(values)
    factor = 10.0**scale
    scaled = np.where(nulls, 0.0, values) * factor
    arrow_type = pa.decimal128(38, scale)
    if scaled.size and np.max(np.abs(scaled)) >= _EXACT_INT_LIMIT:
        # Rare (huge volumes at a fine scale): exact through Decimal, one object per value.
        quantum = Decimal(1).scaleb(-scale)
        exact = [
            None if null else Decimal(repr(float(v))).quantize(quantum) for v, null in zip(values, nulls, strict=True)
        ]
        return pa.array(exact, type=arrow_type)
    unscaled = np.round(scaled).astype(np.int64)
    # decimal128 is a 16-byte little-endian two's complement integer: the low word, then the sign extension.
    words = np.empty((unscaled.size, 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = np.where(unscaled < 0, -1, 0)
    validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
    return pa.Array.from_buffers(arrow_type, unscaled.size, [validity, pa.py_buffer(words.tobytes())], null_count=-1)


def _string_array(values: FloatArray, scale: int) -> pa.Array:
    decimals = _decimal_array(values, scale)
    # Plain notation at the column's scale, e.g. "64123.45000000" trimmed to the scale found ("64123.45").
    return pa.array([None if d is None else format(d, "f") for d in decimals.to_pylist()], type=pa.string())


def encode_column(values: FloatArray, encoding: int, scale: int) -> pa.Array:
    """One column in the requested encoding; NaN is null."""
    if encoding == md.NUMERIC_ENCODING_FLOAT64:
        return pa.array(values, type=pa.float64(), from_pandas=True)
    if encoding == md.NUMERIC_ENCODING_STRING:
        return _string_array(values, scale)
    return _decimal_array(values, scale)


def resolve_encoding(encoding: int) -> int:
    """UNSPECIFIED means the server default, DECIMAL."""
    return md.NUMERIC_ENCODING_DECIMAL if encoding == md.NUMERIC_ENCODING_UNSPECIFIED else encoding
