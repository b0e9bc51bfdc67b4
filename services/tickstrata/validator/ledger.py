"""The completeness ledger: what the validator knows about every 1-minute bucket, and the state that follows. Pure.

A bucket is one (exchange, symbol, minute). The validator *observes* — live rows, backfilled rows, gap windows,
and the venue's per-minute findings returned by BackfillService — and records them in a ``BucketRecord`` when it
sees them: provenance cannot be recomputed later from QuestDB (dedup is last-write-wins, a REST candle replaces a
streamed one). ``classify`` turns a record into a ``BucketState``:

- ahead of the watermark (``minute end > watermark``): **pending**, so late data is never called missing;
- no gap touched it and live data arrived: **present**;
- otherwise the venue decides, per data type that needs proof (the types a gap touched, or both trades and
  candles for a minute with no data at all that nobody reported):
  - a finding is still unknown: **pending** while a backfill is in flight, else **missing**;
  - the venue had data (``DATA``) for some type: **backfilled** once the rows that backfill published have been
    observed for every such type (proof they took the normal write path), else pending/missing as above;
  - the venue confirms nothing traded (``EMPTY``) or has no record of the minute (``NO_RECORD``: it was down):
    **exchange_empty** — or **present** if live data arrived anyway (the data we hold is kept, never called
    empty).

Windows are half-open ``[start_ns, end_ns)`` as everywhere (``docs/architecture.md``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from tickstrata.common.completeness import BucketCounts, BucketState
from tickstrata.common.events import Candle, CandleSource, DataType

MINUTE_NS: Final = 60_000_000_000
PROVEN_TYPES: Final = (DataType.TRADES, DataType.CANDLES)
"""The data types a bucket's completeness is about (quotes, books and funding have no per-minute proof)."""


@dataclass(frozen=True, slots=True)
class Expectations:
    """What an instrument's live data must hold for a minute to count as complete without the venue's word."""

    carried: frozenset[DataType] = frozenset(PROVEN_TYPES)
    """The proven types its live stream carries (a feed without candles is not asked for them)."""
    volume_matches_trades: bool = False
    """The venue's 1-minute candle volume is exactly the sum of its trades' sizes (Binance): live trades that
    fall short of the candle lost some in transit, even with no gap reported (a loss that outlived the feed)."""


class Finding(enum.StrEnum):
    """What the venue's REST history said of one minute of one data type (BackfillService's BucketFinding)."""

    NONE = "none"
    """Not asked yet, or the answer did not cover the minute."""
    DATA = "data"
    EMPTY = "empty"
    NO_RECORD = "no_record"


def minute_of(ts_ns: int) -> int:
    """The start of the minute holding ``ts_ns``."""
    return ts_ns - ts_ns % MINUTE_NS


def minutes_touching(start_ns: int, end_ns: int) -> range:
    """Starts of the minutes that overlap ``[start_ns, end_ns)``; empty for an empty window."""
    if end_ns <= start_ns:
        return range(0)
    return range(minute_of(start_ns), end_ns, MINUTE_NS)


def is_empty_candle(candle: Candle) -> bool:
    """A candle of a minute in which nothing traded (venues that do not count trades report zero volume)."""
    return candle.trade_count == 0 if candle.trade_count is not None else candle.volume == 0


@dataclass(frozen=True, slots=True)
class CandleValues:
    """The candle last observed for a bucket: the "old" side of a later revision."""

    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    source: CandleSource

    @classmethod
    def of(cls, candle: Candle) -> CandleValues:
        return cls(candle.open, candle.high, candle.low, candle.close, candle.volume, candle.source)

    def differences(self, other: CandleValues) -> list[str]:
        """Each changed value as ``name old→new``; empty when the two describe the same trades."""
        names = ("open", "high", "low", "close", "volume")
        return [f"{n} {getattr(self, n)}→{getattr(other, n)}" for n in names if getattr(self, n) != getattr(other, n)]


@dataclass(slots=True)
class BucketRecord:
    """Everything observed about one bucket. Mutable; owned by one ``SymbolLedger``."""

    live_rows: int = 0
    live_trades: int | None = None
    """Live trades observed; None for a record restored from the store, which keeps only ``live_rows``."""
    live_candles: int | None = None
    """Closed candles observed on the live stream, empty ones included; None for a restored record."""
    live_volume: Decimal | None = None
    """Sum of the live trades' sizes; None for a restored record or when a trade came without its size."""
    backfilled_trades: int = 0
    backfilled_candles: int = 0
    suspect: set[DataType] = field(default_factory=set)
    """Data types a gap window touched: the live stream may have lost some of this minute."""
    findings: dict[DataType, Finding] = field(default_factory=dict)
    in_flight: set[DataType] = field(default_factory=set)
    """Data types a backfill has been asked for and whose rows are not all observed yet."""
    candle: CandleValues | None = None
    given_up: bool = False
    """The venue cannot supply this minute (e.g. beyond its REST history): it stays missing and is not asked again."""

    def finding(self, data_type: DataType) -> Finding:
        return self.findings.get(data_type, Finding.NONE)

    def needs_proof(self, expect: Expectations = Expectations()) -> frozenset[DataType]:
        """The data types whose venue finding decides this bucket; empty when the live stream suffices.

        Besides the types a gap touched: a minute that has trades but no closed candle, or a closed candle with
        more volume than its live trades, lost some of it in transit even if no gap says so (a collector killed at
        the minute's end, entries a Redis crash lost, a loss still running when the feed stopped)."""
        if self.live_rows == 0:
            return frozenset(PROVEN_TYPES)
        needed = set(self.suspect)
        no_live_candle = self.live_candles == 0 if self.live_candles is not None else self.candle is None
        if DataType.CANDLES in expect.carried and no_live_candle:
            needed.add(DataType.CANDLES)
        candle = self.candle
        if DataType.TRADES in expect.carried and candle is not None and candle.volume > 0:
            short = expect.volume_matches_trades and self.live_volume is not None and self.live_volume < candle.volume
            if self.live_trades == 0 or short:
                needed.add(DataType.TRADES)
        return frozenset(needed)

    def backfilled_rows(self, data_type: DataType) -> int:
        return self.backfilled_trades if data_type is DataType.TRADES else self.backfilled_candles


