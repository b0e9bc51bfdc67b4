"""The Violation record, staleness, and cross-venue price deviation."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.quality.v1 import quality_service_pb2
from tickstrata.validator.rules import Violation, ViolationKind, price_deviations, stale_violation

TS_NS = 1_717_000_000_000_000_000
SECOND_NS = 1_000_000_000


def test_every_violation_kind_is_a_quality_v1_kind() -> None:
    # The servicer maps kinds by name; a kind the proto lacks could never be served.
    proto_names = set(quality_service_pb2.ViolationKind.keys())
    assert {f"VIOLATION_KIND_{kind.value.upper()}" for kind in ViolationKind} <= proto_names


def test_violation_is_frozen_and_refuses_an_empty_window() -> None:
    violation = Violation("binance", "BTC-USDT", ViolationKind.STALE, 10, 11, "quiet")
    with pytest.raises(dataclasses.FrozenInstanceError):
        violation.detail = "changed"  # type: ignore[misc]
    with pytest.raises(ValueError, match="empty"):
        Violation("binance", "BTC-USDT", ViolationKind.STALE, 10, 10, "quiet")


# --- staleness ---------------------------------------------------------------------------------------------------


def test_quiet_for_exactly_the_threshold_is_not_stale() -> None:
    assert stale_violation("binance", "BTC-USDT", TS_NS, TS_NS + 60 * SECOND_NS, 60) is None


def test_quiet_one_nanosecond_longer_than_the_threshold_is_stale() -> None:
    violation = stale_violation("binance", "BTC-USDT", TS_NS, TS_NS + 60 * SECOND_NS + 1, 60)
    assert violation == Violation(
        exchange="binance",
        symbol="BTC-USDT",
        kind=ViolationKind.STALE,
        start_ns=TS_NS,
        end_ns=TS_NS + 60 * SECOND_NS + 1,
        detail="no event for 60.000000001 s, over the 60 s threshold",
    )


def test_a_fractional_threshold_is_honoured_to_the_nanosecond() -> None:
    assert stale_violation("okx", "ETH-USDT", TS_NS, TS_NS + 2_500_000_000, 2.5) is None
    assert stale_violation("okx", "ETH-USDT", TS_NS, TS_NS + 2_500_000_001, 2.5) is not None


def test_a_clock_behind_the_last_event_is_not_staleness() -> None:
    assert stale_violation("binance", "BTC-USDT", TS_NS, TS_NS - SECOND_NS, 1) is None


@pytest.mark.parametrize("threshold_secs", [0, -1, -0.5])
def test_a_threshold_that_is_not_positive_is_a_configuration_error(threshold_secs: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        stale_violation("binance", "BTC-USDT", TS_NS, TS_NS + SECOND_NS, threshold_secs)


# --- cross-venue price deviation ---------------------------------------------------------------------------------

ONE_PERCENT = Decimal("0.01")


def deviations(prices: dict[str, str], threshold: Decimal = ONE_PERCENT) -> list[Violation]:
    return price_deviations("BTC-USDT", {venue: Decimal(price) for venue, price in prices.items()}, threshold, TS_NS)


def test_one_outlier_among_three_is_flagged_alone_with_its_evidence() -> None:
    assert deviations({"binance": "102.31", "okx": "100", "bybit": "100"}) == [
        Violation(
            exchange="binance",
            symbol="BTC-USDT",
            kind=ViolationKind.PRICE_DEVIATION,
            start_ns=TS_NS,
            end_ns=TS_NS + 1,
            detail="binance 2.310000% above the median of 2 venues (102.31 vs 100)",
        )
    ]


def test_an_outlier_below_is_named_below() -> None:
    (violation,) = deviations({"binance": "97.5", "okx": "100", "bybit": "100"})
    assert violation.detail == "binance 2.500000% below the median of 2 venues (97.5 vs 100)"


def test_with_an_even_number_of_others_the_nearer_middle_price_is_the_reference() -> None:
    # Against the midpoint (105 for okx and bybit) the two agreeing venues would be flagged too.
    (violation,) = deviations({"binance": "100", "okx": "101", "bybit": "110"}, Decimal("0.05"))
    assert violation.exchange == "bybit"
    assert violation.detail == (
        "bybit 8.910891% above the median of 2 venues (110 vs 101); their middle prices are 100 and 101"
    )


def test_with_four_venues_the_median_of_the_other_three_is_the_reference() -> None:
    (violation,) = deviations({"binance": "100", "okx": "100.5", "bybit": "99.8", "kraken": "90"})
    assert violation.exchange == "kraken"
    assert violation.detail == "kraken 10.000000% below the median of 3 venues (90 vs 100)"


def test_a_wide_spread_flags_both_ends_and_spares_the_middle() -> None:
    flagged = [violation.exchange for violation in deviations({"a": "100", "b": "103", "c": "106"}, Decimal("0.02"))]
    assert flagged == ["a", "c"]


def test_a_deviation_equal_to_the_threshold_passes_and_the_least_bit_more_fails() -> None:
    assert deviations({"binance": "101", "okx": "100", "bybit": "100"}) == []
    # As floats both prices are 101.0: only an exact comparison tells them apart.
    assert len(deviations({"binance": "101.0000000000000000000000000001", "okx": "100", "bybit": "100"})) == 1


def test_two_venues_are_flagged_together_in_one_violation_naming_both() -> None:
    assert deviations({"okx": "103", "binance": "100"}, Decimal("0.02")) == [
        Violation(
            exchange="binance",  # the alphabetically first of the pair
            symbol="BTC-USDT",
            kind=ViolationKind.PRICE_DEVIATION,
            start_ns=TS_NS,
            end_ns=TS_NS + 1,
            detail="okx 2.955665% above binance, relative to their mean (103 vs 100)",
        )
    ]


def test_two_venues_differing_by_exactly_the_threshold_of_their_mean_pass() -> None:
    assert deviations({"binance": "99", "okx": "101"}, Decimal("0.02")) == []
    assert len(deviations({"binance": "99", "okx": "101.000000001"}, Decimal("0.02"))) == 1


@pytest.mark.parametrize(
    "prices",
    [
        {},
        {"binance": "100"},
        {"binance": "100", "okx": "0", "bybit": "-5"},
        {"binance": "100", "okx": "NaN", "bybit": "Infinity"},
    ],
)
def test_fewer_than_two_usable_prices_report_nothing(prices: dict[str, str]) -> None:
    assert deviations(prices, Decimal(0)) == []


def test_prices_that_are_not_positive_do_not_count_as_venues() -> None:
    # With okx's zero ignored, two venues remain, and the pair rule applies.
    (violation,) = deviations({"binance": "100", "bybit": "110", "okx": "0"})
    assert violation.detail.startswith("bybit 9.523810% above binance")


@pytest.mark.parametrize("threshold", [Decimal(-1), Decimal("NaN")])
def test_a_bad_threshold_is_a_configuration_error(threshold: Decimal) -> None:
    with pytest.raises(ValueError, match="threshold_fraction"):
        deviations({"binance": "100", "okx": "101"}, threshold)


venue_names = st.sampled_from(["binance", "okx", "bybit", "kraken", "coinbase", "bitstamp", "gateio"])
any_prices = st.dictionaries(venue_names, st.decimals(allow_nan=True, allow_infinity=True), max_size=7)


@given(prices=any_prices, threshold=st.decimals(min_value=0, max_value=1, places=4))
def test_any_prices_give_violations_only_for_usable_venues(prices: dict[str, Decimal], threshold: Decimal) -> None:
    violations = price_deviations("BTC-USDT", prices, threshold, TS_NS)
    usable = {venue for venue, price in prices.items() if price.is_finite() and price > 0}
    assert {violation.exchange for violation in violations} <= usable
    assert all(violation.kind is ViolationKind.PRICE_DEVIATION for violation in violations)
    if len(usable) == 2:
        assert len(violations) <= 1


@given(
    base=st.decimals(min_value=1, max_value=100_000, places=2),
    offsets_bp=st.lists(st.integers(0, 4), min_size=2, max_size=6),
    outlier_factor=st.one_of(
        st.decimals(min_value=Decimal("1.05"), max_value=10, places=4),
        st.decimals(min_value=Decimal("0.1"), max_value=Decimal("0.95"), places=4),
    ),
)
def test_one_outlier_among_agreeing_venues_is_always_flagged_alone(
    base: Decimal, offsets_bp: list[int], outlier_factor: Decimal
) -> None:
    # The agreeing venues lie within 4 basis points of each other, far inside the 1% threshold; the outlier is
    # at least 5% away from all of them.
    prices = {f"venue{index}": base + base * offset / 10_000 for index, offset in enumerate(offsets_bp)}
    prices["outlier"] = base * outlier_factor
    violations = price_deviations("BTC-USDT", prices, ONE_PERCENT, TS_NS)
    assert [violation.exchange for violation in violations] == ["outlier"]


@given(
    prices=st.dictionaries(venue_names, st.decimals(min_value=1, max_value=1000, places=3), max_size=7),
    threshold=st.decimals(min_value=0, max_value=Decimal("0.2"), places=3),
    exponent=st.integers(-8, 8),
)
def test_the_flagged_venues_do_not_depend_on_the_unit_of_price(
    prices: dict[str, Decimal], threshold: Decimal, exponent: int
) -> None:
    # Scaling every price by a power of ten is exact in Decimal, and the rule is relative: nothing may change.
    scaled = {venue: price.scaleb(exponent) for venue, price in prices.items()}
    flagged = [violation.exchange for violation in price_deviations("BTC-USDT", prices, threshold, TS_NS)]
    flagged_scaled = [violation.exchange for violation in price_deviations("BTC-USDT", scaled, threshold, TS_NS)]
    assert flagged == flagged_scaled
