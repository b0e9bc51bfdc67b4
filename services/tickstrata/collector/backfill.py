"""Backfill jobs: fetch a window of trades or candles from the venue's REST history and publish it like live data.

A job publishes through the same publisher as the sockets, so downstream sees one path; trades carry
`backfilled=True` and candles `source=rest`. Trades come from `aggTrades`, the same id space as the live
`@aggTrade` stream, so a backfilled trade dedups exactly against one that arrived live. Windows are half-open,
`[start_ns, end_ns)`, like gap windows (docs/architecture.md, "Time windows"): a trade stamped, or a candle opening,
outside the window is not published. The venue's inclusive millisecond bounds are derived exactly: `startTime =
start_ns // 1e6`, `endTime = ceil(end_ns / 1e6) - 1` (the last millisecond before `end_ns`). Jobs are idempotent by
`request_id`: a retried call returns the first job.

Each job reports evidence for every whole minute of its window (`backfill_evidence`): what the venue answered, run
by run, filled fetch by fetch. Trade fetches are cut at minute boundaries (an hour at most, the venue's limit) so no
minute is split between two fetches.

Jobs run `max_running_jobs` at a time and queue beyond that (`backfill_table.JobTable`, pure and clocked from
outside); `BackfillJobs` is the asyncio edge that runs them. Every REST call goes through the process's one
`RestClient`, whose shared budget never sends inside a venue `Retry-After` and stops at a 418 (`collector/rest.py`).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from tickstrata.collector.backfill_evidence import (
    MINUTE_NS,
    EvidenceRun,
    answered_minutes,
    append_runs,
    candle_runs,
    trade_runs,
)
from tickstrata.collector.backfill_table import (
    BackfillNotFoundError,
    BackfillRequestError,
    JobLimits,
    JobTable,
    QueueFullError,
)
from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestClient, RestError
from tickstrata.collector.venues.binance import BinanceAdapter
from tickstrata.common.clock import market_time_ns
from tickstrata.common.events import Candle, DataType, Trade

logger = logging.getLogger(__name__)

HOUR_MS: Final = 3_600_000
MINUTE_MS: Final = 60_000
NS_PER_MS: Final = 1_000_000
NS_PER_SEC: Final = 1_000_000_000
MAX_WINDOW_DAYS: Final = 31  # one request should not monopolise the venue's weight budget for hours
# Kept with every job for its retention: a caller must not be able to park megabytes per job in our memory.
MAX_REQUEST_ID_CHARS: Final = 200
MAX_REASON_CHARS: Final = 1000
VENUE_CLOCK_MARGIN_NS: Final = NS_PER_SEC
"""A minute gets evidence only if it ended this long before the fetch: the venue's clock may lag ours a little."""

Clock = Callable[[], int]  # wall time, ns since the epoch: the job timestamps the API reports

