"""A byte-rate budget for quarantined payloads: a venue flooding garbage must not flood Redis. Pure, no I/O.

Every refused frame or REST body becomes a ``Quarantine`` event holding up to 64 KiB of the payload. At 20 bad
1 MiB frames a second that is 1.25 MiB/s into ``qa:quarantine`` for as long as the venue (or whoever sits between
us and it) keeps going. ``QuarantineBudget`` caps those bytes with a token bucket, refilled at
``max_bytes_per_sec`` with a burst of one second's worth (never less than one maximal record, so a full bucket
always admits any single quarantine whole).

Policy, in order, for each quarantine:

1. It fits: it passes unchanged.
2. Its record without the payload fits (reason, detail, sizes: what an operator counts and alerts on): it passes
   with ``raw`` cut to the bytes left in the bucket, possibly to nothing. ``raw_size_bytes`` keeps the full size,
   so a cut payload is recognisable; the cut bytes are counted.
3. Nothing fits: the quarantine is dropped and counted by reason.

Truncating first keeps one record per refused input for as long as the records themselves fit, so counts by
reason stay exact while the payload bytes are bounded; only a flood of records beyond the budget loses records.
What was cut or dropped since the last report is summarised by ``take_report`` at most once per
``report_interval_secs`` (the caller logs it: a flood yields one WARNING per interval, not one per frame).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import msgspec

from tickstrata.common.events import QUARANTINE_RAW_LIMIT_BYTES, Quarantine

# What a record costs beside its payload: the other fields, msgpack framing, the stream entry and its id. A fixed
# estimate (measured ~180 bytes for a typical record in a stream entry), so the bucket counts tiny frames too.
RECORD_OVERHEAD_BYTES: Final = 256
DEFAULT_REPORT_INTERVAL_SECS: Final = 10.0


class TokenBucket:
    """``capacity`` tokens at most, refilled continuously at ``rate_per_sec``; starts full."""

    def __init__(self, rate_per_sec: float, capacity: float, clock: Callable[[], float]) -> None:
        if rate_per_sec <= 0 or capacity <= 0:
            raise ValueError(f"rate_per_sec and capacity must be positive, got {rate_per_sec} and {capacity}")
        self.rate_per_sec = rate_per_sec
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()

    @property
    def available(self) -> float:
        """Tokens in the bucket now."""
        now = self._clock()
        # max(): a clock that steps back (it should not: monotonic) must not drain the bucket.
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._updated) * self.rate_per_sec)
        self._updated = now
        return self._tokens

    def take(self, amount: float) -> bool:
        """Take ``amount`` tokens if they are all there; otherwise take nothing."""
        if amount <= self.available:
            self._tokens -= amount
            return True
        return False


@dataclass(frozen=True)
class Admission:
    """What the budget made of one quarantine: the event to publish (None: dropped) and the payload bytes cut."""

    quarantine: Quarantine | None
    cut_bytes: int

    @property
    def dropped(self) -> bool:
        return self.quarantine is None


@dataclass(frozen=True)
class BudgetReport:
    """Losses since the previous report."""

    dropped_by_reason: dict[str, int]
    cut_bytes: int
    truncated: int

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())


class QuarantineBudget:
    """Admits quarantines within ``max_bytes_per_sec`` (see the module docstring for the policy)."""

    def __init__(
        self,
        max_bytes_per_sec: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        report_interval_secs: float = DEFAULT_REPORT_INTERVAL_SECS,
    ) -> None:
        capacity = max(max_bytes_per_sec, QUARANTINE_RAW_LIMIT_BYTES + 2 * RECORD_OVERHEAD_BYTES)
        self._bucket = TokenBucket(max_bytes_per_sec, capacity, clock)
        self._clock = clock
        self._report_interval_secs = report_interval_secs
        self._last_report = clock()
        self._dropped: Counter[str] = Counter()
        self._cut_bytes = 0
        self._truncated = 0
        # Totals since start, for tests and the stats the caller exports.
        self.dropped_total = 0
        self.cut_bytes_total = 0

    @staticmethod
    def cost(quarantine: Quarantine) -> int:
        """Bytes a quarantine is charged: its payload, its detail and the fixed record overhead."""
        return len(quarantine.raw) + len(quarantine.detail) + RECORD_OVERHEAD_BYTES

    def admit(self, quarantine: Quarantine) -> Admission:
        bucket = self._bucket
        if bucket.take(self.cost(quarantine)):
            return Admission(quarantine, 0)
        bare_cost = len(quarantine.detail) + RECORD_OVERHEAD_BYTES
        available = bucket.available
        if available >= bare_cost:
            keep = int(available - bare_cost)
            raw = quarantine.raw[:keep]
            bucket.take(bare_cost + len(raw))
            cut = len(quarantine.raw) - len(raw)
            self._cut_bytes += cut
            self._truncated += 1
            self.cut_bytes_total += cut
            return Admission(msgspec.structs.replace(quarantine, raw=raw), cut)
        self._dropped[quarantine.reason] += 1
        self.dropped_total += 1
        self._cut_bytes += len(quarantine.raw)
        self.cut_bytes_total += len(quarantine.raw)
        return Admission(None, len(quarantine.raw))

    def take_report(self) -> BudgetReport | None:
        """Losses since the last report, once ``report_interval_secs`` has passed since it and if there were any."""
        now = self._clock()
        if now - self._last_report < self._report_interval_secs or not (self._dropped or self._truncated):
            return None
        report = BudgetReport(dict(self._dropped), self._cut_bytes, self._truncated)
        self._dropped.clear()
        self._cut_bytes = self._truncated = 0
        self._last_report = now
        return report
