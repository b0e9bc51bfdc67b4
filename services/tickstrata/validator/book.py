"""Every instrument's ledger, the watermark, and what to persist and to backfill next. Pure, clocked from outside.

The validator's consumer feeds observations in (`observe_*`); `flush_rows` returns the bucket rows whose state or
record changed (what the store writes before the stream entries are acknowledged); `plan_backfills` returns the
windows whose minutes are missing and not being fetched, per data type (what the backfill driver asks the
collectors for). Gaps reported on `qa:gaps` mark minutes as suspect; minutes without data that nobody reported
become scan gaps when they are planned.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from tickstrata.common.completeness import BucketCounts, BucketState
from tickstrata.common.events import Candle, DataType, Gap, Trade
from tickstrata.validator.gaps import GapBook, GapRecord, GapState, record_of, scan_record
from tickstrata.validator.ledger import (
    FINAL_STATES,
    MINUTE_NS,
    PROVEN_TYPES,
    BucketRecord,
    Expectations,
    Finding,
    Revision,
    SymbolLedger,
    classify,
    minute_of,
    minutes_touching,
)

InstrumentKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class BucketRow:
    """One bucket as persisted (``quality_buckets``)."""

    exchange: str
    symbol: str
    minute_start_ns: int
    state: BucketState
    record: BucketRecord


@dataclass(frozen=True, slots=True)
class BackfillAsk:
    """Whole minutes ``[start_ns, end_ns)`` of one instrument and data type to fetch from the venue."""

    exchange: str
    symbol: str
    data_type: DataType
    start_ns: int
    end_ns: int

    @property
    def key(self) -> str:
        return f"{self.exchange}/{self.symbol}/{self.data_type}/{self.start_ns}-{self.end_ns}"


@dataclass(frozen=True, slots=True)
class BookConfig:
    grace_ns: int = 30_000_000_000
    """How long after a minute ends its data may still arrive (closed candles come a little after the minute)."""
    max_ask_minutes: int = 360
    """The longest window one backfill asks for (smaller asks share the venue's weight budget fairly)."""
    volume_matches_trades_exchanges: frozenset[str] = frozenset()
    """Exchanges whose candle volume is exactly the sum of their trades' sizes (``Expectations``)."""


MAX_FLUSH_MINUTES: Final = 7 * 24 * 60


class LedgerBook:
    def __init__(self, config: BookConfig | None = None) -> None:
        self.config = config or BookConfig()
        self.ledgers: dict[InstrumentKey, SymbolLedger] = {}
        self.gaps = GapBook()
        self.caught_up_ns = 0
        """The last time the consumer had read everything the streams held: nothing older is still unread."""
        self._persisted: dict[InstrumentKey, dict[int, BucketState]] = {}
        """Per instrument and minute: the state last judged (and handed out to be persisted)."""
        self._checked_through: dict[InstrumentKey, int] = {}
        """Per instrument: every minute before this is final and its final state persisted."""
        self._judged_through: dict[InstrumentKey, int] = {}
        """Per instrument: every minute before this was judged once the watermark passed it; later changes come
        only through observations (which mark a minute dirty), so each flush judges the dirty and the new."""
        self._expect: dict[InstrumentKey, Expectations] = {}
        self._missing: dict[InstrumentKey, set[int]] = {}
        """Per instrument: the minutes last judged missing (what ``plan_backfills`` looks at)."""
        self._unflushed: dict[tuple[InstrumentKey, int], BucketRow] = {}
        self._candidates: list[tuple[BackfillAsk, bool]] | None = None
        """The last plan's asks; None once anything is judged anew (every change to a plan goes through that)."""
        self._gap_cursor: dict[str, int] = {}
        """Per open gap: every minute it touches before this is settled (its resolution scans on from here)."""
        self._gap_given_up: set[str] = set()
        """Open gaps with a minute the venue cannot supply (they end unrecoverable)."""

    # ---- instruments -----------------------------------------------------------------------------------------

    def ledger(self, exchange: str, symbol: str, first_seen_ns: int) -> SymbolLedger:
        key = (exchange, symbol)
        book = self.ledgers.get(key)
        if book is None:
            # Judged from the minute of the first observation; that minute was only partly watched, so it needs
            # the venue's word like a minute a gap touched.
            first = minute_of(first_seen_ns)
            book = self.ledgers[key] = SymbolLedger(
                exchange, symbol, first, volume_matches_trades=exchange in self.config.volume_matches_trades_exchanges
            )
            self._track(key, first)
            for data_type in PROVEN_TYPES:
                book.observe_gap(data_type, first, first + 1)
            # A feed-wide gap read before this symbol's first event (the gap stream has its own consumer) still
            # covers it.
            for gap in self.gaps.feed_wide(exchange):
                book.observe_gap(gap.data_type, gap.start_ns, gap.end_ns)
        return book

    def restore(self, exchange: str, symbol: str, first_minute_ns: int) -> SymbolLedger:
        """Re-create an instrument's ledger from the store at start-up (rows are restored by the caller)."""
        key = (exchange, symbol)
        book = self.ledgers[key] = SymbolLedger(
            exchange,
            symbol,
            first_minute_ns,
            volume_matches_trades=exchange in self.config.volume_matches_trades_exchanges,
        )
        self._track(key, first_minute_ns)
        return book

    def _track(self, key: InstrumentKey, first_minute_ns: int) -> None:
        self._persisted[key] = {}
        self._checked_through[key] = first_minute_ns
        self._judged_through[key] = first_minute_ns
        self._missing[key] = set()

    def mark_persisted(self, exchange: str, symbol: str, minute_start_ns: int, state: BucketState) -> None:
        self._persisted[(exchange, symbol)][minute_start_ns] = state

    def symbols(self, exchange: str) -> list[str]:
        return sorted(symbol for ex, symbol in self.ledgers if ex == exchange)

    def exchanges(self) -> list[str]:
        return sorted({exchange for exchange, _ in self.ledgers})

    # ---- observations ---------------------------------------------------------------------------------------

    def observe_trade(self, trade: Trade) -> None:
        self.ledger(trade.exchange, trade.symbol, trade.ts_event_ns).observe_trade(
            trade.ts_event_ns, backfilled=trade.backfilled, size=trade.size
        )

    def observe_candle(self, candle: Candle) -> Revision | None:
        return self.ledger(candle.exchange, candle.symbol, candle.open_time_ns).observe_candle(candle)

    def observe_gap(self, gap: Gap, now_ns: int) -> GapRecord | None:
        """Record a reported gap; returns it when new. Feed-wide gaps touch every symbol of the exchange."""
        record = record_of(gap, now_ns)
        if not self.gaps.add(record):
            return None
        if gap.symbol is not None:
            self.ledger(gap.exchange, gap.symbol, gap.start_ns)
        for key, book in self.ledgers.items():
            if key[0] == gap.exchange and record.covers(key[1]):
                touched = book.observe_gap(gap.data_type, gap.start_ns, gap.end_ns)
                if touched:  # minutes already settled are judged again
                    self._checked_through[key] = min(self._checked_through[key], touched[0])
        return record

    def give_up(self, ask: BackfillAsk) -> None:
        """The venue cannot supply ``ask`` (beyond its history): its minutes stay missing, and are not asked again."""
        book = self.ledgers[(ask.exchange, ask.symbol)]
        book.observe_settled(ask.data_type, ask.start_ns, ask.end_ns)
        for minute in book.minutes(ask.start_ns, ask.end_ns):
            book.record(minute).given_up = True
            book.dirty.add(minute)

    # ---- the watermark and the states -----------------------------------------------------------------------

    def watermark_ns(self, now_ns: int) -> int:
        """Minutes ending at or before this are judged; later ones are pending."""
        return min(now_ns - self.config.grace_ns, self.caught_up_ns - self.config.grace_ns)

    def states(
        self, exchange: str, symbol: str, start_ns: int, end_ns: int, now_ns: int
    ) -> Iterator[tuple[int, BucketState]]:
        key = (exchange, symbol)
        book = self.ledgers.get(key)
        if book is None:
            return
        watermark = self.watermark_ns(now_ns)
        judged, through = self._persisted[key], self._judged_through[key]
        for minute in book.minutes(start_ns, end_ns):
            # A judged minute keeps its state until an observation makes it dirty (then it is judged again).
            state = judged.get(minute) if minute < through and minute not in book.dirty else None
            yield minute, state if state is not None else book.state_of(minute, watermark)

    def counts(self, exchange: str, symbol: str, start_ns: int, end_ns: int, now_ns: int) -> BucketCounts:
        return BucketCounts.of(state for _, state in self.states(exchange, symbol, start_ns, end_ns, now_ns))

    # ---- persistence ----------------------------------------------------------------------------------------

    def flush_rows(self, now_ns: int) -> list[BucketRow]:
        """Rows whose record or state changed since the last flush (the caller persists them, then they count)."""
        self._judge(now_ns)
        rows = list(self._unflushed.values())
        self._unflushed.clear()
        self._resolve_gaps(now_ns)
        return rows

    def _judge(self, now_ns: int) -> None:
        """Classify what may have changed: minutes observed since (dirty) and minutes the watermark has passed."""
        watermark = self.watermark_ns(now_ns)
        for key, book in self.ledgers.items():
            persisted, missing = self._persisted[key], self._missing[key]
            expect = book.expect
            if self._expect.get(key) != expect:  # a type carried for the first time: judge every open minute again
                self._expect[key] = expect
                self._judged_through[key] = min(self._judged_through[key], self._checked_through[key])
            dirty = {minute for minute, _ in book.take_dirty()}
            start = self._judged_through[key]
            end = max(start, min(minute_of(watermark), start + MAX_FLUSH_MINUTES * MINUTE_NS))
            for minute in sorted(dirty.union(range(start, end, MINUTE_NS))):
                record = book.record(minute)
                state = classify(record, minute, watermark, expect)
                if state is BucketState.MISSING:
                    missing.add(minute)
                else:
                    missing.discard(minute)
                if persisted.get(minute) is not state or minute in dirty:
                    self._unflushed[(key, minute)] = BucketRow(key[0], key[1], minute, state, record)
                    persisted[minute] = state
                    self._candidates = None
            self._judged_through[key] = end
            # The settled prefix passes final minutes and those the venue cannot supply (kept missing).
            checked = self._checked_through[key]
            while checked < end and self._settled(book, persisted.get(checked), checked):
                checked += MINUTE_NS
            self._checked_through[key] = checked

    @staticmethod
    def _settled(book: SymbolLedger, state: BucketState | None, minute: int) -> bool:
        return state in FINAL_STATES or (state is BucketState.MISSING and book.record(minute).given_up)

    def forget_before(self, minute_start_ns: int) -> None:
        """Drop what is persisted and settled before ``minute_start_ns`` (the in-memory horizon)."""
        for key, book in self.ledgers.items():
            horizon = min(minute_start_ns, self._checked_through[key])
            if horizon > book.first_minute_ns and not book.dirty:
                book.forget_before(horizon)
                persisted = self._persisted[key]
                for minute in [m for m in persisted if m < horizon]:
                    del persisted[minute]
        self.gaps.forget_closed_before(minute_start_ns)

    def _resolve_gaps(self, now_ns: int) -> None:
        """Close the gaps whose every minute is settled. Each gap scans on from where it stopped last time, so the
        cost per flush follows what changed, not how many minutes the open gaps span."""
        watermark = self.watermark_ns(now_ns)
        by_exchange: dict[str, list[InstrumentKey]] = {}
        for key in self.ledgers:
            by_exchange.setdefault(key[0], []).append(key)
        for gap in list(self.gaps.open_gaps()):
            if gap.data_type not in PROVEN_TYPES:
                # Quotes, books and funding have no REST history to fetch: the loss stands, recorded as such.
                self.gaps.update(gap.gap_id, state=GapState.UNRECOVERABLE, now_ns=now_ns)
                continue
            cursor = self._gap_cursor.get(gap.gap_id, minute_of(gap.start_ns))
            touched = unsettled = False
            next_cursor, fetching = gap.end_ns, False
            for key in by_exchange.get(gap.exchange, []):
                if not gap.covers(key[1]):
                    continue
                book, persisted = self.ledgers[key], self._persisted[key]
                for minute in minutes_touching(max(cursor, gap.start_ns, book.first_minute_ns), gap.end_ns):
                    touched = True
                    state = persisted.get(minute)
                    if not self._settled(book, state, minute):
                        unsettled = True
                        next_cursor = min(next_cursor, minute)
                        fetching = fetching or bool(book.record(minute).in_flight)
                        break
                    if state is BucketState.MISSING:
                        self._gap_given_up.add(gap.gap_id)
            if unsettled:
                self._gap_cursor[gap.gap_id] = next_cursor
                if fetching and gap.state is GapState.OPEN:
                    self.gaps.update(gap.gap_id, state=GapState.BACKFILLING, now_ns=now_ns)
                continue
            if not touched and gap.end_ns > watermark:
                continue  # touches no minute the ledger tracks yet, and may still: wait for the watermark
            # All its minutes accounted for — or it touches none the ledger tracks (it ended before any of its
            # symbols was first seen): nothing it could have lost is counted anywhere.
            given_up = gap.gap_id in self._gap_given_up
            self.gaps.update(gap.gap_id, state=GapState.UNRECOVERABLE if given_up else GapState.RESOLVED, now_ns=now_ns)
            self._gap_cursor.pop(gap.gap_id, None)
            self._gap_given_up.discard(gap.gap_id)

    # ---- backfill planning -----------------------------------------------------------------------------------

    def plan_backfills(self, now_ns: int, *, busy: set[str]) -> list[BackfillAsk]:
        """Windows of missing minutes to fetch, per data type; `busy` holds the keys of asks still running."""
        self._judge(now_ns)
        if self._candidates is None:  # something was judged anew since the last plan
            self._candidates = _round_robin(self._plan_candidates())
        asks: list[BackfillAsk] = []
        for ask, unreported in self._candidates:
            if ask.key in busy:
                continue
            asks.append(ask)
            if unreported:
                scan = scan_record(
                    ask.exchange,
                    ask.symbol,
                    ask.data_type,
                    start_ns=ask.start_ns,
                    end_ns=ask.end_ns,
                    ts_detected_ns=now_ns,
                )
                self.gaps.add(scan)
        return asks

    def _plan_candidates(self) -> Iterator[tuple[BackfillAsk, bool]]:
        """Every ask the judged states call for, and whether no report covers it (a scan gap)."""
        for (exchange, symbol), book in self.ledgers.items():
            runs: dict[DataType, list[int]] = {data_type: [] for data_type in PROVEN_TYPES}
            expect = book.expect
            for minute in sorted(self._missing[(exchange, symbol)]):
                record = book.record(minute)
                for data_type in record.needs_proof(expect):
                    finding = record.finding(data_type)
                    arrived = finding is not Finding.DATA or record.backfilled_rows(data_type) > 0
                    wanted = finding is Finding.NONE or not arrived
                    if data_type not in record.in_flight and not record.given_up and wanted:
                        runs[data_type].append(minute)
            for data_type, minutes in runs.items():
                for first, last in _runs(minutes, self.config.max_ask_minutes):
                    unreported = not any(book.record(m).suspect for m in range(first, last + MINUTE_NS, MINUTE_NS))
                    yield BackfillAsk(exchange, symbol, data_type, first, last + MINUTE_NS), unreported


def _runs(minutes: list[int], max_minutes: int) -> Iterator[tuple[int, int]]:
    """Contiguous runs of sorted minute starts, each at most `max_minutes` long: (first, last) inclusive."""
    if not minutes:
        return
    first = last = minutes[0]
    for minute in minutes[1:]:
        if minute == last + MINUTE_NS and (minute - first) // MINUTE_NS < max_minutes:
            last = minute
            continue
        yield first, last
        first = last = minute
    yield first, last


def _round_robin(candidates: Iterable[tuple[BackfillAsk, bool]]) -> list[tuple[BackfillAsk, bool]]:
    """Each instrument's asks in time order, the instruments taking turns: the driver submits only a few jobs per
    collector at a time, and in instrument order the first instruments' backlog would starve the last ones (the
    full-size scenario left two of ten symbols unrepaired that way)."""
    per_instrument: dict[tuple[str, str], list[tuple[BackfillAsk, bool]]] = {}
    for candidate in candidates:
        per_instrument.setdefault((candidate[0].exchange, candidate[0].symbol), []).append(candidate)
    for asks in per_instrument.values():
        asks.sort(key=lambda candidate: (candidate[0].start_ns, candidate[0].data_type))
    turns = itertools.zip_longest(*per_instrument.values())
    return [candidate for turn in turns for candidate in turn if candidate is not None]
