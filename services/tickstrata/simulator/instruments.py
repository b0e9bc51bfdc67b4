"""The simulated instruments: realistic price levels, tick and lot sizes per venue, and exact formatting.

Prices and quantities live as integers (ticks and steps) inside the model so arithmetic is exact and fast; they
become decimal strings only when a frame is written, through the formatting rules of each venue: spot writes
every price and quantity with 8 decimals (`"64123.45000000"`), USD-M with the instrument's own precision
(`"64123.40"`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final


class Venue(StrEnum):
    SPOT = "binance"
    USDM = "binance-usdm"


SPOT_DECIMALS: Final = 8


@dataclass(frozen=True, slots=True)
class Instrument:
    """One symbol on one venue. Prices are counted in ticks, quantities in lot steps.

    `price_decimals` is the venue's price precision; a tick may span several of its units (USD-M BTCUSDT quotes
    two decimals but moves in 0.10 steps: `tick_units` = 10).
    """

    symbol: str  # venue spelling, upper case: BTCUSDT
    base: str
    quote: str
    venue: Venue
    price_decimals: int
    tick_units: int
    qty_decimals: int  # one lot step = 10**-qty_decimals
    start_price_ticks: int

    @property
    def stream_symbol(self) -> str:
        return self.symbol.lower()

    @property
    def tick_size(self) -> Decimal:
        return Decimal(self.tick_units).scaleb(-self.price_decimals)

    @property
    def step_size(self) -> Decimal:
        return Decimal(1).scaleb(-self.qty_decimals)

    def price(self, ticks: int) -> Decimal:
        """The exact Decimal of an integer tick count."""
        return Decimal(ticks * self.tick_units).scaleb(-self.price_decimals)

    def qty(self, steps: int) -> Decimal:
        return Decimal(steps).scaleb(-self.qty_decimals)

    def format_price(self, ticks: int) -> str:
        return format_scaled(ticks * self.tick_units, self.price_decimals, self._out_price_decimals)

    def format_qty(self, steps: int) -> str:
        return format_scaled(steps, self.qty_decimals, self._out_qty_decimals)

    def format_quote(self, tick_steps: int) -> str:
        """A quote amount given in units of tick*step (an exact sum of price*qty), at the venue's precision."""
        decimals = self.price_decimals + self.qty_decimals
        out = SPOT_DECIMALS if self.venue is Venue.SPOT else decimals
        return format_scaled(tick_steps * self.tick_units, decimals, out)

    def format_tick_size(self) -> str:
        return format_scaled(self.tick_units, self.price_decimals, self._out_price_decimals)

    def format_step_size(self) -> str:
        return format_scaled(1, self.qty_decimals, self._out_qty_decimals)

    @property
    def _out_price_decimals(self) -> int:
        return SPOT_DECIMALS if self.venue is Venue.SPOT else self.price_decimals

    @property
    def _out_qty_decimals(self) -> int:
        return SPOT_DECIMALS if self.venue is Venue.SPOT else self.qty_decimals


def format_scaled(value: int, decimals: int, out_decimals: int) -> str:
    """Write `value * 10**-decimals` with exactly `out_decimals` decimals, truncating toward zero if fewer.

    Integer arithmetic only: this runs once per price in every frame, and must be exact.
    """
    if out_decimals < decimals:
        value = int(value / 10 ** (decimals - out_decimals)) if value < 0 else value // 10 ** (decimals - out_decimals)
    elif out_decimals > decimals:
        value *= 10 ** (out_decimals - decimals)
    sign = "-" if value < 0 else ""
    digits = str(abs(value))
    if out_decimals == 0:
        return sign + digits
    digits = digits.rjust(out_decimals + 1, "0")
    return f"{sign}{digits[:-out_decimals]}.{digits[-out_decimals:]}"


