"""QualityService: completeness per instrument and per exchange, bucket states for the heatmap, gaps, violations.

Thin: requests are checked here, answers come from the in-memory `LedgerBook` (the horizon the validator keeps;
see docs/validator.md) and, for violations, from QuestDB. Windows are half-open; bucket windows are rounded out
to whole minutes (hours for ListBuckets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final, NoReturn

import grpc

from tickstrata.common.completeness import BucketCounts, BucketState, completeness_percent
from tickstrata.common.events import validate_exchange, validate_symbol
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.quality.v1 import quality_service_pb2_grpc as pb_grpc
from tickstrata.validator.book import LedgerBook
from tickstrata.validator.gaps import GapRecord, GapState
from tickstrata.validator.ledger import MINUTE_NS
from tickstrata.validator.rules import ViolationKind
from tickstrata.validator.store import QualityStore

Context = grpc.aio.ServicerContext[Any, Any]

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
    def __init__(self, book: LedgerBook, store: QualityStore, *, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._book = book
        self._store = store
        self._clock_ns = clock_ns

    async def _invalid(self, context: Context, error: Exception) -> NoReturn:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        raise AssertionError("unreachable")

    async def GetCompleteness(self, request: pb.GetCompletenessRequest, context: Context) -> pb.GetCompletenessResponse:
        now_ns = self._clock_ns()
        try:
            exchange, symbol = validate_exchange(request.exchange), validate_symbol(request.symbol)
            start, end = minute_window(request.start_ns, request.end_ns, now_ns)
        except ValueError as error:
            await self._invalid(context, error)
        ledger = self._book.ledgers.get((exchange, symbol))
        if ledger is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"the validator does not track {exchange} {symbol}")
        counted_start = min(max(start, ledger.first_minute_ns), end)
        counts = self._book.counts(exchange, symbol, counted_start, end, now_ns)
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
        reply = pb.GetFeedCompletenessResponse(start_ns=start, end_ns=end)
        for exchange in wanted or self._book.exchanges():
            symbols = self._book.symbols(exchange)
            total = BucketCounts()
            for symbol in symbols:
                total += self._book.counts(exchange, symbol, start, end, now_ns)
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
        keys = sorted(
            key
            for key in self._book.ledgers
            if (not exchange or key[0] == exchange) and (not symbols or key[1] in symbols)
        )
        rows: list[pb.HourBuckets] = []
        index = 0
        for ex, symbol in keys:
            for hour in range(start, end, HOUR_NS):
                if index >= skip and len(rows) < size:
                    listed = dict(self._book.states(ex, symbol, hour, min(hour + HOUR_NS, until), now_ns))
                    states = list(listed.values())
                    # Minutes the ledger does not track (before it started, after the window) are unspecified (0).
                    padded = [
                        int(_STATE_NUMBERS[listed[minute]]) if minute in listed else 0
                        for minute in range(hour, hour + HOUR_NS, MINUTE_NS)
                    ]
                    rows.append(
                        pb.HourBuckets(
                            exchange=ex,
                            symbol=symbol,
                            hour_start_ns=hour,
                            counts=counts_message(BucketCounts.of(states)),
                            states=bytes(padded),
                        )
                    )
                index += 1
        token = str(skip + len(rows)) if skip + len(rows) < index else ""
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
