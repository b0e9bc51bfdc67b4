"""The completeness contract: bucket states, their counts, the percentage, and the Redis hash that carries them.

One owner for what the validator computes and what the operator, the `up` view and the CLI show. Pure.

The ledger classifies every 1-minute bucket of every (exchange, symbol) as one ``BucketState``. Completeness is
``(present + backfilled + exchange_empty) / (all - pending)``, printed with exactly six decimals rounded *down*:
"100.000000" therefore means no bucket is missing, and a single missing minute in a year still shows
("99.999809"). When every bucket is pending the figure is "100.000000" (nothing is known to be missing).

The validator publishes per-symbol counts over a rolling window in the hash ``quality:completeness:<exchange>``:
one field per symbol, its value ``present,backfilled,exchange_empty,missing,pending`` (five decimal integers),
plus ``_window_secs`` and ``_updated_ns``. Readers sum the symbols of their feed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Final

from tickstrata.common.events import validate_exchange

COMPLETENESS_KEY_PREFIX: Final = "quality:completeness:"
FIELD_WINDOW_SECS: Final = "_window_secs"
"""Hash field: the length of the rolling window the counts cover, seconds."""
FIELD_UPDATED_NS: Final = "_updated_ns"
"""Hash field: when the validator last wrote the hash, ns since the epoch."""
_PERCENT_QUANTUM: Final = Decimal("0.000001")


class BucketState(enum.StrEnum):
    """What the ledger knows about one 1-minute bucket (the names of quality.v1's BucketState)."""

    PRESENT = "present"
    """The live stream delivered the bucket's data, and no reported or scanned gap touches it."""
    BACKFILLED = "backfilled"
    """The bucket lost continuity and a backfill from the venue's REST history supplied its data."""
    EXCHANGE_EMPTY = "exchange_empty"
    """The venue's REST history confirms nothing traded in the bucket (or has no record: the venue was down)."""
    MISSING = "missing"
    """No data and no proof that there was none: a hole."""
    PENDING = "pending"
    """Ahead of the watermark, or a backfill for it is in flight."""


@dataclass(frozen=True, slots=True)
class BucketCounts:
    present: int = 0
    backfilled: int = 0
    exchange_empty: int = 0
    missing: int = 0
    pending: int = 0

    def __post_init__(self) -> None:
        for state in BucketState:
            if getattr(self, state.value) < 0:
                raise ValueError(f"bucket count {state.value} is negative")

    @classmethod
    def of(cls, states: Iterable[BucketState]) -> BucketCounts:
        totals = dict.fromkeys(BucketState, 0)
        for state in states:
            totals[state] += 1
        return cls(**{state.value: count for state, count in totals.items()})

    @property
    def total(self) -> int:
        return self.present + self.backfilled + self.exchange_empty + self.missing + self.pending

    @property
    def accounted(self) -> int:
        return self.present + self.backfilled + self.exchange_empty

    def __add__(self, other: BucketCounts) -> BucketCounts:
        return BucketCounts(
            self.present + other.present,
            self.backfilled + other.backfilled,
            self.exchange_empty + other.exchange_empty,
            self.missing + other.missing,
            self.pending + other.pending,
        )

    def encode(self) -> str:
        return f"{self.present},{self.backfilled},{self.exchange_empty},{self.missing},{self.pending}"

    @classmethod
    def decode(cls, text: str | bytes) -> BucketCounts:
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        parts = raw.split(",")
        if len(parts) != len(BucketState) or not all(part.isdigit() for part in parts):
            raise ValueError(f"bucket counts must be five non-negative integers joined by ',', got {raw[:80]!r}")
        return cls(*(int(part) for part in parts))


def completeness_percent(counts: BucketCounts) -> str:
    """Accounted buckets over classified ones, as a percentage with six decimals, rounded down."""
    classified = counts.total - counts.pending
    if classified == 0:
        return "100.000000"
    ratio = Decimal(counts.accounted * 100) / Decimal(classified)
    return str(ratio.quantize(_PERCENT_QUANTUM, rounding=ROUND_DOWN))


def completeness_key(exchange: str) -> str:
    """Name an exchange's completeness hash: ``quality:completeness:binance``."""
    return f"{COMPLETENESS_KEY_PREFIX}{validate_exchange(exchange)}"


def sum_symbols(fields: Mapping[bytes | str, bytes | str], symbols: Iterable[str]) -> BucketCounts | None:
    """The counts of ``symbols`` summed from a completeness hash; None when none of them has been counted yet.

    A malformed field raises ``ValueError`` (the hash has one writer, so a bad value is a bug, not input).
    """
    by_name = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    total: BucketCounts | None = None
    for symbol in symbols:
        raw = by_name.get(symbol)
        if raw is None:
            continue
        counts = BucketCounts.decode(raw)
        total = counts if total is None else total + counts
    return total
