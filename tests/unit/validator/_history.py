"""A ledger whose older minutes only the store holds: the scenario of the QualityService history tests.

BTC-USDT is watched from minute -1 (partly watched: missing, given up) to 189; minute 30 has no data (the venue
cannot supply it: missing, given up), 95 and 100 are confirmed empty, 150 has no data and no answer yet (missing).
ETH-USDT is first seen at minute 150 (missing: partly watched). The book then forgets everything before minute 120
(`LedgerBook.forget_before`, as the validator's tick does), so BTC-USDT's minutes -1..119 live only in the store.
SOL-USDT was watched over minutes 10..19 by an earlier run (10 missing, 11..19 present) and is not tracked now.

The rows are what `LedgerBook.flush_rows` returns, in write order: a first flush while minutes 30..59 were still
pending, then the final one (the same buckets again, the second write wins under the table's dedup keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from tests.unit.common._samples import trade
from tickstrata.common.completeness import BucketCounts, BucketState
from tickstrata.common.events import DataType
from tickstrata.validator.book import BackfillAsk, BookConfig, BucketRow, InstrumentKey, LedgerBook
from tickstrata.validator.history import HistoryCounts, HistoryUnavailableError, HistoryWindow, Span
from tickstrata.validator.ledger import MINUTE_NS, BucketRecord, Finding

SEC: Final = 1_000_000_000
HOUR_NS: Final = 60 * MINUTE_NS
T0: Final = 1_800_000_000 * SEC // HOUR_NS * HOUR_NS  # a whole hour
NOW: Final = T0 + 190 * MINUTE_NS + 30 * SEC
HORIZON_MINUTE: Final = 120
GIVEN_UP: Final = (-1, 30)
EMPTY: Final = (95, 100)
UNANSWERED: Final = 150
ETH_FIRST: Final = 150


def minute(i: int) -> int:
    return T0 + i * MINUTE_NS


def _trades(book: LedgerBook, exchange: str, symbol: str, minutes: range, skip: tuple[int, ...] = ()) -> None:
    for i in minutes:
        if i not in skip:
            book.observe_trade(trade(exchange=exchange, symbol=symbol, ts_event_ns=minute(i) + 5, trade_id=str(i)))


def ledger_book(exchange: str, *, forget: bool) -> tuple[LedgerBook, list[list[BucketRow]]]:
    """The live book (its horizon moved to minute 120 when ``forget``) and the rows of its two flushes."""
    book = LedgerBook(BookConfig(grace_ns=SEC))
    holes = (30, *EMPTY, UNANSWERED)
    _trades(book, exchange, "BTC-USDT", range(-1, 60), holes)
    book.caught_up_ns = minute(30) + 30 * SEC
    first_flush = book.flush_rows(book.caught_up_ns)
    _trades(book, exchange, "BTC-USDT", range(60, 190), holes)
    _trades(book, exchange, "ETH-USDT", range(ETH_FIRST, 190))
    for i in GIVEN_UP:
        book.give_up(BackfillAsk(exchange, "BTC-USDT", DataType.TRADES, minute(i), minute(i + 1)))
    for i in EMPTY:
        for data_type in (DataType.TRADES, DataType.CANDLES):
            book.ledgers[(exchange, "BTC-USDT")].observe_finding(data_type, minute(i), minute(i + 1), Finding.EMPTY)
    book.caught_up_ns = NOW
    final_flush = book.flush_rows(NOW)
    if forget:
        book.forget_before(minute(HORIZON_MINUTE))
    return book, [first_flush, final_flush]


def stale_rows(exchange: str) -> list[BucketRow]:
    """Rows the book must win over (it is fresher), and ETH-USDT rows from before the book first saw it (140..149)."""

    def row(symbol: str, i: int, state: BucketState) -> BucketRow:
        return BucketRow(exchange, symbol, minute(i), state, BucketRecord(live_rows=1))

    older_eth = [row("ETH-USDT", i, BucketState.PRESENT) for i in range(140, ETH_FIRST)]
    return [row("BTC-USDT", UNANSWERED, BucketState.BACKFILLED), row("ETH-USDT", 160, BucketState.BACKFILLED),
            *older_eth]  # fmt: skip


def store_rows(exchange: str) -> list[list[BucketRow]]:
    """Every batch the store holds for the scenario, in write order."""
    _, batches = ledger_book(exchange, forget=True)
    return [*batches, earlier_run_rows(exchange), stale_rows(exchange)]


def earlier_run_rows(exchange: str) -> list[BucketRow]:
    """SOL-USDT's rows from a run that watched it over minutes 10..19 only."""
    book = LedgerBook(BookConfig(grace_ns=SEC))
    _trades(book, exchange, "SOL-USDT", range(10, 20))
    book.caught_up_ns = minute(20) + 2 * SEC
    return book.flush_rows(book.caught_up_ns)


class FakeStore:
    """`quality_buckets` in a dict, one row per (exchange, symbol, minute), the last write winning; it answers
    through `HistoryWindow.covers` and the page spans: the Python mirror of the SQL in `history.py`."""

    def __init__(self, batches: Iterable[Iterable[BucketRow]] = ()) -> None:
        self.rows: dict[tuple[str, str, int], BucketState] = {}
        self.calls: list[str] = []
        self.down = False
        for batch in batches:
            for row in batch:
                self.rows[(row.exchange, row.symbol, row.minute_start_ns)] = row.state

    def _read(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise HistoryUnavailableError("QuestDB cannot answer now")

    async def history_counts(self, window: HistoryWindow) -> dict[InstrumentKey, HistoryCounts]:
        self._read("counts")
        found: dict[InstrumentKey, list[tuple[int, BucketState]]] = {}
        for (exchange, symbol, ts), state in self.rows.items():
            if window.covers(exchange, symbol, ts):
                found.setdefault((exchange, symbol), []).append((ts, state))
        return {
            key: HistoryCounts(BucketCounts.of(s for _, s in rows), min(ts for ts, _ in rows))
            for key, rows in found.items()
        }

    async def history_instruments(self, window: HistoryWindow) -> list[InstrumentKey]:
        self._read("instruments")
        return sorted({(ex, sym) for ex, sym, ts in self.rows if window.covers(ex, sym, ts)})

    async def history_states(self, spans: Sequence[Span]) -> dict[InstrumentKey, dict[int, BucketState]]:
        self._read("states")
        result: dict[InstrumentKey, dict[int, BucketState]] = {}
        for span in spans:
            for (ex, sym, ts), state in self.rows.items():
                if (ex, sym) == (span.exchange, span.symbol) and span.start_ns <= ts < span.end_ns:
                    result.setdefault((ex, sym), {})[ts] = state
        return result
