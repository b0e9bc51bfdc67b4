"""OHLCV invariants of one candle, and revisions and mismatches between two versions of it."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.common.events import Candle, CandleSource
from tickstrata.validator.rules import Violation, ViolationKind
from tickstrata.validator.rules_candles import (
    VALUE_FIELDS,
    candle_mismatch,
    candle_revision,
    check_candle,
    same_values,
)

from ._samples import MINUTE_NS, OPEN_TIME_NS, candle

D = Decimal


def details(violations: list[Violation]) -> list[str]:
    return [violation.detail for violation in violations]


def test_a_sound_candle_passes() -> None:
    assert check_candle(candle()) == []


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"high": D("64010.5")}, "high=64010.5 < close=64011.0"),
        ({"open": D("64030")}, "high=64020.0 < open=64030"),
        ({"open": D("63980")}, "low=63990.0 > open=63980"),
        ({"close": D("63989.99")}, "low=63990.0 > close=63989.99"),
        ({"volume": D("-1.5")}, "volume=-1.5 < 0"),
        ({"quote_volume": D("-0.01")}, "quote_volume=-0.01 < 0"),
        ({"trade_count": 3, "volume": D("0"), "quote_volume": D("0")}, "trade_count=3 but volume=0"),
        (
            {"trade_count": 0, "open": D(5), "high": D(5), "low": D(5), "close": D(5)},
            "trade_count=0 but volume=12.5",
        ),
        (
            {"trade_count": 0, "volume": D("0"), "quote_volume": D("0")},
            "candle without trades is not flat: open=64000.0 high=64020.0 low=63990.0 close=64011.0",
        ),
        (
            {"trade_count": None, "quote_volume": None, "volume": D("0.000")},
            "candle without trades is not flat: open=64000.0 high=64020.0 low=63990.0 close=64011.0",
        ),
    ],
)
def test_each_invariant_broken_alone_gives_one_violation_with_evidence(
    overrides: dict[str, object], detail: str
) -> None:
    bad = candle(**overrides)
    assert check_candle(bad) == [
        Violation(
            exchange="binance",
            symbol="BTC-USDT",
            kind=ViolationKind.OHLCV_INVARIANT,
            start_ns=OPEN_TIME_NS,
            end_ns=OPEN_TIME_NS + MINUTE_NS,
            detail=detail,
        )
    ]


def test_a_negative_trade_count_is_reported_although_the_constructor_refuses_it() -> None:
    bad = candle()
    msgspec.structs.force_setattr(bad, "trade_count", -1)
    assert details(check_candle(bad)) == ["trade_count=-1 < 0"]


def test_every_broken_invariant_of_one_candle_is_reported() -> None:
    bad = candle(open=D(10), high=D(5), low=D(15), close=D(20), volume=D(-1), quote_volume=D(-2), trade_count=3)
    violations = check_candle(bad)
    assert details(violations) == [
        "high=5 < open=10 and close=20",
        "low=15 > open=10",
        "high=5 < low=15",
        "volume=-1 < 0",
        "quote_volume=-2 < 0",
    ]
    assert {(v.kind, v.start_ns, v.end_ns) for v in violations} == {
        (ViolationKind.OHLCV_INVARIANT, OPEN_TIME_NS, OPEN_TIME_NS + MINUTE_NS)
    }


def test_an_inconsistent_zero_trade_candle_breaks_both_trade_invariants() -> None:
    bad = candle(trade_count=0, volume=D("0.5"))
    assert details(check_candle(bad)) == [
        "trade_count=0 but volume=0.5",
        "candle without trades is not flat: open=64000.0 high=64020.0 low=63990.0 close=64011.0",
    ]


@pytest.mark.parametrize(
    "overrides",
    [
        {"high": D("64011.0")},  # high == close
        {"high": D("64011.00")},  # equal in value, written with another precision
        {"close": D("64020.0"), "high": D("64020.0")},
        {"low": D("64000.0")},  # low == open
        {"open": D(1), "high": D(1), "low": D(1), "close": D(1)},  # flat, with trades
        {
            "open": D(1),
            "high": D(1),
            "low": D(1),
            "close": D(1),
            "volume": D(0),
            "quote_volume": D(0),
            "trade_count": 0,
        },
        {"quote_volume": None, "trade_count": None},  # Kraken and Coinbase report neither
        {"quote_volume": D(0)},
    ],
)
def test_equal_values_at_the_boundaries_pass(overrides: dict[str, object]) -> None:
    assert check_candle(candle(**overrides)) == []


def test_comparisons_are_exact_where_floats_would_see_equal_values() -> None:
    # float("0.30000000000000001") == 0.3: a float comparison would let this candle pass.
    bad = candle(open=D("0.3"), high=D("0.3"), low=D("0.3"), close=D("0.30000000000000001"))
    assert details(check_candle(bad)) == ["high=0.3 < close=0.30000000000000001"]


prices = st.decimals(min_value=D("0.00000001"), max_value=D(1_000_000), places=8)
sizes = st.decimals(min_value=D("0.00000001"), max_value=D(1000), places=8)


def candle_from_trades(trades: list[tuple[Decimal, Decimal]], previous_close: Decimal) -> Candle:
    """Build a candle the way a correct builder would; without trades it is flat at the previous close."""
    if not trades:
        return candle(
            **dict.fromkeys(("open", "high", "low", "close"), previous_close),
            volume=D(0),
            quote_volume=D(0),
            trade_count=0,
        )
    trade_prices = [price for price, _ in trades]
    return candle(
        open=trade_prices[0],
        high=max(trade_prices),
        low=min(trade_prices),
        close=trade_prices[-1],
        volume=sum((size for _, size in trades), D(0)),
        quote_volume=sum((price * size for price, size in trades), D(0)),
        trade_count=len(trades),
        source=CandleSource.BUILT,
    )


@given(trades=st.lists(st.tuples(prices, sizes), max_size=30), previous_close=prices)
def test_a_candle_built_from_any_trades_passes(trades: list[tuple[Decimal, Decimal]], previous_close: Decimal) -> None:
    assert check_candle(candle_from_trades(trades, previous_close)) == []


@given(trades=st.lists(st.tuples(prices, sizes), min_size=1, max_size=30), below=prices)
def test_a_high_below_open_or_close_always_fails(trades: list[tuple[Decimal, Decimal]], below: Decimal) -> None:
    sound = candle_from_trades(trades, D(1))
    high = max(sound.open, sound.close) - below
    bad = msgspec.structs.replace(sound, high=high)
    assert any(detail.startswith(f"high={high} < ") for detail in details(check_candle(bad)))


@given(trades=st.lists(st.tuples(prices, sizes), min_size=1, max_size=30), above=prices)
def test_a_low_above_open_or_close_always_fails(trades: list[tuple[Decimal, Decimal]], above: Decimal) -> None:
    sound = candle_from_trades(trades, D(1))
    low = min(sound.open, sound.close) + above
    bad = msgspec.structs.replace(sound, low=low)
    assert any(detail.startswith(f"low={low} > ") for detail in details(check_candle(bad)))


# --- revisions and mismatches ------------------------------------------------------------------------------------


def test_the_same_values_are_no_revision_even_written_with_another_precision() -> None:
    old = candle(source=CandleSource.BUILT)
    assert candle_revision(old, old) is None
    assert candle_revision(old, candle(close=D("64011.000"), source=CandleSource.REST, ts_recv_ns=1)) is None


def test_a_revision_names_every_changed_field_old_then_new() -> None:
    old = candle(source=CandleSource.BUILT)
    new = candle(close=D("64011.5"), volume=D("12.6"), trade_count=43, source=CandleSource.REST)
    assert candle_revision(old, new) == Violation(
        exchange="binance",
        symbol="BTC-USDT",
        kind=ViolationKind.CANDLE_REVISION,
        start_ns=OPEN_TIME_NS,
        end_ns=OPEN_TIME_NS + MINUTE_NS,
        detail="close 64011.0 → 64011.5; volume 12.5 → 12.6; trade_count 42 → 43 (built → rest)",
    )


def test_a_value_that_appears_or_disappears_is_a_revision_but_no_mismatch() -> None:
    built = candle(source=CandleSource.BUILT)
    venue = candle(quote_volume=None, trade_count=None, source=CandleSource.REST)
    revision = candle_revision(built, venue)
    assert revision is not None
    assert revision.detail == "quote_volume 800100.25 → absent; trade_count 42 → absent (built → rest)"
    assert candle_mismatch(built, venue) is None


def test_a_mismatch_is_a_revision_of_the_mismatch_kind() -> None:
    built = candle(source=CandleSource.BUILT)
    mismatch = candle_mismatch(built, candle(high=D("64025.0"), source=CandleSource.REST))
    assert mismatch is not None
    assert mismatch.kind is ViolationKind.CANDLE_MISMATCH
    assert mismatch.detail == "high 64020.0 → 64025.0 (built → rest)"


@pytest.mark.parametrize(
    "other",
    [
        {"open_time_ns": OPEN_TIME_NS + MINUTE_NS},
        {"interval_secs": 300},
        {"symbol": "ETH-USDT"},
        {"exchange": "okx"},
    ],
)
def test_comparing_two_different_candles_is_a_caller_error(other: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not the same candle"):
        candle_revision(candle(), candle(**other))


def test_only_the_two_change_kinds_are_accepted() -> None:
    with pytest.raises(ValueError, match="kind"):
        candle_revision(candle(), candle(), kind=ViolationKind.STALE)


small_values = st.sampled_from([D("1.0"), D("1.00"), D(2), D(3)])
optional_values = st.none() | small_values
value_overrides = st.fixed_dictionaries(
    {
        "open": small_values,
        "high": small_values,
        "low": small_values,
        "close": small_values,
        "volume": small_values,
        "quote_volume": optional_values,
        "trade_count": st.none() | st.integers(0, 2),
    }
)


@given(old_values=value_overrides, new_values=value_overrides)
def test_a_revision_names_exactly_the_fields_whose_values_differ(
    old_values: dict[str, object], new_values: dict[str, object]
) -> None:
    old, new = candle(**old_values), candle(**new_values)
    changed = {name for name in VALUE_FIELDS if old_values[name] != new_values[name]}
    revision = candle_revision(old, new)
    assert (revision is None) == (not changed) == same_values(old, new)
    if revision is not None:
        named = {change.split(" ")[0] for change in revision.detail.removesuffix(" (ws → ws)").split("; ")}
        assert named == changed