def classify(
    record: BucketRecord, minute_start_ns: int, watermark_ns: int, expect: Expectations = Expectations()
) -> BucketState:
    """The state of one bucket (the rules in the module docstring)."""
    if minute_start_ns + MINUTE_NS > watermark_ns:
        return BucketState.PENDING
    needed = record.needs_proof(expect)
    if not needed:
        return BucketState.PRESENT
    unresolved = BucketState.PENDING if record.in_flight & needed else BucketState.MISSING
    findings = {data_type: record.finding(data_type) for data_type in needed}
    if Finding.NONE in findings.values():
        return unresolved
    with_data = [data_type for data_type, finding in findings.items() if finding is Finding.DATA]
    if with_data:
        if all(record.backfilled_rows(data_type) > 0 for data_type in with_data):
            return BucketState.BACKFILLED
        return unresolved
    return BucketState.PRESENT if record.live_rows > 0 else BucketState.EXCHANGE_EMPTY


FINAL_STATES: Final = frozenset({BucketState.PRESENT, BucketState.BACKFILLED, BucketState.EXCHANGE_EMPTY})


@dataclass(frozen=True, slots=True)
class Revision:
    """A candle observed again with different values: recorded, never a silent overwrite."""

    minute_start_ns: int
    old: CandleValues
    new: CandleValues

    @property
    def detail(self) -> str:
        return f"{self.old.source}→{self.new.source}: " + ", ".join(self.old.differences(self.new))


_NOTHING_SEEN: Final = BucketRecord()
"""The record of a minute nothing was observed in (read only)."""


