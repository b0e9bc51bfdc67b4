"""Prices and sizes as exact scaled integers (the warm and cold tiers) and back to the hot tier's doubles. Pure.

A value on a venue's grid (a multiple of the tick or lot size) is ``k / 10**scale`` for an integer ``k``; the warm
and cold tiers store ``k``. The hot tier holds the double nearest to the venue's decimal, so ``k`` is found by
rounding ``value * 10**scale``, and the one rule both directions obey is the round trip: ``from_scaled`` of what
``to_scaled`` returns is the same double, bit for bit, or ``to_scaled`` refuses (``OffGridError``) instead of
rounding a value that is not on the grid. Below 2**51 units (22.5 million BTC at scale 8) ``k`` is also the venue's
exact integer; above, it is the integer nearest to the double, which is all the double knew.

The tierer scales on the way out of the hot tier; the query service and readers of Parquet unscale with
``from_scaled``, the one formula (an int64 to double, divided by an exactly representable power of ten).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tickstrata.common.events import MAX_DECIMALS

_INT64_LIMIT: Final = float(2**63)
_POWERS: Final = np.array([10.0**exponent for exponent in range(MAX_DECIMALS + 1)])  # exact up to 10**22


class OffGridError(ValueError):
    """A value that is not a multiple of ``10**-scale`` (or too large for an int64 at that scale)."""

    def __init__(self, index: int, value: float, scale: int) -> None:
        super().__init__(f"row {index}: {value!r} is not a whole number of 1e-{scale} units within int64")
        self.index = index
        self.value = value
        self.scale = scale


def scale_of_increment(increment: Decimal) -> int:
    """The decimals a grid step needs: ``0.10`` → 1, ``0.00001000`` → 5, ``1`` or ``10`` → 0."""
    if not increment.is_finite() or increment <= 0:
        raise ValueError(f"an increment must be a positive finite decimal, got {increment}")
    exponent = increment.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite, checked above
    decimals = max(0, -exponent)
    if decimals > MAX_DECIMALS:
        raise ValueError(f"increment {increment} needs {decimals} decimals, more than {MAX_DECIMALS}")
    return decimals


def _powers(scales: npt.ArrayLike) -> npt.NDArray[np.float64]:
    array = np.asarray(scales)
    if array.size and (int(array.min()) < 0 or int(array.max()) > MAX_DECIMALS):
        raise ValueError(f"scales must be within [0, {MAX_DECIMALS}]")
    powers: npt.NDArray[np.float64] = _POWERS[array.astype(np.intp)]
    return powers


def to_scaled(values: npt.ArrayLike, scales: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """``values * 10**scales`` as int64 (scales per row or one for all); raise ``OffGridError`` for the first value
    whose integer would not read back as the same double."""
    doubles = np.asarray(values, dtype=np.float64)
    row_scales = np.broadcast_to(np.asarray(scales), doubles.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.rint(doubles * _powers(row_scales))
        fits = np.abs(rounded) < _INT64_LIMIT  # False for NaN and infinities too
        scaled = np.where(fits, rounded, 0.0).astype(np.int64)
    good = fits & (from_scaled(scaled, row_scales) == doubles)
    if not good.all():
        index = int(np.argmin(good))
        raise OffGridError(index, float(doubles[index]), int(row_scales[index]))
    return scaled


def from_scaled(scaled: npt.ArrayLike, scales: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The doubles the integers stand for: ``k / 10**scale``, correctly rounded like the hot tier's value."""
    integers: npt.NDArray[Any] = np.asarray(scaled, dtype=np.int64)
    result: npt.NDArray[np.float64] = integers.astype(np.float64) / _powers(scales)
    return result


def smallest_exact_scale(values: npt.ArrayLike) -> int:
    """The fewest decimals that hold every value exactly: the scale of data whose instrument spec is unknown."""
    doubles = np.asarray(values, dtype=np.float64)
    for scale in range(MAX_DECIMALS + 1):
        try:
            to_scaled(doubles, scale)
        except OffGridError:
            continue
        return scale
    raise OffGridError(0, float(doubles[0]) if doubles.size else 0.0, MAX_DECIMALS)
