"""The bulk history RPCs: candles and trades as Arrow record batches, read through the tier router.

    admit (RESOURCE_EXHAUSTED past QUERY_MAX_CONCURRENT_HISTORY_CALLS) → validate (INVALID_ARGUMENT)
    → known instrument? (NOT_FOUND, from the cached list) → router → tiers (UNAVAILABLE on failure,
    OUT_OF_RANGE past the row cap, checked while reading) → resample (candles) → encode per NumericEncoding
    (one scale per column; in a worker thread) → stream IPC slices

A call holds its admission until its last slice is sent: what bounds memory is how many answers exist at once.

Every call is a SERVER span continuing the caller's trace from the gRPC metadata (`traceparent`), with a CLIENT
child span per tier read, and is bounded by `QUERY_CALL_TIMEOUT_SECS` (DEADLINE_EXCEEDED) as well as by the
caller's own deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final, NoReturn

import grpc
import pyarrow as pa
from opentelemetry import propagate, trace
from opentelemetry.metrics import Meter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tickstrata.common.grpc_server import unimplemented_stream
from tickstrata.common.telemetry import ATTR_EXCHANGE, ATTR_SYMBOL
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query import tiers
from tickstrata.query.arrow_results import candle_table, ipc_streams, trade_table
from tickstrata.query.bad_values import BadValues
from tickstrata.query.history_requests import HistoryQuery, InvalidHistoryRequestError, candles_query, trades_query
from tickstrata.query.hot_tier import QuestDBHotTier, TierUnavailableError, TooManyRowsError
from tickstrata.query.instruments import InstrumentCache
from tickstrata.query.pg_pool import PgPool
from tickstrata.query.resample import drop_forming, resample
from tickstrata.query.settings import QuerySettings

Context = grpc.aio.ServicerContext[Any, Any]

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("tickstrata.query")

SERVICE: Final = "tickstrata.marketdata.v1.MarketDataService"
KNOWN_ENCODINGS: Final = frozenset(
    {md.NUMERIC_ENCODING_DECIMAL, md.NUMERIC_ENCODING_FLOAT64, md.NUMERIC_ENCODING_STRING}
)


class _AbortError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _fail(code: grpc.StatusCode, message: str) -> NoReturn:
    raise _AbortError(code, message)


class CallSlots:
    """At most `limit` calls at once; one more is refused rather than queued (a queue would hold its memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            _fail(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.limit} candle/trade calls are already running (QUERY_MAX_CONCURRENT_HISTORY_CALLS); "
                "retry with backoff",
            )
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


