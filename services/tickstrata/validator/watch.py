"""The rules that need time rather than one event: staleness per instrument, and cross-venue price deviation. Pure.

Fed every live trade (`observe`), asked on each tick (`check(now_ns)`). A quiet spell is reported once, when it
passes the threshold; a deviation once per symbol and `deviation_every_ns`, so a persistent one does not flood the
violation table. Symbols are compared across exchanges only when the normalized symbol is the same
(`BTC-USDT` on two spot venues; a perpetual's `-PERP` symbol is its own market).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from tickstrata.common.events import Trade
from tickstrata.validator.rules import Violation, price_deviations, stale_violation


@dataclass(frozen=True, slots=True)
class WatchConfig:
    stale_after_secs: float = 120.0
    """Quiet longer than this on an instrument that was trading is a `stale` violation."""
    deviation_fraction: Decimal = Decimal("0.01")
    """A venue's last price further than this from the others' (see `price_deviations`) is a violation."""
    deviation_every_ns: int = 60_000_000_000
    """At most one deviation check per symbol this often."""
    max_price_age_ns: int = 60_000_000_000
    """Prices older than this are not compared (a quiet venue's stale price is not a deviation)."""


@dataclass(slots=True)
class _Last:
    ts_event_ns: int
    price: Decimal
    reported_stale: bool = False


class Watch:
    def __init__(self, config: WatchConfig | None = None) -> None:
        self.config = config or WatchConfig()
        self._last: dict[tuple[str, str], _Last] = {}
        self._deviation_checked_ns: dict[str, int] = {}

    def observe(self, trade: Trade) -> None:
        if trade.backfilled:
            return  # a backfill says nothing about whether the live feed is flowing now
        key = (trade.exchange, trade.symbol)
        last = self._last.get(key)
        if last is None or trade.ts_event_ns >= last.ts_event_ns:
            self._last[key] = _Last(trade.ts_event_ns, trade.price)

    def check(self, now_ns: int) -> list[Violation]:
        found: list[Violation] = []
        for (exchange, symbol), last in self._last.items():
            if last.reported_stale:
                continue
            stale = stale_violation(exchange, symbol, last.ts_event_ns, now_ns, self.config.stale_after_secs)
            if stale is not None:
                last.reported_stale = True
                found.append(stale)
        by_symbol: dict[str, dict[str, Decimal]] = {}
        for (exchange, symbol), last in self._last.items():
            if now_ns - last.ts_event_ns <= self.config.max_price_age_ns:
                by_symbol.setdefault(symbol, {})[exchange] = last.price
        for symbol, prices in by_symbol.items():
            if len(prices) < 2 or now_ns - self._deviation_checked_ns.get(symbol, 0) < self.config.deviation_every_ns:
                continue
            self._deviation_checked_ns[symbol] = now_ns
            found.extend(price_deviations(symbol, prices, self.config.deviation_fraction, now_ns))
        return found