class SymbolLedger:
    """The buckets of one (exchange, symbol) from ``first_minute_ns`` on, observed incrementally.

    Only minutes at or after ``first_minute_ns`` are tracked (the validator's start, or where its persisted state
    resumes): a minute before anything was watched has no evidence either way and is not this ledger's to judge.
    Minutes before the horizon (``forget_before``) are final and persisted; an observation of one is ignored and
    counted in ``ignored_late`` rather than recorded, because a fresh record holding only the late row would
    overwrite the complete persisted one.
    """

    def __init__(
        self, exchange: str, symbol: str, first_minute_ns: int, *, volume_matches_trades: bool = False
    ) -> None:
        self.exchange = exchange
        self.volume_matches_trades = volume_matches_trades
        self.symbol = symbol
        self.first_minute_ns = minute_of(first_minute_ns)
        self.ignored_late = 0
        self._records: dict[int, BucketRecord] = {}
        self._expect = Expectations(frozenset(), volume_matches_trades)
        self.dirty: set[int] = set()
        """Minutes whose record changed since ``take_dirty``: the rows to persist."""

    def record(self, minute_start_ns: int) -> BucketRecord:
        record = self._records.get(minute_start_ns)
        if record is None:
            record = self._records[minute_start_ns] = BucketRecord(
                live_trades=0, live_candles=0, live_volume=Decimal(0)
            )
        return record

    def restore(self, minute_start_ns: int, record: BucketRecord) -> None:
        """Put back a record read from the store at start-up (already persisted: not dirty)."""
        self._records[minute_start_ns] = record

    @property
    def expect(self) -> Expectations:
        """What its minutes must hold: the proven types its live stream has carried so far, and the venue's rule."""
        return self._expect

    def _carry(self, data_type: DataType) -> None:
        if data_type not in self._expect.carried:  # once per type: the expectations are read per minute judged
            self._expect = Expectations(self._expect.carried | {data_type}, self.volume_matches_trades)

    def tracks(self, ts_ns: int) -> bool:
        if ts_ns >= self.first_minute_ns:
            return True
        self.ignored_late += 1
        return False

    def _touch(self, minute_start_ns: int) -> BucketRecord:
        self.dirty.add(minute_start_ns)
        return self.record(minute_start_ns)

    # ---- observations ---------------------------------------------------------------------------------------

    def observe_trade(self, ts_event_ns: int, *, backfilled: bool, size: Decimal | None = None) -> None:
        # The hot path (every trade): tracks/_touch/record inlined.
        if ts_event_ns < self.first_minute_ns:
            self.ignored_late += 1
            return
        minute = ts_event_ns - ts_event_ns % MINUTE_NS
        self.dirty.add(minute)
        record = self._records.get(minute)
        if record is None:
            record = self.record(minute)
        if backfilled:
            record.backfilled_trades += 1
            return
        record.live_rows += 1
        if record.live_trades is not None:  # None: restored from the store, the split is unknown
            record.live_trades += 1
        volume = record.live_volume
        record.live_volume = None if size is None or volume is None else volume + size
        if DataType.TRADES not in self._expect.carried:
            self._carry(DataType.TRADES)

    def observe_candle(self, candle: Candle) -> Revision | None:
        """A closed 1-minute candle; returns the revision when it replaces different values."""
        if not candle.closed or candle.interval_secs != 60 or not self.tracks(candle.open_time_ns):
            return None
        record = self._touch(candle.open_time_ns)
        if candle.source is CandleSource.REST:
            record.backfilled_candles += 1
        else:
            self._carry(DataType.CANDLES)
            record.live_candles = (record.live_candles or 0) + 1
            if not is_empty_candle(candle):
                # A zero-trade candle on the live stream is not data: the minute needs the venue's REST history to
                # confirm it empty (exchange_empty), never a zero-volume row taken as "present".
                record.live_rows += 1
        values = CandleValues.of(candle)
        previous, record.candle = record.candle, values
        if previous is not None and previous.differences(values):
            return Revision(candle.open_time_ns, previous, values)
        return None

    def observe_gap(self, data_type: DataType, start_ns: int, end_ns: int) -> list[int]:
        """Mark the minutes a gap window touches as suspect for ``data_type``; returns those minutes."""
        if data_type not in PROVEN_TYPES:
            return []
        touched = list(minutes_touching(max(start_ns, self.first_minute_ns), end_ns))
        for minute in touched:
            self._touch(minute).suspect.add(data_type)
        return touched

    def observe_asked(self, data_type: DataType, start_ns: int, end_ns: int) -> None:
        """A backfill of ``data_type`` over whole minutes ``[start_ns, end_ns)`` was asked for."""
        for minute in minutes_touching(max(start_ns, self.first_minute_ns), end_ns):
            self._touch(minute).in_flight.add(data_type)

    def observe_finding(self, data_type: DataType, start_ns: int, end_ns: int, finding: Finding) -> None:
        """The venue's finding for whole minutes ``[start_ns, end_ns)`` (one run of a job's evidence)."""
        for minute in minutes_touching(max(start_ns, self.first_minute_ns), end_ns):
            record = self._touch(minute)
            record.findings[data_type] = finding

    def observe_settled(self, data_type: DataType, start_ns: int, end_ns: int) -> None:
        """The backfill over ``[start_ns, end_ns)`` is over and its rows have had time to arrive (or it failed)."""
        for minute in minutes_touching(max(start_ns, self.first_minute_ns), end_ns):
            record = self._records.get(minute)
            if record is not None and data_type in record.in_flight:
                record.in_flight.discard(data_type)
                self.dirty.add(minute)

    # ---- reading -------------------------------------------------------------------------------------------

    def minutes(self, start_ns: int, end_ns: int) -> range:
        """Whole minutes of ``[start_ns, end_ns)`` this ledger tracks."""
        first = max(minute_of(start_ns), self.first_minute_ns)
        return range(first, end_ns, MINUTE_NS) if end_ns > first else range(0)

    def state_of(self, minute_start_ns: int, watermark_ns: int) -> BucketState:
        return classify(self._records.get(minute_start_ns, _NOTHING_SEEN), minute_start_ns, watermark_ns, self.expect)

    def states(self, start_ns: int, end_ns: int, watermark_ns: int) -> Iterator[tuple[int, BucketState]]:
        empty = BucketRecord()
        for minute in self.minutes(start_ns, end_ns):
            yield minute, classify(self._records.get(minute, empty), minute, watermark_ns, self.expect)

    def counts(self, start_ns: int, end_ns: int, watermark_ns: int) -> BucketCounts:
        return BucketCounts.of(state for _, state in self.states(start_ns, end_ns, watermark_ns))

    def take_dirty(self) -> list[tuple[int, BucketRecord]]:
        rows = [(minute, self.record(minute)) for minute in sorted(self.dirty)]
        self.dirty.clear()
        return rows

    def forget_before(self, minute_start_ns: int) -> int:
        """Move the horizon to ``minute_start_ns``: earlier minutes must be persisted (not dirty) and final.

        Returns how many records went. Later reads and observations start at the new horizon.
        """
        horizon = minute_of(minute_start_ns)
        if any(minute < horizon for minute in self.dirty):
            raise ValueError("forget_before would drop records not yet persisted (call take_dirty first)")
        stale = [minute for minute in self._records if minute < horizon]
        for minute in stale:
            del self._records[minute]
        self.first_minute_ns = max(self.first_minute_ns, horizon)
        return len(stale)

    def __len__(self) -> int:
        return len(self._records)