__all__ = [
    "BackfillJob",
    "BackfillJobs",
    "BackfillNotFoundError",
    "BackfillRequestError",
    "JobLimits",
    "JobStatus",
    "QueueFullError",
]


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass
class BackfillJob:
    job_id: str
    exchange: str
    symbol: str
    data_type: DataType
    start_ns: int
    end_ns: int
    reason: str
    ts_created_ns: int
    status: JobStatus = JobStatus.QUEUED
    rows_published: int = 0
    covered_until_ns: int = 0
    ts_finished_ns: int = 0
    error_message: str = ""
    retryable: bool = False
    buckets: list[EvidenceRun] = field(default_factory=list)
    """Evidence per whole minute of the window, as runs in time order (see `backfill_evidence`)."""
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class BackfillJobs:
    def __init__(
        self,
        adapter: BinanceAdapter,
        rest: RestClient,
        publisher: Publisher,
        *,
        limits: JobLimits | None = None,
        meter: Meter | None = None,
        clock: Clock = market_time_ns,
    ) -> None:
        self._adapter = adapter
        self._rest = rest
        self._publisher = publisher
        self._clock = clock
        self._table: JobTable[BackfillJob] = JobTable(limits or JobLimits())
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        # One backfill request in flight at a time, whatever the number of running jobs: a request sent while
        # another is in flight would reach the venue after that one's 429 and inside its Retry-After, which
        # Binance (and the simulator) answer with a 418 ban. Jobs still overlap publishing with fetching.
        self._venue_turn = asyncio.Lock()
        self._refused_in_a_row = 0  # logged once per episode: a retry storm should not flood the log
        meter = meter or metrics.get_meter("tickstrata")
        self._refused = meter.create_counter(
            "tickstrata.collector.backfill.refused",
            unit="{request}",
            description="Backfill requests refused because the job queue was full (RESOURCE_EXHAUSTED)",
        )
        meter.create_observable_gauge(
            "tickstrata.collector.backfill.jobs",
            callbacks=[self._observe_jobs],
            unit="{job}",
            description="Backfill jobs running (state=running), waiting (state=queued) and finished jobs kept "
            "(state=finished)",
        )

    @property
    def limits(self) -> JobLimits:
        return self._table.limits

    @property
    def running(self) -> int:
        return self._table.running

    @property
    def queued(self) -> int:
        return self._table.queued

    def _observe_jobs(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(self._table.running, {"state": "running"}),
            Observation(self._table.queued, {"state": "queued"}),
            Observation(self._table.finished, {"state": "finished"}),
        ]

    def get(self, job_id: str) -> BackfillJob | None:
        return self._table.get(job_id, self._clock())

    def submit(
        self,
        *,
        exchange: str,
        symbol: str,
        data_type: DataType,
        start_ns: int,
        end_ns: int,
        reason: str,
        request_id: str,
    ) -> BackfillJob:
        """Validate and start or queue a job (or return the one taken earlier with the same `request_id`).

        Raises `BackfillRequestError` for a malformed request, `BackfillNotFoundError` for an instrument outside this
        feed, `QueueFullError` when the queue is full. A repeated `request_id` is answered from the table before any
        check: it takes no new place.
        """
        now_ns = self._clock()
        if request_id:
            existing = self._table.by_request(request_id, now_ns)
            if existing is not None:
                return existing
        self._validate(data_type, start_ns, end_ns, now_ns=now_ns)
        if len(request_id) > MAX_REQUEST_ID_CHARS or len(reason) > MAX_REASON_CHARS:
            raise BackfillRequestError(
                f"request_id (at most {MAX_REQUEST_ID_CHARS} characters) or reason (at most {MAX_REASON_CHARS}) "
                "too long"
            )
        if exchange != self._adapter.exchange:
            raise BackfillNotFoundError(f"this collector serves {self._adapter.exchange}, not {exchange!r}")
        if self._adapter.registry.by_symbol(symbol) is None:
            raise BackfillNotFoundError(f"unknown symbol {symbol!r} on {exchange}")
        job = BackfillJob(
            job_id=f"{self._adapter.exchange}-{now_ns}-{next(self._ids)}",
            exchange=exchange,
            symbol=symbol,
            data_type=data_type,
            start_ns=start_ns,
            end_ns=end_ns,
            reason=reason,
            ts_created_ns=now_ns,
            covered_until_ns=start_ns,
        )
        try:
            runs_now = self._table.admit(job.job_id, job, request_id, now_ns)
        except QueueFullError as error:
            self._refused.add(1, {"exchange": self._adapter.exchange})
            if self._refused_in_a_row == 0:
                logger.warning("backfill refused: the job queue is full", extra={"queued": error.queued})
            self._refused_in_a_row += 1
            raise
        if self._refused_in_a_row:
            logger.info("backfill admitting again", extra={"refused": self._refused_in_a_row})
            self._refused_in_a_row = 0
        if runs_now:
            self._start(job)
        else:
            logger.info("backfill queued", extra={"job_id": job.job_id, "queued": self._table.queued})
        return job

    async def cancel_all(self) -> None:
        """Stop: queued jobs end FAILED (retryable) without starting, running ones are cancelled."""
        self._stopping = True
        for job in self._table.queued_jobs():
            self._end(job, "cancelled: collector stopping")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _validate(self, data_type: DataType, start_ns: int, end_ns: int, *, now_ns: int) -> None:
        if data_type not in (DataType.TRADES, DataType.CANDLES):
            raise BackfillRequestError(f"backfill serves trades and candles, not {data_type}")
        if not 0 < start_ns < end_ns:
            raise BackfillRequestError(f"window [{start_ns}, {end_ns}) is empty or inverted")
        if end_ns - start_ns > MAX_WINDOW_DAYS * 86_400 * NS_PER_SEC:
            raise BackfillRequestError(f"window longer than {MAX_WINDOW_DAYS} days: split it")
        if start_ns > now_ns:
            raise BackfillRequestError("window starts in the future")

    def _start(self, job: BackfillJob) -> None:
        if self._stopping:  # a slot freed during shutdown: nothing new starts
            self._end(job, "cancelled: collector stopping")
            return
        task = asyncio.create_task(self._run(job), name=f"backfill-{job.job_id}")
        self._tasks.add(task)
        # The slot is freed by the task's done callback, which runs however the task ends (even when it is
        # cancelled before its first step, where a `finally` in `_run` would never execute).
        task.add_done_callback(lambda done: self._on_done(job, done))

    def _on_done(self, job: BackfillJob, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            job.status, job.error_message, job.retryable = JobStatus.FAILED, "cancelled: collector stopping", True
        elif (error := task.exception()) is not None:  # a bug or an unexpected failure: the job ends, visibly
            job.status, job.error_message, job.retryable = JobStatus.FAILED, f"internal error: {error!r}", True
            logger.error("backfill failed unexpectedly", extra={"job_id": job.job_id}, exc_info=error)
        self._finish(job)

    def _end(self, job: BackfillJob, message: str) -> None:
        """End a job that never ran."""
        job.status, job.error_message, job.retryable = JobStatus.FAILED, message, True
        self._finish(job)

    def _finish(self, job: BackfillJob) -> None:
        job.ts_finished_ns = self._clock()
        promoted = self._table.finish(job.job_id, job.ts_finished_ns)
        job.done.set()
        logger.info(
            "backfill finished", extra={"job_id": job.job_id, "status": job.status.value, "rows": job.rows_published}
        )
        if promoted is not None:
            self._start(promoted[1])

    async def _run(self, job: BackfillJob) -> None:
        job.status = JobStatus.RUNNING
        logger.info("backfill started", extra={"job_id": job.job_id, "symbol": job.symbol, "reason": job.reason})
        try:
            if job.data_type is DataType.TRADES:
                await self._trades(job)
            else:
                await self._candles(job)
            job.status = JobStatus.SUCCEEDED
            job.covered_until_ns = job.end_ns
        except RestError as error:
            job.status, job.error_message = JobStatus.FAILED, str(error)
            job.retryable = error.status is None or error.status >= 429
        except ValueError as error:  # an invalid venue response (the adapter's parse errors are ValueErrors)
            job.status, job.error_message, job.retryable = JobStatus.FAILED, f"invalid venue response: {error}", True

    async def _trades(self, job: BackfillJob) -> None:
        adapter, limit = self._adapter, self._adapter.agg_trades_page_limit
        last_ms = -(-job.end_ns // NS_PER_MS) - 1  # the venue's inclusive endTime: the last ms before end_ns
        cursor_ms = job.start_ns // NS_PER_MS
        while cursor_ms <= last_ms:
            # Chunks end on a minute boundary (so every whole minute lies in one fetch) within the venue's hour.
            chunk_end_ms = min(last_ms, (cursor_ms + HOUR_MS) // MINUTE_MS * MINUTE_MS - 1)
            chunk_end_ns = (chunk_end_ms + 1) * NS_PER_MS
            ended_by_ns = self._clock() - VENUE_CLOCK_MARGIN_NS
            by_minute: Counter[int] = Counter()
            request = adapter.agg_trades_request(job.symbol, cursor_ms, chunk_end_ms, limit)
            page = await self._fetch_trades(job, request.path, request.params, request.weight)
            while True:
                in_chunk = [trade for trade in page if trade.ts_event_ns < chunk_end_ns]
                await self._publish_trades(job, in_chunk, by_minute)
                # A full page means more trades in this chunk than one page holds: continue by id, not by time,
                # because many trades can share the millisecond a time cursor would resume from.
                if len(page) < limit or len(in_chunk) < len(page):
                    break
                request = adapter.agg_trades_from_id_request(job.symbol, int(page[-1].trade_id) + 1, limit)
                page = await self._fetch_trades(job, request.path, request.params, request.weight)
            minutes = answered_minutes(
                job.start_ns,
                job.end_ns,
                fetched_start_ns=cursor_ms * NS_PER_MS,
                fetched_end_ns=chunk_end_ns,
                ended_by_ns=ended_by_ns,
            )
            append_runs(job.buckets, trade_runs(minutes, by_minute))
            cursor_ms = chunk_end_ms + 1
            job.covered_until_ns = min(job.end_ns, chunk_end_ns)

    async def _get(self, path: str, params: dict[str, str], weight: int) -> bytes:
        async with self._venue_turn:
            return await self._rest.get(path, params, weight=weight)

    async def _fetch_trades(self, job: BackfillJob, path: str, params: dict[str, str], weight: int) -> list[Trade]:
        body = await self._get(path, params, weight)
        return self._adapter.parse_agg_trades(body, job.symbol, self._clock())

    async def _publish_trades(self, job: BackfillJob, trades: list[Trade], by_minute: Counter[int]) -> None:
        """Publish the trades inside the window and count them per minute."""
        inside = [trade for trade in trades if job.start_ns <= trade.ts_event_ns < job.end_ns]
        if inside:
            await self._publisher.put_many(inside)
        job.rows_published += len(inside)
        by_minute.update(trade.ts_event_ns // MINUTE_NS for trade in inside)

    async def _candles(self, job: BackfillJob) -> None:
        adapter, limit = self._adapter, self._adapter.kline_page_limit
        # Candles are keyed by open time: every minute whose open lies in the window, the first at or after start_ns.
        cursor_ms = -(-job.start_ns // MINUTE_NS) * MINUTE_MS
        last_ms = -(-job.end_ns // NS_PER_MS) - 1
        while cursor_ms <= last_ms:
            page_end_ms = min(last_ms, cursor_ms + limit * MINUTE_MS - 1)  # at most `limit` rows: never cut short
            ended_by_ns = self._clock() - VENUE_CLOCK_MARGIN_NS
            request = adapter.klines_request(job.symbol, cursor_ms, page_end_ms, limit)
            body = await self._get(request.path, request.params, request.weight)
            now_ns = self._clock()
            candles = adapter.parse_klines(body, job.symbol, now_ns, now_ms=now_ns // NS_PER_MS)
            inside = [candle for candle in candles if job.start_ns <= candle.open_time_ns < job.end_ns]
            if inside:
                await self._publisher.put_many(inside)
            job.rows_published += len(inside)
            minutes = answered_minutes(
                job.start_ns,
                job.end_ns,
                fetched_start_ns=cursor_ms * NS_PER_MS,
                fetched_end_ns=(page_end_ms + 1) * NS_PER_MS,
                ended_by_ns=ended_by_ns,
            )
            append_runs(job.buckets, candle_runs(minutes, ((c.open_time_ns, _traded(c)) for c in inside)))
            cursor_ms = page_end_ms + 1
            job.covered_until_ns = min(job.end_ns, cursor_ms * NS_PER_MS)


def _traded(candle: Candle) -> bool:
    """Whether anything traded in the candle: its trade count, or its volume where the venue gives no count."""
    return candle.trade_count > 0 if candle.trade_count is not None else candle.volume > 0
