"""QualityService: completeness per instrument and per exchange, bucket states for the heatmap, gaps, violations.

Thin: requests are checked here. Bucket answers (GetCompleteness, GetFeedCompleteness, ListBuckets) come from
the in-memory `LedgerBook` for the minutes it holds and from QuestDB's `quality_buckets` for the older part of
the window (`history.py`): per instrument, the book holds its minutes from `SymbolLedger.first_minute_ns` on
(the horizon `forget_before` moved it to, or an older minute not yet settled and persisted, or where it was first
seen or reloaded), and QuestDB answers `[start, first_minute_ns)`; an instrument the book does not track is read
from QuestDB before the book's earliest held minute. QuestDB counts (GROUP BY state) and lists states; a minute
with no row there was never tracked: not counted, 0 (unspecified) in ListBuckets, like a minute before an
instrument's first minute in memory. QuestDB not answering such a read is UNAVAILABLE, never a partial answer.
Gaps come from the book, violations from QuestDB. Windows are half-open; bucket windows are rounded out to whole
minutes (hours for ListBuckets).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, NoReturn, TypeVar

import grpc

from tickstrata.common.clock import market_time_ns
from tickstrata.common.completeness import BucketCounts, BucketState, completeness_percent
from tickstrata.common.events import validate_exchange, validate_symbol
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.quality.v1 import quality_service_pb2_grpc as pb_grpc
from tickstrata.validator.book import LedgerBook
from tickstrata.validator.gaps import GapRecord, GapState
from tickstrata.validator.history import HistoryCut, HistoryUnavailableError, HistoryWindow, page_spans
from tickstrata.validator.ledger import MINUTE_NS
from tickstrata.validator.rules import ViolationKind
from tickstrata.validator.store import QualityStore

Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")

HOUR_NS: Final = 60 * MINUTE_NS
DAY_NS: Final = 24 * HOUR_NS
MAX_BUCKET_WINDOW_NS: Final = 31 * DAY_NS
DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
DEFAULT_BUCKET_PAGE: Final = 500
MAX_BUCKET_PAGE: Final = 5000

_STATE_NUMBERS: Final = {
    BucketState.PRESENT: pb.BUCKET_STATE_PRESENT,
    BucketState.BACKFILLED: pb.BUCKET_STATE_BACKFILLED,
    BucketState.EXCHANGE_EMPTY: pb.BUCKET_STATE_EXCHANGE_EMPTY,
    BucketState.MISSING: pb.BUCKET_STATE_MISSING,
    BucketState.PENDING: pb.BUCKET_STATE_PENDING,
}
_GAP_STATES: Final = {
    GapState.OPEN: pb.GAP_STATE_OPEN,
    GapState.BACKFILLING: pb.GAP_STATE_BACKFILLING,
    GapState.RESOLVED: pb.GAP_STATE_RESOLVED,
    GapState.UNRECOVERABLE: pb.GAP_STATE_UNRECOVERABLE,
}
_GAP_STATE_OF_NUMBER: Final = {number: state for state, number in _GAP_STATES.items()}
_VIOLATION_NUMBERS: Final = {kind: pb.ViolationKind.Value(f"VIOLATION_KIND_{kind.name}") for kind in ViolationKind}
_VIOLATION_OF_NUMBER: Final = {number: kind for kind, number in _VIOLATION_NUMBERS.items()}


class InvalidRequestError(ValueError):
    pass


def counts_message(counts: BucketCounts) -> pb.BucketCounts:
    return pb.BucketCounts(
        present=counts.present,
        backfilled=counts.backfilled,
        exchange_empty=counts.exchange_empty,
        missing=counts.missing,
        pending=counts.pending,
    )


def minute_window(start_ns: int, end_ns: int, now_ns: int, *, default_span_ns: int | None = None) -> tuple[int, int]:
    """[start, end) rounded out to whole minutes; end 0 is now; start 0 is `default_span_ns` before the end."""
    end = end_ns or now_ns
    start = start_ns if start_ns or default_span_ns is None else end - default_span_ns
    if start < 0 or end < 0:
        raise InvalidRequestError("start_ns and end_ns must not be negative")
    start -= start % MINUTE_NS
    end += -end % MINUTE_NS
    if start >= end:
        raise InvalidRequestError(f"the window [{start_ns}, {end_ns}) is empty or inverted")
    return start, end


def _page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidRequestError("page_size must not be negative")
    return min(requested or default, maximum)


def _cursor(token: str) -> tuple[int, str]:
    if not token:
        return 0, ""
    start, sep, ident = token.partition(":")
    if not sep or not start.isdigit():
        raise InvalidRequestError("page_token is not one this server issued")
    return int(start), ident


def gap_message(gap: GapRecord) -> pb.Gap:
    kind_name = f"GAP_KIND_{gap.kind.upper()}"
    known = set(pb.GapKind.keys())
    kind = pb.GapKind.Value(kind_name) if kind_name in known else pb.GAP_KIND_UNSPECIFIED
    return pb.Gap(
        gap_id=gap.gap_id,
        exchange=gap.exchange,
        symbol=gap.symbol or "",
        data_type=md.DataType.Value(f"DATA_TYPE_{gap.data_type.upper()}"),
        kind=kind,
        start_ns=gap.start_ns,
        end_ns=gap.end_ns,
        cause=gap.cause,
        state=_GAP_STATES[gap.state],
        backfill_job_id=gap.backfill_job_id,
        ts_detected_ns=gap.ts_detected_ns,
        ts_closed_ns=gap.ts_closed_ns,
    )


class QualityService(pb_grpc.QualityServiceServicer):
    def __init__(self, book: LedgerBook, store: QualityStore, *, clock_ns: Callable[[], int] = market_time_ns) -> None:
        self._book = book
        self._store = store
        self._clock_ns = clock_ns

    async def _invalid(self, context: Context, error: Exception) -> NoReturn:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        raise AssertionError("unreachable")

    async def _history(self, context: Context, read: Awaitable[T]) -> T:
        """A read of QuestDB's part of a window; QuestDB not answering fails the whole call, UNAVAILABLE."""
        try:
            return await read
        except HistoryUnavailableError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
            raise AssertionError("unreachable") from error

    async def GetCompleteness(self, request: pb.GetCompletenessRequest, context: Context) -> pb.GetCompletenessResponse:
        now_ns = self._clock_ns()
        try:
            exchange, symbol = validate_exchange(request.exchange), validate_symbol(request.symbol)
            start, end = minute_window(request.start_ns, request.end_ns, now_ns)
        except ValueError as error:
            await self._invalid(context, error)
        # The book's part first, against one cut, before any await (its horizon may advance meanwhile).
        cut = HistoryCut.of_book(self._book).only(exchange, symbol)
        ledger = self._book.ledgers.get((exchange, symbol))
        counted_start, counts, found = end, BucketCounts(), ledger is not None
        if ledger is not None:
            counted_start = min(max(start, ledger.first_minute_ns), end)
            counts = self._book.counts(exchange, symbol, counted_start, end, now_ns)
        window = HistoryWindow(cut, start, end, frozenset({exchange}), frozenset({symbol}))
        if not window.empty:
            older = (await self._history(context, self._store.history_counts(window))).get((exchange, symbol))
            if older is not None:
                counted_start, counts, found = older.first_minute_ns, older.counts + counts, True
        if not found:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"the validator does not track {exchange} {symbol}")
        return pb.GetCompletenessResponse(
            exchange=exchange,
            symbol=symbol,
            start_ns=counted_start,
            end_ns=end,
            counts=counts_message(counts),
            completeness_percent=completeness_percent(counts),
            watermark_ns=self._book.watermark_ns(now_ns),
        )

    async def GetFeedCompleteness(
        self, request: pb.GetFeedCompletenessRequest, context: Context
    ) -> pb.GetFeedCompletenessResponse:
        now_ns = self._clock_ns()
        try:
            wanted = [validate_exchange(exchange) for exchange in request.exchanges]
            start, end = minute_window(request.start_ns, request.end_ns, now_ns, default_span_ns=DAY_NS)
        except ValueError as error:
            await self._invalid(context, error)
        cut = HistoryCut.of_book(self._book)
        counts: dict[tuple[str, str], BucketCounts] = {
            key: self._book.counts(*key, start, end, now_ns)
            for key in self._book.ledgers
            if not wanted or key[0] in wanted
        }
        window = HistoryWindow(cut, start, end, frozenset(wanted))
        if not window.empty:
            for key, older in (await self._history(context, self._store.history_counts(window))).items():
                counts[key] = counts.get(key, BucketCounts()) + older.counts
        reply = pb.GetFeedCompletenessResponse(start_ns=start, end_ns=end)
        for exchange in wanted or sorted({ex for ex, _ in counts}):
            symbols = sorted(symbol for ex, symbol in counts if ex == exchange)
            total = sum((counts[(exchange, symbol)] for symbol in symbols), BucketCounts())
            reply.feeds.append(
                pb.FeedCompleteness(
                    exchange=exchange,
                    symbols=symbols,
                    counts=counts_message(total),
                    completeness_percent=completeness_percent(total),
                    watermark_ns=self._book.watermark_ns(now_ns),
                    open_gaps=sum(1 for _ in self._book.gaps.open_gaps(exchange)),
                )
            )
        return reply

    async def ListBuckets(self, request: pb.ListBucketsRequest, context: Context) -> pb.ListBucketsResponse:
        now_ns = self._clock_ns()
        try:
            exchange = validate_exchange(request.exchange) if request.exchange else ""
            symbols = {validate_symbol(s) for s in request.symbols}
            until = request.end_ns or now_ns
            until += -until % MINUTE_NS  # minutes after the window are not listed, not even as pending
            start, end = request.start_ns - request.start_ns % HOUR_NS, until + -until % HOUR_NS
            if request.start_ns <= 0 or start >= end or end - start > MAX_BUCKET_WINDOW_NS:
                raise InvalidRequestError("the window must be non-empty, start after 0 and span at most 31 days")
            size = _page_size(request.page_size, DEFAULT_BUCKET_PAGE, MAX_BUCKET_PAGE)
            skip = int(request.page_token) if request.page_token.isdigit() else 0
            if request.page_token and not request.page_token.isdigit():
                raise InvalidRequestError("page_token is not one this server issued")
        except ValueError as error:
            await self._invalid(context, error)
        exchanges = frozenset({exchange} if exchange else ())
        keys = {
            key
            for key in self._book.ledgers
            if (not exchange or key[0] == exchange) and (not symbols or key[1] in symbols)
        }
        # Instruments the book does not track have rows in QuestDB only before its earliest held minute.
        untracked = HistoryWindow(
            HistoryCut(HistoryCut.of_book(self._book).untracked_ns), start, until, exchanges, frozenset(symbols)
        )
        every_one_tracked = bool(exchange and symbols) and all((exchange, s) in self._book.ledgers for s in symbols)
        if not untracked.empty and not every_one_tracked:
            keys.update(await self._history(context, self._store.history_instruments(untracked)))
        ordered = sorted(keys)
        hours = (end - start) // HOUR_NS
        total = len(ordered) * hours
        items = [(ordered[i // hours], start + i % hours * HOUR_NS) for i in range(skip, min(skip + size, total))]
        # The book's part first, against one cut, before the next await (its horizon may advance meanwhile).
        cut = HistoryCut.of_book(self._book)
        listed = [dict(self._book.states(*key, hour, min(hour + HOUR_NS, until), now_ns)) for key, hour in items]
        spans = page_spans(items, HOUR_NS, until, cut)
        older = await self._history(context, self._store.history_states(spans)) if spans else {}
        rows: list[pb.HourBuckets] = []
        for (key, hour), states in zip(items, listed, strict=True):
            stored = older.get(key, {})
            minutes = range(hour, min(hour + HOUR_NS, until, cut.of(*key)), MINUTE_NS)
            states.update((minute, stored[minute]) for minute in minutes if minute in stored)
            # Minutes nobody tracked (before the first, no row in QuestDB, after the window) are unspecified (0).
            padded = [
                int(_STATE_NUMBERS[states[minute]]) if minute in states else 0
                for minute in range(hour, hour + HOUR_NS, MINUTE_NS)
            ]
            rows.append(
                pb.HourBuckets(
                    exchange=key[0],
                    symbol=key[1],
                    hour_start_ns=hour,
                    counts=counts_message(BucketCounts.of(states.values())),
                    states=bytes(padded),
                )
            )
        token = str(skip + len(rows)) if skip + len(rows) < total else ""
        return pb.ListBucketsResponse(rows=rows, next_page_token=token)

    async def ListGaps(self, request: pb.ListGapsRequest, context: Context) -> pb.ListGapsResponse:
        now_ns = self._clock_ns()
        try:
            exchange = validate_exchange(request.exchange) if request.exchange else ""
            symbol = validate_symbol(request.symbol) if request.symbol else ""
            end = request.end_ns or now_ns
            if request.start_ns < 0 or request.start_ns >= end:
                raise InvalidRequestError(f"the window [{request.start_ns}, {request.end_ns}) is empty or inverted")
            size = _page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
            after = _cursor(request.page_token)
            states = [_GAP_STATE_OF_NUMBER[s] for s in request.states if s in _GAP_STATE_OF_NUMBER]
        except ValueError as error:
            await self._invalid(context, error)
        gaps = self._book.gaps.matching(
            exchange=exchange, symbol=symbol, start_ns=request.start_ns, end_ns=end, states=states
        )
        if after[0]:
            gaps = [g for g in gaps if (g.start_ns, g.gap_id) > after]
        page = gaps[:size]
        token = f"{page[-1].start_ns}:{page[-1].gap_id}" if len(gaps) > size else ""
        return pb.ListGapsResponse(gaps=[gap_message(g) for g in page], next_page_token=token)

    async def ListViolations(self, request: pb.ListViolationsRequest, context: Context) -> pb.ListViolationsResponse:
        now_ns = self._clock_ns()
        try:
            exchange = validate_exchange(request.exchange) if request.exchange else ""
            symbol = validate_symbol(request.symbol) if request.symbol else ""
            end = request.end_ns or now_ns
            if request.start_ns < 0 or request.start_ns >= end:
                raise InvalidRequestError(f"the window [{request.start_ns}, {request.end_ns}) is empty or inverted")
            size = _page_size(request.page_size, DEFAULT_PAGE, MAX_PAGE)
            after = _cursor(request.page_token)
            kinds = [str(_VIOLATION_OF_NUMBER[k]) for k in request.kinds if k in _VIOLATION_OF_NUMBER]
        except ValueError as error:
            await self._invalid(context, error)
        rows = await self._store.list_violations(
            exchange=exchange, symbol=symbol, kinds=kinds, start_ns=request.start_ns, end_ns=end, after=after
        )
        page = rows[:size]
        reply = pb.ListViolationsResponse()
        for start, violation_id, ex, sym, kind, end_ns, detail, detected in page:
            reply.violations.append(
                pb.Violation(
                    violation_id=violation_id,
                    exchange=ex,
                    symbol=sym,
                    kind=_VIOLATION_NUMBERS.get(ViolationKind(kind), pb.VIOLATION_KIND_UNSPECIFIED),
                    start_ns=int(start),
                    end_ns=int(end_ns),
                    detail=detail,
                    ts_detected_ns=int(detected),
                )
            )
        if len(rows) > size:
            reply.next_page_token = f"{page[-1][0]}:{page[-1][1]}"
        return reply
