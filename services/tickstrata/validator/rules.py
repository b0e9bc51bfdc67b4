"""Data-quality rules: pure functions that turn market data into ``Violation`` records with evidence.

The rules, one module each by what they look at:

- ``rules_candles``: one candle's OHLCV invariants (``check_candle``), and two versions of the same candle that
  disagree (``candle_revision``, ``candle_mismatch``).
- ``rules_series``: one series (exchange, symbol, data type) in stream order (``SeriesChecker``): monotonic event
  time, duplicates, and trade-id continuity where the venue's ids are sequential.
- here: the ``Violation`` record and the feed-level rules, staleness (``stale_violation``) and cross-venue
  price deviation (``price_deviations``).

Every rule reports what it finds and never raises on bad data, so one bad event cannot stop a run; they raise
only when called wrongly (a negative threshold, events of another series). No I/O, no clock: the caller passes
``now_ns``.

Windows are half-open, ``[start_ns, end_ns)``, in event-time nanoseconds, as in quality.v1: a candle's window is
``[open_time_ns, open_time_ns + interval_secs * 10**9)``, a single event's is ``[ts_event_ns, ts_event_ns + 1)``.

Decimal values are compared exactly, never through float, and appear in details as the venue wrote them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from typing import Final

_NS_PER_SEC: Final = 1_000_000_000
_PERCENT_QUANTUM: Final = Decimal("0.000001")
# Sums and products of venue prices must be exact for the comparisons to be exact; 28 digits (the default)
# could round a sum of two long prices. Only the percentage shown in a detail is ever rounded.
_EXACT_CONTEXT: Final = Context(prec=200)


class ViolationKind(enum.StrEnum):
    """Which check failed (the names of quality.v1's ViolationKind, without the prefix)."""

    OHLCV_INVARIANT = "ohlcv_invariant"
    CANDLE_MISMATCH = "candle_mismatch"
    CANDLE_REVISION = "candle_revision"
    STALE = "stale"
    PRICE_DEVIATION = "price_deviation"
    NON_MONOTONIC_TIME = "non_monotonic_time"
    DUPLICATE = "duplicate"
    TRADE_ID_GAP = "trade_id_gap"


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check on the data in ``[start_ns, end_ns)`` of one (exchange, symbol).

    ``detail`` is the evidence, for a person: the exact values that broke the rule
    (``"high=64010.5 < close=64011.0"``).
    """

    exchange: str
    symbol: str
    kind: ViolationKind
    start_ns: int
    end_ns: int
    detail: str

    def __post_init__(self) -> None:
        # Every rule builds its windows itself, so an empty one is a bug in a rule, not bad data.
        if self.end_ns <= self.start_ns:
            raise ValueError(f"violation window is empty: [{self.start_ns}, {self.end_ns})")


def event_window(ts_ns: int) -> tuple[int, int]:
    """Return the half-open window of a single event at ``ts_ns``."""
    return ts_ns, ts_ns + 1


def stale_violation(
    exchange: str,
    symbol: str,
    last_event_ns: int,
    now_ns: int,
    threshold_secs: float,
) -> Violation | None:
    """Return a ``stale`` violation if nothing arrived for longer than ``threshold_secs``, else ``None``.

    The window is the quiet time, ``[last_event_ns, now_ns)``; quiet for exactly the threshold is not stale. A
    ``now_ns`` before the last event (clocks disagree) is not staleness either.
    """
    if threshold_secs <= 0:
        raise ValueError(f"threshold_secs must be positive, got {threshold_secs}")
    threshold_ns = round(threshold_secs * _NS_PER_SEC)
    quiet_ns = now_ns - last_event_ns
    if quiet_ns <= threshold_ns:
        return None
    quiet_secs = Decimal(quiet_ns).scaleb(-9)  # exact: shows every nanosecond
    return Violation(
        exchange=exchange,
        symbol=symbol,
        kind=ViolationKind.STALE,
        start_ns=last_event_ns,
        end_ns=now_ns,
        detail=f"no event for {quiet_secs} s, over the {threshold_secs} s threshold",
    )


def price_deviations(
    symbol: str,
    prices: Mapping[str, Decimal],
    threshold_fraction: Decimal,
    ts_ns: int,
) -> list[Violation]:
    """Return a ``price_deviation`` violation for every venue whose price strays from the others'.

    ``prices`` maps exchange id to that venue's price of ``symbol`` at ``ts_ns``. Prices that are not positive
    and finite are ignored (another rule's problem); so with fewer than two usable prices nothing is reported.

    With three venues or more, each venue is measured against the median of the *other* venues, so an outlier
    cannot drag its own reference. The median of an even number of prices is the interval between the two
    middle ones, and a venue is measured against the interval's nearer end: with three venues, the two that
    agree are each compared with the other agreeing one, not with the midpoint it shares with the outlier, so
    one outlier among three is flagged alone. A venue is flagged when ``|price - reference| > threshold_fraction
    * reference``; the detail reads ``"binance 2.310000% above the median of 2 venues (64010.5 vs 62565.3)"``.

    With exactly two venues neither can be called the outlier: they are flagged together, in one violation whose
    ``exchange`` is the alphabetically first of the two and whose detail names both, when ``|a - b| >
    threshold_fraction * mean(a, b)``.

    The window is the instant compared, ``[ts_ns, ts_ns + 1)``; violations come in exchange order.
    """
    if not threshold_fraction.is_finite() or threshold_fraction < 0:
        raise ValueError(f"threshold_fraction must be a non-negative finite Decimal, got {threshold_fraction}")
    usable = sorted((venue, price) for venue, price in prices.items() if price.is_finite() and price > 0)
    start_ns, end_ns = event_window(ts_ns)
    with localcontext(_EXACT_CONTEXT):
        if len(usable) < 2:
            return []
        if len(usable) == 2:
            detail = _pair_deviation(usable[0], usable[1], threshold_fraction)
            if detail is None:
                return []
            return [Violation(usable[0][0], symbol, ViolationKind.PRICE_DEVIATION, start_ns, end_ns, detail)]
        violations = []
        for index, (venue, price) in enumerate(usable):
            others = sorted(other for _, other in usable[:index] + usable[index + 1 :])
            detail = _median_deviation(venue, price, others, threshold_fraction)
            if detail is not None:
                violations.append(Violation(venue, symbol, ViolationKind.PRICE_DEVIATION, start_ns, end_ns, detail))
        return violations


def _pair_deviation(first: tuple[str, Decimal], second: tuple[str, Decimal], threshold: Decimal) -> str | None:
    (low_venue, low), (high_venue, high) = sorted((first, second), key=lambda pair: pair[1])
    # |a - b| > threshold * (a + b) / 2, multiplied out so that the comparison needs no division.
    if 2 * (high - low) <= threshold * (high + low):
        return None
    percent = _percent(high - low, (high + low) / 2)
    return f"{high_venue} {percent}% above {low_venue}, relative to their mean ({high} vs {low})"


def _median_deviation(venue: str, price: Decimal, others: list[Decimal], threshold: Decimal) -> str | None:
    middle = len(others) // 2
    lower, upper = (others[middle], others[middle]) if len(others) % 2 else (others[middle - 1], others[middle])
    if price > upper:
        reference, direction = upper, "above"
    elif price < lower:
        reference, direction = lower, "below"
    else:
        return None  # inside the median interval
    if abs(price - reference) <= threshold * reference:
        return None
    percent = _percent(abs(price - reference), reference)
    detail = f"{venue} {percent}% {direction} the median of {len(others)} venues ({price} vs {reference})"
    if lower != upper:
        detail += f"; their middle prices are {lower} and {upper}"
    return detail


def _percent(difference: Decimal, reference: Decimal) -> Decimal:
    return (difference * 100 / reference).quantize(_PERCENT_QUANTUM)
