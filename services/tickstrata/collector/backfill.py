"""Backfill jobs: fetch a window of trades or candles from the venue's REST history and publish it like live data.

A job publishes through the same publisher as the sockets, so downstream sees one path; trades carry
`backfilled=True` and candles `source=rest`. Trades come from `aggTrades`, the same id space as the live
`@aggTrade` stream, so a backfilled trade dedups exactly against one that arrived live. Windows are closed
`[start_ns, end_ns]` like gap windows. Jobs are idempotent by `request_id`: a retried call returns the first job.

Bounded: at most `max_concurrent_jobs` jobs hold a slot (queued or running) at once, and a new one beyond that is
refused (`TooManyJobsError`, RESOURCE_EXHAUSTED) rather than queued, because every waiting job would hold memory
and a place in the venue's weight budget. Finished jobs stay answerable for `finished_retention_secs` and at most
`max_finished_jobs` of them are kept, oldest forgotten first, together with their request ids. The bookkeeping is
`JobTable`, pure and clocked from outside; `BackfillJobs` is the asyncio edge that runs the jobs.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestClient, RestError
from tickstrata.collector.venues.binance import BinanceAdapter
from tickstrata.common.events import DataType, Trade

if TYPE_CHECKING:
    from tickstrata.collector.settings import CollectorSettings

logger = logging.getLogger(__name__)

HOUR_MS: Final = 3_600_000
MINUTE_MS: Final = 60_000
NS_PER_MS: Final = 1_000_000
NS_PER_SEC: Final = 1_000_000_000
MAX_WINDOW_DAYS: Final = 31  # one request should not monopolise the venue's weight budget for hours
# Kept with every job for its retention: a caller must not be able to park megabytes per job in our memory.
MAX_REQUEST_ID_CHARS: Final = 200
MAX_REASON_CHARS: Final = 1000

JobT = TypeVar("JobT")
Clock = Callable[[], int]  # wall time, ns since the epoch: the job timestamps the API reports


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BackfillRequestError(ValueError):
    """The request cannot be served as asked (bad window, data type, field); not retryable."""


class BackfillNotFoundError(BackfillRequestError):
    """The instrument is not in this collector's feed (another exchange, an unknown symbol)."""


