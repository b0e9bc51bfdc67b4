"""Scaled integers: exact for values on the grid, refused off it, and always the same double back."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.common.scaled import OffGridError, from_scaled, scale_of_increment, smallest_exact_scale, to_scaled


@pytest.mark.parametrize(
    ("increment", "decimals"),
    [("0.10", 1), ("0.01000000", 2), ("0.00001000", 5), ("1", 0), ("10", 0), ("1E-8", 8), ("0.5", 1)],
)
def test_the_scale_of_an_increment_is_the_decimals_its_grid_needs(increment: str, decimals: int) -> None:
    assert scale_of_increment(Decimal(increment)) == decimals


@pytest.mark.parametrize("increment", ["0", "-0.1", "NaN", "1E-19"])
def test_an_increment_that_is_not_a_positive_grid_step_within_18_decimals_is_refused(increment: str) -> None:
    with pytest.raises(ValueError, match="increment"):
        scale_of_increment(Decimal(increment))


def test_venue_values_become_their_exact_integers() -> None:
    prices = [64123.4, 64123.5, 0.00001234, 99999.99]
    assert to_scaled(prices, [1, 1, 8, 2]).tolist() == [641234, 641235, 1234, 9999999]
    assert to_scaled([0.1, 0.2, 0.3], 1).tolist() == [1, 2, 3]  # one scale for all rows


@pytest.mark.parametrize(
    ("value", "scale"),
    [(0.15, 1), (64123.45, 1), (1e-9, 8), (float("nan"), 2), (float("inf"), 0), (1e19, 0), (9.3e10, 8)],
)
def test_a_value_off_the_grid_or_beyond_int64_is_refused_not_rounded(value: float, scale: int) -> None:
    with pytest.raises(OffGridError) as raised:
        to_scaled([1.0, value], scale)
    assert raised.value.index == 1
    assert raised.value.scale == scale


@given(
    units=st.lists(st.integers(-(2**51), 2**51), min_size=1, max_size=20),
    scale=st.integers(0, 18),
)
def test_a_venue_decimal_read_as_the_nearest_double_scales_to_its_own_integer(units: list[int], scale: int) -> None:
    # What the hot tier holds is float(Decimal(text)): the nearest double to the venue's decimal.
    doubles = [float(Decimal(unit).scaleb(-scale)) for unit in units]
    scaled = to_scaled(doubles, scale)
    assert scaled.tolist() == units
    assert from_scaled(scaled, scale).tolist() == doubles  # bit for bit


@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_any_double_round_trips_at_the_scale_found_for_it_or_is_refused(value: float) -> None:
    try:
        scale = smallest_exact_scale([value])
    except OffGridError:
        return  # e.g. 1e-30: no scale within 18 decimals holds it, and nothing is stored rounded
    assert from_scaled(to_scaled([value], scale), scale)[0] == value


def test_the_smallest_exact_scale_is_the_most_decimals_any_value_needs() -> None:
    assert smallest_exact_scale([1.0, 12.5, 0.001]) == 3
    assert smallest_exact_scale(np.array([100.0, 2e6])) == 0
    assert smallest_exact_scale([]) == 0


def test_scales_outside_0_to_18_are_refused() -> None:
    with pytest.raises(ValueError, match="scales must be within"):
        to_scaled([1.0], 19)
    with pytest.raises(ValueError, match="scales must be within"):
        from_scaled([1], [-1])
