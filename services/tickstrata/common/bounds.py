"""The magnitudes and times a stored value may have: one owner for the collector, the writer and the query service.

Pure. The collector refuses venue input outside these bounds at the parse boundary; the writer checks every entry
again before it stores it (a stream is writable by anyone with Redis access); the query service checks what it
reads back from Redis or QuestDB before it formats a number, so one bad stored value costs one skipped row, never a
billion-character string.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

# Decimal magnitudes we accept: |x| in [1e-20, 1e20) or exactly zero. Wide enough for SHIB-sized volumes and
# satoshi-sized prices, narrow enough that every accepted value fits the storage tiers' scaled int64 / DOUBLE
# with its precision; Decimal("1e400") is finite but absurd. `adjusted()` is the exponent of the leading digit.
MIN_ADJUSTED_EXPONENT: Final = -20
MAX_ADJUSTED_EXPONENT: Final = 19
ZERO: Final = Decimal(0)  # comparing with a Decimal is ~40% faster than with the int 0

# A millisecond timestamp below 1e11 is before 1973-03-03: it is a seconds value (a x1000 slip), not ms.
MIN_PLAUSIBLE_MS: Final = 100_000_000_000
MIN_PLAUSIBLE_NS: Final = MIN_PLAUSIBLE_MS * 1_000_000
MAX_ID: Final = 2**63 - 1  # ids and sequence numbers are stored as signed 64-bit integers

# The float bounds matching the Decimal ones, for values read back as DOUBLE (QuestDB) or float.
MIN_ABS_FLOAT: Final = 1e-20
MAX_ABS_FLOAT: Final = 1e20


def decimal_in_range(value: Decimal) -> bool:
    """True for a finite value that is zero or has |value| in [1e-20, 1e20)."""
    # NaN/Infinity answer adjusted() == 0, so finiteness is tested first.
    return value.is_finite() and ((not value) or MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT)


def is_positive_in_range(value: Decimal) -> bool:
    """True for a finite price-like value: strictly positive and in range."""
    return value.is_finite() and value > ZERO and MIN_ADJUSTED_EXPONENT <= value.adjusted() <= MAX_ADJUSTED_EXPONENT


def float_in_range(value: float) -> bool:
    """True for a finite float that is zero or has |value| in [1e-20, 1e20) (NaN compares false everywhere)."""
    magnitude = abs(value)
    return magnitude == 0.0 or MIN_ABS_FLOAT <= magnitude < MAX_ABS_FLOAT
