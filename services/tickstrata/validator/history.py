"""The ledger's history: which minutes QualityService reads from QuestDB, the SQL that reads them, the rows decoded.

Pure. The in-memory ``LedgerBook`` answers every minute it holds; QuestDB (``quality_buckets``) answers the
minutes of a window that lie before it:

- an instrument the book tracks holds its minutes from ``SymbolLedger.first_minute_ns`` on (where it was first
  seen, where a restart's reload resumed, or where ``LedgerBook.forget_before`` moved it: the horizon, or an
  older minute that is not settled and persisted yet); minutes before it come from QuestDB;
- an instrument the book does not track (none of its rows was within the horizon reloaded at start, and nothing
  of it was seen since) is read from QuestDB before the book's earliest held minute, the smallest
  ``first_minute_ns`` of all ledgers (every minute, when the book holds no instrument).

Each row of ``quality_buckets`` is one bucket: its dedup keys are ``(ts, exchange, symbol)``, so a later write
of the same minute (a state that changed) replaces the earlier one, and a plain ``count()`` per state counts
buckets. A minute with no row was never tracked by a ledger (the validator writes a row for every minute it
tracks once the watermark passes it): like a minute before an instrument's first minute in memory, it is not
counted and ListBuckets shows it as 0 (unspecified).

Text in the SQL is quoted by ``sql_text`` (exchange and symbol are validated before they get here); times are
``int``-cast.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tickstrata.common.completeness import BucketCounts, BucketState
from tickstrata.common.questdb_rest import sql_text
from tickstrata.common.questdb_schema import QUALITY_BUCKETS_TABLE
from tickstrata.validator.book import InstrumentKey, LedgerBook

FOREVER_NS: Final = 2**63 - 1
"""The cut of an empty book: QuestDB answers every minute."""


class HistoryUnavailableError(RuntimeError):
    """QuestDB could not answer a read of the ledger's history (down, too slow, or refusing the statement)."""


def _ts_at_least(ns: int) -> str:
    return f"ts >= {int(ns)}::timestamp_ns"


def _ts_before(ns: int) -> str:
    return f"ts < {int(ns)}::timestamp_ns"


def _one_of(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(sql_text(v) for v in sorted(values))})"


@dataclass(frozen=True, slots=True)
class HistoryCut:
    """Per instrument, the first minute the in-memory book answers; QuestDB answers the minutes before it."""

    untracked_ns: int
    """The cut of every instrument the book does not track: the book's earliest held minute (at or before every
    tracked cut, which ``where`` relies on)."""
    tracked: Mapping[InstrumentKey, int] = field(default_factory=dict)

    @classmethod
    def of_book(cls, book: LedgerBook) -> HistoryCut:
        """A snapshot: read the book's minutes against it before the next ``await`` (the horizon only advances)."""
        tracked = {key: ledger.first_minute_ns for key, ledger in book.ledgers.items()}
        return cls(min(tracked.values(), default=FOREVER_NS), tracked)

    def of(self, exchange: str, symbol: str) -> int:
        return self.tracked.get((exchange, symbol), self.untracked_ns)

    def only(self, exchange: str, symbol: str) -> HistoryCut:
        return HistoryCut(self.of(exchange, symbol))


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """The minutes of ``[start_ns, end_ns)`` QuestDB answers: those before the cut of each matching instrument."""

    cut: HistoryCut
    start_ns: int
    end_ns: int
    exchanges: frozenset[str] = frozenset()
    """Only these exchanges; empty: every exchange."""
    symbols: frozenset[str] = frozenset()
    """Only these symbols; empty: every symbol."""

    def _matches(self, exchange: str, symbol: str) -> bool:
        return (not self.exchanges or exchange in self.exchanges) and (not self.symbols or symbol in self.symbols)

    def _later_cuts(self) -> dict[InstrumentKey, int]:
        """Matching tracked instruments whose cut is after both the window's start and the untracked cut."""
        floor = max(self.start_ns, self.cut.untracked_ns)
        return {key: ns for key, ns in self.cut.tracked.items() if ns > floor and self._matches(*key)}

    @property
    def upper_ns(self) -> int:
        """No minute at or after this comes from QuestDB."""
        return min(self.end_ns, max([self.cut.untracked_ns, *self._later_cuts().values()]))

    @property
    def empty(self) -> bool:
        return self.start_ns >= self.upper_ns

    def covers(self, exchange: str, symbol: str, minute_ns: int) -> bool:
        """Whether QuestDB answers this minute (what ``where`` selects, for one row)."""
        end = min(self.end_ns, self.cut.of(exchange, symbol))
        return self._matches(exchange, symbol) and self.start_ns <= minute_ns < end

    def where(self) -> str:
        """The SQL condition selecting exactly the rows ``covers`` accepts."""
        upper = self.upper_ns
        terms = [_ts_at_least(self.start_ns), _ts_before(upper)]
        if self.exchanges:
            terms.append(_one_of("exchange", self.exchanges))
        if self.symbols:
            terms.append(_one_of("symbol", self.symbols))
        if self.cut.untracked_ns < upper:
            # Some instruments are answered from QuestDB after the untracked cut: before their own cut only.
            alternatives = [_ts_before(self.cut.untracked_ns)] if self.cut.untracked_ns > self.start_ns else []
            alternatives += _instrument_terms(
                ((ex, sym), self.start_ns, min(ns, upper)) for (ex, sym), ns in self._later_cuts().items()
            )
            terms.append("(" + " OR ".join(alternatives) + ")")
        return " AND ".join(terms)


