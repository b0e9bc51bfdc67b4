"""Instruments of one venue: precision, status, and the symbol mapping both ways. Pure, no I/O.

The venue spelling (``BTCUSDT``) lives only here and inside the venue adapter; everything downstream speaks
normalized symbols (``BTC-USDT``, ``BTC-USDT-PERP``). The registry is built from the venue's REST metadata
(``exchangeInfo``) by the adapter's pure ``parse_exchange_info``.

``format_price``/``format_size`` turn a stored value (a DOUBLE from the hot tier, a Decimal, a scaled int already
divided back) into the exact string the venue wrote: Binance spot writes 8 decimals everywhere
(``"64123.40000000"``), USD-M writes as many as its tick size (``"64123.40"`` for tick ``0.10``). Checksums,
reconciliation against REST and "is this the same trade" all compare those strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Final

from tickstrata.common.events import MAX_DECIMALS, InstrumentSpec, check_decimals, validate_exchange, validate_symbol


class InstrumentKind(StrEnum):
    SPOT = "spot"
    PERPETUAL = "perpetual"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable instrument as the venue describes it."""

    exchange: str
    symbol: str  # normalized: BTC-USDT, BTC-USDT-PERP
    venue_symbol: str  # the venue's spelling: BTCUSDT
    base: str
    quote: str
    kind: InstrumentKind
    tick_size: Decimal
    lot_size: Decimal
    price_decimals: int  # decimals the venue writes prices with (not always the tick's: spot pads to 8)
    size_decimals: int
    status: str  # the venue's word: TRADING, BREAK, HALT, SETTLING, ...
    listed_ns: int | None = None  # listing time where the venue publishes it (USD-M onboardDate)

    def __post_init__(self) -> None:
        validate_exchange(self.exchange)
        validate_symbol(self.symbol)
        if not self.venue_symbol:
            raise ValueError("venue_symbol must not be empty")
        check_decimals("price_decimals", self.price_decimals)
        check_decimals("size_decimals", self.size_decimals)

    @property
    def is_trading(self) -> bool:
        return self.status == "TRADING"

    def spec(self, *, loaded_ns: int) -> InstrumentSpec:
        """The precision record the storage tiers keep (``md:<exchange>:instruments``), valid from ``loaded_ns``."""
        return InstrumentSpec(
            exchange=self.exchange,
            symbol=self.symbol,
            price_decimals=self.price_decimals,
            size_decimals=self.size_decimals,
            tick_size=self.tick_size,
            lot_size=self.lot_size,
            ts_event_ns=loaded_ns,
            ts_recv_ns=loaded_ns,
        )


# Quantize needs room for every digit of the result: 20 integer digits + 18 decimals, with margin.
_FORMAT_CONTEXT: Final = Context(prec=60)
_QUANTUM_BY_DECIMALS: Final = tuple(Decimal(1).scaleb(-decimals) for decimals in range(MAX_DECIMALS + 1))


def decimals_of(written: Decimal) -> int:
    """Decimals of a number as the venue wrote it: ``Decimal("0.10")`` → 2, ``Decimal("1")`` → 0."""
    exponent = written.as_tuple().exponent
    if not isinstance(exponent, int):  # 'n', 'N' or 'F' for NaN and infinities
        raise ValueError(f"not a finite number: {written}")
    return max(0, -exponent)


def format_decimal(value: Decimal | float | int | str, decimals: int) -> str:
    """Format ``value`` with exactly ``decimals`` decimals, the way an exchange writes it.

    A float goes through ``repr`` (the shortest string that round-trips), so the DOUBLE ``64123.4`` is
    ``64123.4`` and not ``64123.400000000001455...``; rounding is half-even and only ever removes float noise
    at a precision the value was stored at.
    """
    if isinstance(value, bool):  # an int subclass, and never a price
        raise TypeError("a bool is not a number")
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite():
        raise ValueError(f"cannot format non-finite {value!r}")
    try:
        quantized = number.quantize(_QUANTUM_BY_DECIMALS[decimals], context=_FORMAT_CONTEXT)
    except InvalidOperation:
        raise ValueError(f"{value!r} is too large to format with {decimals} decimals") from None
    return f"{quantized:f}"


class InstrumentRegistry:
    """The instruments of one exchange id, looked up by normalized or venue symbol.

    Lookups return ``None`` for unknown symbols rather than raising: on the parse path an unknown symbol is
    hostile input to quarantine, not a bug. Two venue instruments mapping to one normalized symbol is refused
    at build time (cryptofeed #908 silently overwrote a linear perp with an inverse one).
    """

    __slots__ = ("_by_symbol", "_by_venue", "exchange")

    def __init__(self, exchange: str, instruments: Iterable[Instrument] = ()) -> None:
        self.exchange = validate_exchange(exchange)
        self._by_symbol: dict[str, Instrument] = {}
        self._by_venue: dict[str, Instrument] = {}
        self.replace(instruments)

    def replace(self, instruments: Iterable[Instrument]) -> None:
        """Swap in a fresh instrument list (exchangeInfo is re-read periodically: listings, status changes)."""
        by_symbol: dict[str, Instrument] = {}
        by_venue: dict[str, Instrument] = {}
        for instrument in instruments:
            if instrument.exchange != self.exchange:
                raise ValueError(f"{instrument.symbol} belongs to {instrument.exchange}, not {self.exchange}")
            clash = by_symbol.get(instrument.symbol) or by_venue.get(instrument.venue_symbol)
            if clash is not None:
                raise ValueError(
                    f"{self.exchange}: {instrument.venue_symbol} and {clash.venue_symbol} both map to "
                    f"{instrument.symbol} (or share a venue symbol)"
                )
            by_symbol[instrument.symbol] = instrument
            by_venue[instrument.venue_symbol] = instrument
        # Assigned together so a reader never sees one map updated and not the other.
        self._by_symbol, self._by_venue = by_symbol, by_venue

    def by_symbol(self, symbol: str) -> Instrument | None:
        return self._by_symbol.get(symbol)

    def by_venue_symbol(self, venue_symbol: str) -> Instrument | None:
        return self._by_venue.get(venue_symbol)

    def symbol_for(self, venue_symbol: str) -> str | None:
        """``BTCUSDT`` → ``BTC-USDT``; ``None`` when the venue symbol is unknown."""
        instrument = self._by_venue.get(venue_symbol)
        return None if instrument is None else instrument.symbol

    def venue_symbol_for(self, symbol: str) -> str | None:
        """``BTC-USDT`` → ``BTCUSDT``; ``None`` when the symbol is unknown."""
        instrument = self._by_symbol.get(symbol)
        return None if instrument is None else instrument.venue_symbol

    def require(self, symbol: str) -> Instrument:
        """The instrument of ``symbol``, or ``KeyError`` naming the known ones (for configuration errors)."""
        instrument = self._by_symbol.get(symbol)
        if instrument is None:
            known = ", ".join(sorted(self._by_symbol)[:20])
            raise KeyError(f"{self.exchange} has no instrument {symbol!r} (known include: {known})")
        return instrument

    def format_price(self, symbol: str, value: Decimal | float | int | str) -> str:
        """The venue's exact string for a price of ``symbol``: spot ``64123.40000000``, USD-M ``64123.40``."""
        return format_decimal(value, self.require(symbol).price_decimals)

    def format_size(self, symbol: str, value: Decimal | float | int | str) -> str:
        """The venue's exact string for a size of ``symbol``."""
        return format_decimal(value, self.require(symbol).size_decimals)

    def __len__(self) -> int:
        return len(self._by_symbol)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_symbol.values())

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._by_symbol