# (base, price, spot tick, spot step, USD-M tick, USD-M step), all quoted in USDT. A USD-M tick written with
# more decimals than it needs ("0.10") sets the price precision, as on the real venue. Levels and precisions follow
# the real instruments closely enough that formatting edge cases show up.
_CATALOGUE: Final[tuple[tuple[str, str, str, str, str, str], ...]] = (
    ("BTC", "64123.45", "0.01", "0.00001", "0.10", "0.001"),
    ("ETH", "3412.67", "0.01", "0.0001", "0.01", "0.001"),
    ("BNB", "581.3", "0.1", "0.001", "0.01", "0.01"),
    ("SOL", "148.21", "0.01", "0.001", "0.01", "1"),
    ("XRP", "0.5234", "0.0001", "1", "0.0001", "0.1"),
    ("ADA", "0.4521", "0.0001", "0.1", "0.0001", "1"),
    ("DOGE", "0.15321", "0.00001", "1", "0.00001", "1"),
    ("AVAX", "35.12", "0.01", "0.01", "0.001", "1"),
    ("DOT", "7.123", "0.001", "0.01", "0.001", "0.1"),
    ("LINK", "15.21", "0.01", "0.01", "0.001", "0.01"),
    ("LTC", "84.37", "0.01", "0.001", "0.01", "0.001"),
    ("TRX", "0.1213", "0.0001", "0.1", "0.00001", "1"),
    ("UNI", "8.012", "0.001", "0.01", "0.001", "1"),
    ("ATOM", "8.345", "0.001", "0.01", "0.001", "0.01"),
    ("ETC", "25.41", "0.01", "0.01", "0.001", "0.01"),
    ("XLM", "0.1123", "0.0001", "1", "0.00001", "1"),
    ("NEAR", "5.123", "0.001", "0.1", "0.001", "1"),
    ("APT", "9.12", "0.01", "0.01", "0.0001", "0.1"),
    ("FIL", "5.123", "0.001", "0.01", "0.001", "0.1"),
    ("ARB", "1.1234", "0.0001", "0.1", "0.0001", "0.1"),
    ("OP", "2.412", "0.001", "0.01", "0.0001", "0.1"),
    ("SUI", "1.5123", "0.0001", "0.1", "0.0001", "0.1"),
    ("BCH", "412.3", "0.1", "0.001", "0.01", "0.001"),
    ("AAVE", "98.12", "0.01", "0.001", "0.010", "0.1"),
)

DEFAULT_SYMBOLS: Final = tuple(f"{row[0]}USDT" for row in _CATALOGUE)


def _decimals(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def build_instruments(venue: Venue, symbols: tuple[str, ...] | None = None) -> dict[str, Instrument]:
    """The instruments of `venue` (all of the catalogue unless `symbols` narrows it), keyed by upper-case symbol."""
    wanted = {s.upper() for s in symbols} if symbols else None
    result: dict[str, Instrument] = {}
    for base, price, spot_tick, spot_step, usdm_tick, usdm_step in _CATALOGUE:
        symbol = f"{base}USDT"
        if wanted is not None and symbol not in wanted:
            continue
        tick, step = (spot_tick, spot_step) if venue is Venue.SPOT else (usdm_tick, usdm_step)
        price_decimals = _decimals(tick)
        tick_units = int(Decimal(tick).scaleb(price_decimals))
        # The perpetual trades at a small premium to spot, as perpetuals usually do.
        level = Decimal(price) * (Decimal("1.0004") if venue is Venue.USDM else 1)
        start_ticks = int(level.scaleb(price_decimals) / tick_units)
        result[symbol] = Instrument(
            symbol, base, "USDT", venue, price_decimals, tick_units, _decimals(step), start_ticks
        )
    if wanted is not None:
        unknown = wanted - set(result)
        if unknown:
            raise ValueError(f"unknown simulator symbols {sorted(unknown)}; known: {', '.join(DEFAULT_SYMBOLS)}")
    return result