class TooManyJobsError(Exception):
    """Every job slot is taken; retry once one finishes."""

    def __init__(self, running: int, limit: int) -> None:
        super().__init__(
            f"{running} backfill jobs running, the limit is {limit} (COLLECTOR_BACKFILL_MAX_CONCURRENT_JOBS): "
            "retry when one finishes (poll GetBackfillStatus)"
        )
        self.running = running
        self.limit = limit


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The bounds of `JobTable`. The defaults repeat `CollectorSettings.backfill_*` (a unit test holds them equal)
    for callers that pass no settings; the collector passes `JobLimits.from_settings(settings)`."""

    max_concurrent_jobs: int = 4
    finished_retention_ns: int = 3600 * NS_PER_SEC
    max_finished_jobs: int = 1000

    def __post_init__(self) -> None:
        if self.max_concurrent_jobs < 1 or self.max_finished_jobs < 1 or self.finished_retention_ns <= 0:
            raise ValueError(f"job limits must be positive: {self}")

    @classmethod
    def from_settings(cls, settings: CollectorSettings) -> JobLimits:
        return cls(
            max_concurrent_jobs=settings.backfill_max_concurrent_jobs,
            finished_retention_ns=round(settings.backfill_finished_retention_secs * NS_PER_SEC),
            max_finished_jobs=settings.backfill_max_finished_jobs,
        )


class JobTable(Generic[JobT]):
    """Which jobs exist, which hold a slot, which request id names which job. Pure: every call takes the time.

    A job holds a slot from `admit` until `finish`; then it is kept, in finishing order, until it is older than the
    retention or more than `max_finished_jobs` finished jobs are kept. Forgetting a job forgets its request id, so
    the memory held is bounded by `max_concurrent_jobs + max_finished_jobs` jobs whatever the callers send.
    """

    def __init__(self, limits: JobLimits) -> None:
        self.limits = limits
        self._active: dict[str, JobT] = {}
        self._finished: OrderedDict[str, tuple[int, JobT]] = OrderedDict()  # job id → (finished at, job)
        self._job_by_request: dict[str, str] = {}
        self._request_by_job: dict[str, str] = {}

    @property
    def active(self) -> int:
        """Jobs holding a slot (queued or running)."""
        return len(self._active)

    @property
    def finished(self) -> int:
        return len(self._finished)

    def get(self, job_id: str, now_ns: int) -> JobT | None:
        self.prune(now_ns)
        if job_id in self._active:
            return self._active[job_id]
        kept = self._finished.get(job_id)
        return kept[1] if kept is not None else None

    def by_request(self, request_id: str, now_ns: int) -> JobT | None:
        """The job an earlier call with this idempotency key started, while it is still kept."""
        self.prune(now_ns)
        job_id = self._job_by_request.get(request_id)
        return None if job_id is None else self.get(job_id, now_ns)

    def admit(self, job_id: str, job: JobT, request_id: str, now_ns: int) -> None:
        """Give `job` a slot, or raise `TooManyJobsError` if none is free (nothing is recorded then)."""
        self.prune(now_ns)
        if job_id in self._active or job_id in self._finished:
            raise ValueError(f"job id {job_id!r} already used")
        if len(self._active) >= self.limits.max_concurrent_jobs:
            raise TooManyJobsError(len(self._active), self.limits.max_concurrent_jobs)
        self._active[job_id] = job
        if request_id:
            self._job_by_request[request_id] = job_id
            self._request_by_job[job_id] = request_id

    def finish(self, job_id: str, now_ns: int) -> None:
        """Free the job's slot and keep it, answerable, for the retention."""
        job = self._active.pop(job_id, None)
        if job is not None:
            self._finished[job_id] = (now_ns, job)
        self.prune(now_ns)

    def prune(self, now_ns: int) -> int:
        """Forget finished jobs past the retention or beyond the count, oldest first; return how many."""
        cutoff_ns = now_ns - self.limits.finished_retention_ns
        pruned = 0
        while self._finished:
            job_id, (finished_ns, _job) = next(iter(self._finished.items()))
            if len(self._finished) <= self.limits.max_finished_jobs and finished_ns > cutoff_ns:
                break
            del self._finished[job_id]
            request_id = self._request_by_job.pop(job_id, None)
            if request_id is not None:
                del self._job_by_request[request_id]
            pruned += 1
        return pruned


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
        clock: Clock = time.time_ns,
    ) -> None:
        self._adapter = adapter
        self._rest = rest
        self._publisher = publisher
        self._clock = clock
        self._table: JobTable[BackfillJob] = JobTable(limits or JobLimits())
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused_in_a_row = 0  # logged once per episode: a retry storm should not flood the log
        meter = meter or metrics.get_meter("tickstrata")
        self._refused = meter.create_counter(
            "tickstrata.collector.backfill.refused",
            unit="{request}",
            description="Backfill requests refused because every job slot was taken (RESOURCE_EXHAUSTED)",
        )
        meter.create_observable_gauge(
            "tickstrata.collector.backfill.jobs",
            callbacks=[self._observe_jobs],
            unit="{job}",
            description="Backfill jobs holding a slot (state=active) and finished jobs kept (state=finished)",
        )

    @property
    def limits(self) -> JobLimits:
        return self._table.limits

    @property
    def active(self) -> int:
        return self._table.active

    def _observe_jobs(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(self._table.active, {"state": "active"}),
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
        """Validate and start a job (or return the one started earlier with the same `request_id`).

        Raises `BackfillRequestError` for a request that cannot be served, `TooManyJobsError` when every slot is
        taken. A repeated `request_id` is answered from the table before either check: it takes no new slot.
        """
        now_ns = self._clock()
        if request_id:
            existing = self._table.by_request(request_id, now_ns)
            if existing is not None:
                return existing
        self._validate(exchange, symbol, data_type, start_ns, end_ns, now_ns=now_ns)
        if len(request_id) > MAX_REQUEST_ID_CHARS or len(reason) > MAX_REASON_CHARS:
            raise BackfillRequestError(
                f"request_id (at most {MAX_REQUEST_ID_CHARS} characters) or reason (at most {MAX_REASON_CHARS}) "
                "too long"
            )
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
            self._table.admit(job.job_id, job, request_id, now_ns)
        except TooManyJobsError as error:
            self._refused.add(1, {"exchange": self._adapter.exchange})
            if self._refused_in_a_row == 0:
                logger.warning("backfill refused: every job slot is taken", extra={"running": error.running})
            self._refused_in_a_row += 1
            raise
        if self._refused_in_a_row:
            logger.info("backfill admitting again", extra={"refused": self._refused_in_a_row})
            self._refused_in_a_row = 0
        task = asyncio.create_task(self._run(job), name=f"backfill-{job.job_id}")
        self._tasks.add(task)
        # The slot is freed by the task's done callback, which runs however the task ends (even when it is
        # cancelled before its first step, where a `finally` in `_run` would never execute).
        task.add_done_callback(lambda done: self._on_done(job, done))
        return job

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _validate(
        self, exchange: str, symbol: str, data_type: DataType, start_ns: int, end_ns: int, *, now_ns: int
    ) -> None:
        if exchange != self._adapter.exchange:
            raise BackfillNotFoundError(f"this collector serves {self._adapter.exchange}, not {exchange!r}")
        if self._adapter.registry.by_symbol(symbol) is None:
            raise BackfillNotFoundError(f"unknown symbol {symbol!r} on {exchange}")
        if data_type not in (DataType.TRADES, DataType.CANDLES):
            raise BackfillRequestError(f"backfill serves trades and candles, not {data_type}")
        if not 0 < start_ns <= end_ns:
            raise BackfillRequestError(f"window [{start_ns}, {end_ns}] is empty or inverted")
        if end_ns - start_ns > MAX_WINDOW_DAYS * 86_400 * NS_PER_SEC:
            raise BackfillRequestError(f"window longer than {MAX_WINDOW_DAYS} days: split it")
        if start_ns > now_ns:
            raise BackfillRequestError("window starts in the future")

    def _on_done(self, job: BackfillJob, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            job.status, job.error_message, job.retryable = JobStatus.FAILED, "cancelled: collector stopping", True
        elif (error := task.exception()) is not None:  # a bug or an unexpected failure: the job ends, visibly
            job.status, job.error_message, job.retryable = JobStatus.FAILED, f"internal error: {error!r}", True
            logger.error("backfill failed unexpectedly", extra={"job_id": job.job_id}, exc_info=error)
        job.ts_finished_ns = self._clock()
        self._table.finish(job.job_id, job.ts_finished_ns)
        job.done.set()
        logger.info(
            "backfill finished", extra={"job_id": job.job_id, "status": job.status.value, "rows": job.rows_published}
        )

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
        start_ms, end_ms = job.start_ns // NS_PER_MS, job.end_ns // NS_PER_MS
        cursor_ms = start_ms
        while cursor_ms <= end_ms:
            chunk_end_ms = min(end_ms, cursor_ms + HOUR_MS - 1)
            request = adapter.agg_trades_request(job.symbol, cursor_ms, chunk_end_ms, limit)
            page = await self._fetch_trades(job, request.path, request.params, request.weight)
            # A full page means more trades in this hour than one page holds: continue by id, not by time,
            # because many trades can share the millisecond a time cursor would resume from.
            while len(page) == limit:
                next_id = int(page[-1].trade_id) + 1
                request = adapter.agg_trades_from_id_request(job.symbol, next_id, limit)
                page = await self._fetch_trades(job, request.path, request.params, request.weight)
                page = [trade for trade in page if trade.ts_event_ns <= chunk_end_ms * NS_PER_MS + NS_PER_MS - 1]
            cursor_ms = chunk_end_ms + 1
            job.covered_until_ns = min(job.end_ns, cursor_ms * NS_PER_MS)

    async def _fetch_trades(self, job: BackfillJob, path: str, params: dict[str, str], weight: int) -> list[Trade]:
        body = await self._rest.get(path, params, weight=weight)
        trades = self._adapter.parse_agg_trades(body, job.symbol, self._clock())
        await self._publisher.put_many(trades)
        job.rows_published += len(trades)
        return trades

    async def _candles(self, job: BackfillJob) -> None:
        adapter, limit = self._adapter, self._adapter.kline_page_limit
        # Candles are keyed by open time: every minute whose open lies in the window.
        cursor_ms = job.start_ns // NS_PER_MS // MINUTE_MS * MINUTE_MS
        end_ms = job.end_ns // NS_PER_MS
        while cursor_ms <= end_ms:
            page_end_ms = min(end_ms, cursor_ms + limit * MINUTE_MS - 1)
            request = adapter.klines_request(job.symbol, cursor_ms, page_end_ms, limit)
            body = await self._rest.get(request.path, request.params, weight=request.weight)
            now_ns = self._clock()
            candles = adapter.parse_klines(body, job.symbol, now_ns, now_ms=now_ns // NS_PER_MS)
            await self._publisher.put_many(candles)
            job.rows_published += len(candles)
            cursor_ms = page_end_ms + 1
            job.covered_until_ns = min(job.end_ns, cursor_ms * NS_PER_MS)
