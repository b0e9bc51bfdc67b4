"""Instrument registry: the symbol mapping both ways, and prices formatted back to the venue's exact strings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.collector.test_binance_replay import adapter
from tickstrata.collector.instruments import (
    Instrument,
    InstrumentKind,
    InstrumentRegistry,
    decimals_of,
    format_decimal,
)


def _btc(exchange: str = "binance", symbol: str = "BTC-USDT", venue_symbol: str = "BTCUSDT") -> Instrument:
    return Instrument(
        exchange,
        symbol,
        venue_symbol,
        "BTC",
        "USDT",
        InstrumentKind.SPOT,
        Decimal("0.01000000"),
        Decimal("0.00001000"),
        8,
        8,
        "TRADING",
    )


def test_mapping_both_ways() -> None:
    registry = InstrumentRegistry("binance", [_btc()])
    assert registry.symbol_for("BTCUSDT") == "BTC-USDT"
    assert registry.venue_symbol_for("BTC-USDT") == "BTCUSDT"
    assert registry.symbol_for("DOGEUSDT") is None  # unknown venue symbol → None, never a KeyError
    assert registry.venue_symbol_for("DOGE-USDT") is None
    assert registry.by_venue_symbol("BTCUSDT") == _btc()
    assert "BTC-USDT" in registry
    assert len(registry) == 1
    with pytest.raises(KeyError, match="DOGE-USDT"):
        registry.require("DOGE-USDT")


def test_the_spec_the_tiers_keep_carries_the_precision_and_the_increments_as_written() -> None:
    spec = _btc().spec(loaded_ns=1_717_000_000_000_000_000)
    assert (spec.exchange, spec.symbol, spec.price_decimals, spec.size_decimals) == ("binance", "BTC-USDT", 8, 8)
    assert (str(spec.tick_size), str(spec.lot_size)) == ("0.01000000", "0.00001000")
    assert spec.ts_event_ns == spec.ts_recv_ns == 1_717_000_000_000_000_000


def test_collisions_and_foreign_instruments_are_refused() -> None:
    with pytest.raises(ValueError, match="both map to BTC-USDT"):
        InstrumentRegistry("binance", [_btc(), _btc(venue_symbol="XBTUSDT")])
    with pytest.raises(ValueError, match="belongs to binance"):
        InstrumentRegistry("binance-usdm", [_btc()])


def test_replace_swaps_the_whole_set() -> None:
    registry = InstrumentRegistry("binance", [_btc()])
    registry.replace([_btc(symbol="ETH-USDT", venue_symbol="ETHUSDT")])
    assert registry.symbol_for("BTCUSDT") is None
    assert registry.symbol_for("ETHUSDT") == "ETH-USDT"


def test_instrument_validates_itself() -> None:
    with pytest.raises(ValueError, match="symbol"):
        _btc(symbol="btcusdt")
    with pytest.raises(ValueError, match="price_decimals"):
        Instrument(
            "binance",
            "BTC-USDT",
            "BTCUSDT",
            "BTC",
            "USDT",
            InstrumentKind.SPOT,
            Decimal(1),
            Decimal(1),
            19,
            8,
            "TRADING",
        )


def test_spot_prices_format_back_with_eight_decimals() -> None:
    registry = adapter("binance").registry
    assert registry.format_price("BTC-USDT", 64123.4) == "64123.40000000"  # a DOUBLE from the hot tier
    assert registry.format_price("BTC-USDT", Decimal("87654.32000000")) == "87654.32000000"
    assert registry.format_price("BTC-USDT", 0.1 + 0.2) == "0.30000000"  # float noise is removed, not printed
    assert registry.format_price("BTC-USDT", 87654) == "87654.00000000"
    assert registry.format_size("BTC-USDT", 0.0012) == "0.00120000"
    assert registry.format_size("BTC-USDT", 0.0) == "0.00000000"


def test_usdm_prices_format_with_the_tick_decimals() -> None:
    registry = adapter("binance-usdm").registry
    assert registry.format_price("BTC-USDT-PERP", 87701.4) == "87701.40"
    assert registry.format_size("BTC-USDT-PERP", 0.5) == "0.500"
    assert registry.format_price("1000PEPE-USDT-PERP", 0.0123456) == "0.0123456"
    assert registry.format_size("1000PEPE-USDT-PERP", 1500.0) == "1500"


def test_format_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        format_decimal(float("nan"), 8)
    with pytest.raises(TypeError):
        format_decimal(True, 8)
    assert decimals_of(Decimal("0.10")) == 2
    assert decimals_of(Decimal("1")) == 0
    assert decimals_of(Decimal("1E+1")) == 0


@given(st.integers(min_value=1, max_value=10**15 - 1), st.integers(min_value=0, max_value=8))
def test_recorded_strings_survive_a_double_round_trip(units: int, decimals: int) -> None:
    """Any venue string with <= 15 significant digits, stored as a DOUBLE, formats back to the same string."""
    written = f"{Decimal(units).scaleb(-decimals):f}"
    assert format_decimal(float(written), decimals) == written
