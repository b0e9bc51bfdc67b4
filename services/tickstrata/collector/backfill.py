"""Backfill jobs: fetch a window of trades or candles from the venue's REST history and publish it like live data.

A job publishes through the same publisher as the sockets, so downstream sees one path; trades carry
`backfilled=True` and candles `source=rest`. Trades come from `aggTrades`, the same id space as the live
`@aggTrade` stream, so a backfilled trade dedups exactly against one that arrived live. Windows are closed
`[start_ns, end_ns]` like gap windows. Jobs are idempotent by `request_id`: a retried call returns the first job.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestClient, RestError
from tickstrata.collector.venues.binance import BinanceAdapter
from tickstrata.common.events import DataType, Trade

logger = logging.getLogger(__name__)

HOUR_MS: Final = 3_600_000
MINUTE_MS: Final = 60_000
NS_PER_MS: Final = 1_000_000
MAX_JOBS_KEPT: Final = 1000  # finished jobs are forgotten oldest first: bounded memory
MAX_WINDOW_DAYS: Final = 31  # one request should not monopolise the venue's weight budget for hours


class JobStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BackfillRequestError(ValueError):
    """The request cannot be served as asked (wrong venue, unknown symbol, bad window); not retryable."""


@dataclass
class BackfillJob:
    job_id: str
    exchange: str
    symbol: str
    data_type: DataType
    start_ns: int
    end_ns: int
    reason: str
    status: JobStatus = JobStatus.QUEUED
    rows_published: int = 0
    covered_until_ns: int = 0
    ts_created_ns: int = field(default_factory=time.time_ns)
    ts_finished_ns: int = 0
    error_message: str = ""
    retryable: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class BackfillJobs:
    def __init__(self, adapter: BinanceAdapter, rest: RestClient, publisher: Publisher) -> None:
        self._adapter = adapter
        self._rest = rest
        self._publisher = publisher
        self._jobs: OrderedDict[str, BackfillJob] = OrderedDict()
        self._by_request: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, job_id: str) -> BackfillJob | None:
        return self._jobs.get(job_id)

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
        """Validate and start a job (or return the one started earlier with the same `request_id`)."""
        if request_id and request_id in self._by_request and self._by_request[request_id] in self._jobs:
            return self._jobs[self._by_request[request_id]]
        self._validate(exchange, symbol, data_type, start_ns, end_ns)
        job = BackfillJob(
            job_id=f"{self._adapter.exchange}-{time.time_ns()}-{next(self._ids)}",
            exchange=exchange,
            symbol=symbol,
            data_type=data_type,
            start_ns=start_ns,
            end_ns=end_ns,
            reason=reason,
            covered_until_ns=start_ns,
        )
        self._jobs[job.job_id] = job
        if request_id:
            self._by_request[request_id] = job.job_id
        while len(self._jobs) > MAX_JOBS_KEPT:
            self._jobs.popitem(last=False)
        task = asyncio.create_task(self._run(job), name=f"backfill-{job.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _validate(self, exchange: str, symbol: str, data_type: DataType, start_ns: int, end_ns: int) -> None:
        if exchange != self._adapter.exchange:
            raise BackfillRequestError(f"this collector serves {self._adapter.exchange}, not {exchange!r}")
        if self._adapter.registry.by_symbol(symbol) is None:
            raise BackfillRequestError(f"unknown symbol {symbol!r} on {exchange}")
        if data_type not in (DataType.TRADES, DataType.CANDLES):
            raise BackfillRequestError(f"backfill serves trades and candles, not {data_type}")
        if not 0 < start_ns <= end_ns:
            raise BackfillRequestError(f"window [{start_ns}, {end_ns}] is empty or inverted")
        if end_ns - start_ns > MAX_WINDOW_DAYS * 86_400 * 10**9:
            raise BackfillRequestError(f"window longer than {MAX_WINDOW_DAYS} days: split it")
        if start_ns > time.time_ns():
            raise BackfillRequestError("window starts in the future")

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
        finally:
            job.ts_finished_ns = time.time_ns()
            job.done.set()
            logger.info(
                "backfill finished",
                extra={"job_id": job.job_id, "status": job.status.value, "rows": job.rows_published},
            )

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
        trades = self._adapter.parse_agg_trades(body, job.symbol, time.time_ns())
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
            candles = adapter.parse_klines(body, job.symbol, time.time_ns(), now_ms=time.time_ns() // NS_PER_MS)
            await self._publisher.put_many(candles)
            job.rows_published += len(candles)
            cursor_ms = page_end_ms + 1
            job.covered_until_ns = min(job.end_ns, cursor_ms * NS_PER_MS)