class HistoryRpcs:
    """Owns the tiers the bulk RPCs read (the hot tier now; the tiering issue adds warm and cold)."""

    def __init__(self, settings: QuerySettings, meter: Meter, *, bad_values: BadValues) -> None:
        self._settings = settings
        self._slots = CallSlots(settings.max_concurrent_history_calls)
        # One connection more than calls: the instrument list may be read while every admitted call reads rows.
        self._pool = PgPool(settings.questdb_pg_dsn, max_size=settings.max_concurrent_history_calls + 1)
        self._hot = QuestDBHotTier(self._pool, max_rows=settings.max_rows_per_call, bad_values=bad_values)
        self._instruments = InstrumentCache(
            self._hot.read_instruments, refresh_secs=settings.instruments_refresh_secs, meter=meter
        )
        self._tiers: list[tiers.Tier] = [self._hot]

    async def start(self) -> None:
        """Nothing to open: connections are made on first use (a tier may be down at start-up), and the instrument
        list is read by the first call that needs it, so it includes what was stored before that call."""

    async def close(self) -> None:
        """Stop a running instrument read and close the pooled connections."""
        await self._instruments.close()
        await self._pool.close()

    async def get_candles(
        self, request: pb.GetCandlesRequest, context: Context
    ) -> AsyncIterator[pb.GetCandlesResponse]:
        async for arrow_ipc, rows in self._serve("GetCandles", context, self._candles(request)):
            yield pb.GetCandlesResponse(arrow_ipc=arrow_ipc, row_count=rows)

    async def get_trades(self, request: pb.GetTradesRequest, context: Context) -> AsyncIterator[pb.GetTradesResponse]:
        async for arrow_ipc, rows in self._serve("GetTrades", context, self._trades(request)):
            yield pb.GetTradesResponse(arrow_ipc=arrow_ipc, row_count=rows)

    async def replay(self, request: pb.ReplayRequest, context: Context) -> AsyncIterator[pb.ReplayResponse]:
        async for item in unimplemented_stream(context, "Replay"):
            yield item

    # ---- the shared call path -------------------------------------------------------------------------------

    async def _serve(self, rpc: str, context: Context, work: Any) -> AsyncIterator[tuple[bytes, int]]:
        carrier = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        parent = propagate.extract(carrier)
        with (
            tracer.start_as_current_span(
                f"{SERVICE}/{rpc}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": rpc},
            ) as span,
            contextlib.ExitStack() as admission,
        ):
            try:
                admission.enter_context(self._slots.admit())
                async with asyncio.timeout(self._settings.call_timeout_secs):
                    slices: Iterator[tuple[bytes, int]] = await work
            except _AbortError as abort:
                work.close()  # not awaited when the call was refused: close it without a "never awaited" warning
                span.set_status(Status(StatusCode.ERROR, str(abort)))
                span.set_attribute("rpc.grpc.status_code", abort.code.value[0])
                await context.abort(abort.code, str(abort))
                raise AssertionError("context.abort always raises") from None
            except TimeoutError:
                message = f"{rpc} took longer than {self._settings.call_timeout_secs:g} s; ask for a smaller range"
                span.set_status(Status(StatusCode.ERROR, message))
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, message)
                raise AssertionError("context.abort always raises") from None
            rows = 0
            for arrow_ipc, count in slices:
                rows += count
                yield arrow_ipc, count
            span.set_attribute("tickstrata.rows", rows)

    async def _require_known(self, query: HistoryQuery) -> None:
        instrument = (query.exchange, query.symbol)
        try:
            known = await self._instruments.get(instrument)
        except TierUnavailableError as error:
            _fail(grpc.StatusCode.UNAVAILABLE, f"storage unavailable, retry with backoff: {error}")
        if instrument not in known:
            exchanges = {exchange for exchange, _ in known}
            what = (
                f"symbol {query.symbol!r} on {query.exchange!r}"
                if query.exchange in exchanges
                else (f"exchange {query.exchange!r}")
            )
            _fail(grpc.StatusCode.NOT_FOUND, f"tickstrata holds no data for {what}")

    async def _refuse_moved_days(self, table: str, query: HistoryQuery) -> None:
        """Refuse a range that reaches into days the tierer moved to the warm tier: answering from the hot tier alone
        would return a hole where those days' rows are."""
        try:
            moved = await self._hot.moved_days(table, query.exchange, query.symbol, query.start_ns, query.end_ns)
        except TierUnavailableError as error:
            _fail(grpc.StatusCode.UNAVAILABLE, f"storage unavailable, retry with backoff: {error}")
        if moved:
            first, last = (
                dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).date() for ns in (moved[0], moved[-1])
            )
            resume = last + dt.timedelta(days=1)
            _fail(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{len(moved)} day(s) of {table} for {query.exchange} {query.symbol} in this range ({first} to {last}) "
                f"moved to the warm tier, which this query service does not read yet; ask for a range from {resume} on",
            )

    async def _read(self, what: str, query: HistoryQuery, reader: Any) -> pa.Table:
        await self._refuse_moved_days(what, query)
        with tracer.start_as_current_span(
            f"questdb.read {what}",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": "questdb", ATTR_EXCHANGE: query.exchange, ATTR_SYMBOL: query.symbol},
        ) as span:
            try:
                table: pa.Table = await reader(self._tiers, query.exchange, query.symbol, query.start_ns, query.end_ns,
                                               now_ns=time.time_ns())  # fmt: skip
            except TooManyRowsError as error:
                _fail(grpc.StatusCode.OUT_OF_RANGE, str(error))
            except TierUnavailableError as error:
                logger.warning("storage tier unavailable", extra={"error": str(error)})
                _fail(grpc.StatusCode.UNAVAILABLE, f"storage unavailable, retry with backoff: {error}")
            span.set_attribute("db.response.returned_rows", table.num_rows)
            return table

    def _parse(self, parse: Any, request: Any) -> HistoryQuery:
        if request.numeric_encoding not in KNOWN_ENCODINGS | {md.NUMERIC_ENCODING_UNSPECIFIED}:
            _fail(grpc.StatusCode.INVALID_ARGUMENT, f"unknown numeric_encoding {request.numeric_encoding}")
        try:
            query: HistoryQuery = parse(request)
        except InvalidHistoryRequestError as error:
            _fail(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return query

    async def _candles(self, request: pb.GetCandlesRequest) -> Iterator[tuple[bytes, int]]:
        now_ns = time.time_ns()
        query = self._parse(
            lambda r: candles_query(
                r, now_ns=now_ns, max_buckets=self._settings.max_candle_buckets,
                default_batch_rows=self._settings.max_rows_per_batch,
            ),
            request,
        )  # fmt: skip
        await self._require_known(query)
        minutes = await self._read("candles", query, tiers.read_minute_candles)
        # Resampling and encoding a large answer takes CPU time: off the event loop, so small calls keep going.
        table = await asyncio.to_thread(_candle_answer, minutes, query, now_ns)
        return ipc_streams(table, query.max_rows_per_batch)

    async def _trades(self, request: pb.GetTradesRequest) -> Iterator[tuple[bytes, int]]:
        now_ns = time.time_ns()
        query = self._parse(
            lambda r: trades_query(r, now_ns=now_ns, default_batch_rows=self._settings.max_rows_per_batch), request
        )
        await self._require_known(query)
        trades = await self._read("trades", query, tiers.read_trades)
        table = await asyncio.to_thread(trade_table, query.exchange, query.symbol, trades, query.encoding)
        return ipc_streams(table, query.max_rows_per_batch)


def _candle_answer(minutes: pa.Table, query: HistoryQuery, now_ns: int) -> pa.Table:
    candles = resample(minutes, query.interval_secs, now_ns=now_ns)
    if not query.include_forming:
        candles = drop_forming(candles)
    return candle_table(query.exchange, query.symbol, candles, query.encoding)
