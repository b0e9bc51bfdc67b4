"""Asks the collectors to backfill what the ledger is missing, and feeds their evidence back in.

    every poll: plan (LedgerBook.plan_backfills) → Backfill(wait=false, request_id) per ask, at most
    `max_jobs_per_exchange` at once → GetBackfillStatus of each → SUCCEEDED: the evidence runs become findings,
    and once the consumer has caught up past the job's end its minutes settle (rows arrived → backfilled)
    → FAILED retryable, RESOURCE_EXHAUSTED, UNAVAILABLE, or NOT_FOUND for the job (the collector restarted and
    forgot it): asked again after a capped backoff, under a new request id → FAILED not retryable or NOT_FOUND for
    the instrument: given up (the minutes stay missing, the gap becomes unrecoverable)

The collector owns the venue's REST budget (its rate limiter honours weights and Retry-After); this side only
bounds how many jobs it keeps queued there. UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED describe the
collector, not the ask: one such answer backs off every ask to that collector's address (capped, doubling while it
lasts), so a collector that is down gets one call per backoff, not one per missing window per poll. Backoffs run
on the wall clock (a collector restarts in wall seconds), planning on the market clock. Request ids are
`<ask key>#<attempt>`: a call retried after a timeout finds the job it started instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import grpc

from tickstrata.backfill.v1 import backfill_service_pb2 as pb
from tickstrata.backfill.v1 import backfill_service_pb2_grpc as pb_grpc
from tickstrata.common.backoff import backoff_delay_secs
from tickstrata.common.clock import market_time_ns
from tickstrata.common.events import DataType
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.validator.book import BackfillAsk, LedgerBook
from tickstrata.validator.gaps import GapState
from tickstrata.validator.ledger import Finding

logger = logging.getLogger(__name__)

CALL_TIMEOUT_SECS: Final = 5.0
ROUTES_REFRESH_SECS: Final = 10.0
RoutesReader = Callable[[], Awaitable[dict[tuple[str, str], str]]]
"""Reads the operator's published routes: (exchange, symbol) → host:port (`tickstrata.common.backfill_routes`)."""
SETTLE_MARGIN_NS: Final = 1_000_000_000
"""How far past a job's end the consumer must have read before its minutes settle (publish → read latency)."""
_FINDINGS: Final = {
    pb.BUCKET_FINDING_DATA: Finding.DATA,
    pb.BUCKET_FINDING_EMPTY: Finding.EMPTY,
    pb.BUCKET_FINDING_NO_RECORD: Finding.NO_RECORD,
}
_DATA_TYPES: Final = {DataType.TRADES: md.DATA_TYPE_TRADES, DataType.CANDLES: md.DATA_TYPE_CANDLES}
_RETRY_CODES: Final = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED}
)


@dataclass(frozen=True, slots=True)
class DriverConfig:
    max_jobs_per_exchange: int = 4
    poll_interval_secs: float = 0.5
    retry_min_secs: float = 1.0
    retry_max_secs: float = 60.0


@dataclass(slots=True)
class _Job:
    ask: BackfillAsk
    job_id: str
    finished_ns: int = 0
    """The collector's finish time once SUCCEEDED: the minutes settle when the consumer has read past it."""


@dataclass(slots=True)
class DriverStats:
    asked: int = 0
    succeeded: int = 0
    retried: int = 0
    given_up: int = 0
    latencies_ns: list[int] = field(default_factory=list)