@dataclass(frozen=True, slots=True)
class Span:
    """Minutes ``[start_ns, end_ns)`` of one instrument to read from QuestDB (part of a ListBuckets page)."""

    exchange: str
    symbol: str
    start_ns: int
    end_ns: int


def page_spans(items: Sequence[tuple[InstrumentKey, int]], hour_ns: int, until_ns: int, cut: HistoryCut) -> list[Span]:
    """The QuestDB part of a page of (instrument, hour start) rows: per instrument, its hours before its cut."""
    hours: dict[InstrumentKey, list[int]] = {}
    for key, hour in items:
        hours.setdefault(key, []).append(hour)
    spans = []
    for (exchange, symbol), starts in hours.items():
        end = min(max(starts) + hour_ns, until_ns, cut.of(exchange, symbol))
        if min(starts) < end:
            spans.append(Span(exchange, symbol, min(starts), end))
    return spans


def _instrument_terms(parts: Iterable[tuple[InstrumentKey, int, int]]) -> list[str]:
    """``(exchange = .. AND symbol IN (..) AND ts in [start, end))`` per exchange and window, symbols grouped."""
    grouped: dict[tuple[str, int, int], list[str]] = {}
    for (exchange, symbol), start, end in parts:
        grouped.setdefault((exchange, start, end), []).append(symbol)
    return [
        f"(exchange = {sql_text(exchange)} AND {_one_of('symbol', symbols)} AND {_ts_at_least(start)} "
        f"AND {_ts_before(end)})"
        for (exchange, start, end), symbols in sorted(grouped.items())
    ]


# ---- statements ---------------------------------------------------------------------------------------------


def counts_sql(window: HistoryWindow) -> str:
    """Buckets per instrument and state in the window's QuestDB part, with each group's first minute."""
    return (
        "SELECT exchange, symbol, state, count(), cast(min(ts) AS LONG) "  # noqa: S608 - a constant, ints, quoted text
        f"FROM {QUALITY_BUCKETS_TABLE} WHERE {window.where()} "
        "GROUP BY exchange, symbol, state ORDER BY exchange, symbol, state"
    )


def instruments_sql(window: HistoryWindow) -> str:
    """The instruments with at least one bucket in the window's QuestDB part."""
    return (
        f"SELECT DISTINCT exchange, symbol FROM {QUALITY_BUCKETS_TABLE} "  # noqa: S608 - a constant, ints, quoted text
        f"WHERE {window.where()} ORDER BY exchange, symbol"
    )


def states_sql(spans: Sequence[Span]) -> str:
    """Every bucket's minute and state in the spans (one row per bucket: the table's dedup keys)."""
    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    terms = _instrument_terms(((s.exchange, s.symbol), s.start_ns, s.end_ns) for s in spans)
    return (
        "SELECT cast(ts AS LONG), exchange, symbol, state "  # noqa: S608 - a constant, ints, quoted text
        f"FROM {QUALITY_BUCKETS_TABLE} WHERE {_ts_at_least(start)} AND {_ts_before(end)} AND ({' OR '.join(terms)})"
    )


# ---- rows ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryCounts:
    """One instrument's buckets in QuestDB over a window: counts by state and the first minute counted."""

    counts: BucketCounts
    first_minute_ns: int


def decode_counts(rows: Iterable[Sequence[Any]]) -> dict[InstrumentKey, HistoryCounts]:
    """``counts_sql`` rows → per instrument."""
    result: dict[InstrumentKey, HistoryCounts] = {}
    for exchange, symbol, state, count, first_ns in rows:
        key = (str(exchange), str(symbol))
        counts, first = BucketCounts(**{BucketState(state).value: int(count)}), int(first_ns)
        seen = result.get(key)
        if seen is not None:
            counts, first = seen.counts + counts, min(seen.first_minute_ns, first)
        result[key] = HistoryCounts(counts, first)
    return result


def decode_instruments(rows: Iterable[Sequence[Any]]) -> list[InstrumentKey]:
    return [(str(exchange), str(symbol)) for exchange, symbol in rows]


def decode_states(rows: Iterable[Sequence[Any]]) -> dict[InstrumentKey, dict[int, BucketState]]:
    """``states_sql`` rows → per instrument, minute → state."""
    result: dict[InstrumentKey, dict[int, BucketState]] = {}
    for ts, exchange, symbol, state in rows:
        result.setdefault((str(exchange), str(symbol)), {})[int(ts)] = BucketState(state)
    return result