class BackfillDriver:
    def __init__(
        self,
        book: LedgerBook,
        addresses: Mapping[str, str],
        config: DriverConfig | None = None,
        *,
        routes: RoutesReader | None = None,
        clock_ns: Callable[[], int] = market_time_ns,
        wall_clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._book = book
        self._addresses = dict(addresses)
        self._routes_reader = routes
        self._routes: dict[tuple[str, str], str] = {}
        self._routes_read_at = float("-inf")
        self._config = config or DriverConfig()
        self._clock_ns = clock_ns
        # Backoffs wait for a collector process (restarting, draining its queue): wall time, even when the market
        # clock runs faster (the scenario's 120x would turn a 60 s backoff into half a wall second).
        self._wall_ns = wall_clock_ns
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._jobs: dict[str, _Job] = {}
        self._attempts: dict[str, int] = {}
        self._not_before_ns: dict[str, int] = {}
        self._address_failures: dict[str, int] = {}
        self._address_not_before_ns: dict[str, int] = {}
        self._unreachable_warned: set[tuple[str, str]] = set()
        self.stats = DriverStats()
        self._rng = random.Random()

    def _address(self, exchange: str, symbol: str) -> str | None:
        return self._addresses.get(exchange) or self._routes.get((exchange, symbol))

    def _stub(self, exchange: str, symbol: str) -> pb_grpc.BackfillServiceAsyncStub | None:
        address = self._address(exchange, symbol)
        if address is None:
            if (exchange, symbol) not in self._unreachable_warned:
                logger.warning(
                    "no BackfillService address for this instrument: its holes stay missing",
                    extra={"exchange": exchange, "symbol": symbol},
                )
                self._unreachable_warned.add((exchange, symbol))
            return None
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        return pb_grpc.BackfillServiceStub(channel)

    async def _refresh_routes(self) -> None:
        if self._routes_reader is None or time.monotonic() - self._routes_read_at < ROUTES_REFRESH_SECS:
            return
        self._routes_read_at = time.monotonic()
        try:
            self._routes = await self._routes_reader()
        except Exception as error:  # the last routes stay usable; the next refresh tries again
            logger.warning("backfill routes unreadable", extra={"error": f"{type(error).__name__}: {error}"})

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception:  # one bad step must not end the repairs; the next one plans afresh
                logger.exception("backfill step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._config.poll_interval_secs)

    async def step(self) -> None:
        now_ns = self._clock_ns()
        await self._refresh_routes()
        await self._poll_jobs(now_ns)
        self._settle(now_ns)
        asks = self._book.plan_backfills(now_ns, busy=set(self._jobs))
        wall_ns = self._wall_ns()
        running: dict[str, int] = {}
        for job in self._jobs.values():
            running[job.ask.exchange] = running.get(job.ask.exchange, 0) + 1
        for ask in asks:
            if running.get(ask.exchange, 0) >= self._config.max_jobs_per_exchange:
                continue
            if self._not_before_ns.get(ask.key, 0) > wall_ns:
                continue
            address = self._address(ask.exchange, ask.symbol)
            if address is not None and self._address_not_before_ns.get(address, 0) > wall_ns:
                continue  # that collector is down or full: the ask waits with the others
            if await self._submit(ask, now_ns):
                running[ask.exchange] = running.get(ask.exchange, 0) + 1

    async def _submit(self, ask: BackfillAsk, now_ns: int) -> bool:
        stub = self._stub(ask.exchange, ask.symbol)
        if stub is None:
            return False
        attempt = self._attempts.get(ask.key, 0)
        request = pb.BackfillRequest(
            exchange=ask.exchange,
            symbol=ask.symbol,
            data_type=_DATA_TYPES[ask.data_type],
            start_ns=ask.start_ns,
            end_ns=ask.end_ns,
            reason=f"validator: {ask.data_type} missing in [{ask.start_ns}, {ask.end_ns})",
            request_id=f"{ask.key}#{attempt}",
        )
        try:
            reply = await stub.Backfill(request, timeout=CALL_TIMEOUT_SECS)
        except grpc.aio.AioRpcError as error:
            if error.code() in _RETRY_CODES:
                self._retry_later(ask, f"{error.code().name}: {error.details()}")
                self._back_off_address(ask)
            else:  # NOT_FOUND (not this collector's instrument), INVALID_ARGUMENT: asking again cannot help
                self._give_up(ask, f"{error.code().name}: {error.details()}")
            return False
        self._jobs[ask.key] = _Job(ask, reply.job.job_id)
        self._address_failures.pop(self._address(ask.exchange, ask.symbol) or "", None)
        self._book.ledgers[(ask.exchange, ask.symbol)].observe_asked(ask.data_type, ask.start_ns, ask.end_ns)
        for gap in self._book.gaps.matching(
            exchange=ask.exchange, symbol=ask.symbol, start_ns=ask.start_ns, end_ns=ask.end_ns
        ):
            if gap.is_open:
                self._book.gaps.update(
                    gap.gap_id, state=GapState.BACKFILLING, now_ns=now_ns, backfill_job_id=reply.job.job_id
                )
        self.stats.asked += 1
        return True

    async def _poll_jobs(self, now_ns: int) -> None:
        for key, job in list(self._jobs.items()):
            if job.finished_ns:
                continue
            stub = self._stub(job.ask.exchange, job.ask.symbol)
            if stub is None:
                continue
            try:
                reply = await stub.GetBackfillStatus(
                    pb.GetBackfillStatusRequest(job_id=job.job_id), timeout=CALL_TIMEOUT_SECS
                )
            except grpc.aio.AioRpcError as error:
                if error.code() is grpc.StatusCode.NOT_FOUND:  # the collector restarted: its jobs are gone
                    self._drop(key)
                    self._retry_later(job.ask, "the collector forgot the job (restarted)")
                elif error.code() not in _RETRY_CODES:
                    logger.warning("backfill status failed", extra={"job": job.job_id, "error": str(error.details())})
                continue
            status = reply.job.status
            if status == pb.BACKFILL_STATUS_SUCCEEDED:
                ledger = self._book.ledgers[(job.ask.exchange, job.ask.symbol)]
                for run in reply.job.buckets:
                    finding = _FINDINGS.get(run.finding)
                    if finding is not None:
                        ledger.observe_finding(job.ask.data_type, run.start_ns, run.end_ns, finding)
                job.finished_ns = reply.job.ts_finished_ns or now_ns
                self.stats.succeeded += 1
                self.stats.latencies_ns.append(max(0, now_ns - job.ask.end_ns))
            elif status == pb.BACKFILL_STATUS_FAILED:
                self._drop(key)
                if reply.job.retryable:
                    self._retry_later(job.ask, reply.job.error_message)
                else:
                    self._give_up(job.ask, reply.job.error_message)

    def _settle(self, now_ns: int) -> None:
        """Finished jobs whose rows the consumer has had the chance to read: their minutes are judged."""
        for key, job in list(self._jobs.items()):
            if job.finished_ns and self._book.caught_up_ns >= job.finished_ns + SETTLE_MARGIN_NS:
                self._drop(key)
                self._attempts[key] = self._attempts.get(key, 0) + 1  # a replan of the same window is a new job

    def _drop(self, key: str) -> None:
        job = self._jobs.pop(key)
        ask = job.ask
        self._book.ledgers[(ask.exchange, ask.symbol)].observe_settled(ask.data_type, ask.start_ns, ask.end_ns)

    def _retry_later(self, ask: BackfillAsk, why: str) -> None:
        attempt = self._attempts.get(ask.key, 0) + 1
        self._attempts[ask.key] = attempt
        delay_secs = backoff_delay_secs(
            attempt - 1, initial_secs=self._config.retry_min_secs, max_secs=self._config.retry_max_secs, rng=self._rng
        )
        self._not_before_ns[ask.key] = self._wall_ns() + int(delay_secs * 1e9)
        self.stats.retried += 1
        logger.info("backfill retried later", extra={"ask": ask.key, "attempt": attempt, "why": why})

    def _back_off_address(self, ask: BackfillAsk) -> None:
        address = self._address(ask.exchange, ask.symbol)
        if address is None:
            return
        failures = self._address_failures.get(address, 0) + 1
        self._address_failures[address] = failures
        delay_secs = backoff_delay_secs(
            failures - 1, initial_secs=self._config.retry_min_secs, max_secs=self._config.retry_max_secs, rng=self._rng
        )
        self._address_not_before_ns[address] = self._wall_ns() + int(delay_secs * 1e9)

    def _give_up(self, ask: BackfillAsk, why: str) -> None:
        logger.error("backfill impossible: the minutes stay missing", extra={"ask": ask.key, "why": why})
        self._book.give_up(ask)
        self.stats.given_up += 1

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(grace=None)
        self._channels.clear()
