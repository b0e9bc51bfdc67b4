"""The backfill driver against a scripted BackfillService: asks, evidence, settling, retries and giving up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from tests.unit.common._samples import trade
from tests.unit.validator.test_book import settle_first_minute
from tickstrata.backfill.v1 import backfill_service_pb2 as pb
from tickstrata.common.completeness import BucketState
from tickstrata.validator.backfill_driver import BackfillDriver, DriverConfig
from tickstrata.validator.book import BookConfig, LedgerBook
from tickstrata.validator.gaps import GapState
from tickstrata.validator.ledger import MINUTE_NS

T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS
SEC = 1_000_000_000


def minute(i: int) -> int:
    return T0 + i * MINUTE_NS


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


@dataclass
class FakeCollector:
    """Answers Backfill and GetBackfillStatus from a script; records every request."""

    on_backfill: Callable[[pb.BackfillRequest], pb.BackfillResponse]
    on_status: Callable[[str], pb.GetBackfillStatusResponse]
    requests: list[pb.BackfillRequest] = field(default_factory=list)

    async def Backfill(self, request: pb.BackfillRequest, timeout: float) -> pb.BackfillResponse:  # noqa: N802, ASYNC109
        self.requests.append(request)
        return self.on_backfill(request)

    async def GetBackfillStatus(  # noqa: N802
        self,
        request: pb.GetBackfillStatusRequest,
        timeout: float,  # noqa: ASYNC109 - the stub's signature
    ) -> pb.GetBackfillStatusResponse:
        return self.on_status(request.job_id)


def setup(
    collector: FakeCollector, clock: list[int], wall: list[int] | None = None
) -> tuple[LedgerBook, BackfillDriver]:
    """A book with trades in minutes 0 and 2 (minute 1 is a hole nobody reported), its watermark past minute 2.
    `clock` is the market clock; `wall` (default: the same list) the wall clock the backoffs wait on."""
    wall_clock = clock if wall is None else wall
    book = LedgerBook(BookConfig(grace_ns=SEC))
    for i in (-1, 0, 2):
        book.observe_trade(trade(ts_event_ns=minute(i) + 5, trade_id=str(i)))
    settle_first_minute(book)  # the partly watched first minute is not what these tests are about
    book.caught_up_ns = minute(3) + 2 * SEC
    driver = BackfillDriver(
        book,
        {"binance": "unused:1"},
        DriverConfig(max_jobs_per_exchange=8, retry_min_secs=1),
        clock_ns=lambda: clock[0],
        wall_clock_ns=lambda: wall_clock[0],
    )
    driver._stub = lambda exchange, symbol: collector  # type: ignore[assignment,method-assign,return-value]
    return book, driver


def job(request: pb.BackfillRequest, status: Any, *, evidence: Any = 0, **extra: Any) -> pb.BackfillJob:
    run = pb.BucketEvidence(start_ns=request.start_ns, end_ns=request.end_ns, finding=evidence)
    buckets = [run] if evidence else []
    return pb.BackfillJob(
        job_id=f"job-{request.data_type}", data_type=request.data_type, start_ns=request.start_ns,
        end_ns=request.end_ns, status=status, buckets=buckets, **extra,
    )  # fmt: skip


def state_of(book: LedgerBook, i: int, now_ns: int) -> BucketState:
    return dict(book.states("binance", "BTC-USDT", minute(i), minute(i + 1), now_ns))[minute(i)]


def test_a_hole_is_asked_for_both_types_and_empty_evidence_makes_it_exchange_empty() -> None:
    clock = [minute(3) + 2 * SEC]
    asked: dict[str, pb.BackfillRequest] = {}

    def backfill(request: pb.BackfillRequest) -> pb.BackfillResponse:
        asked[f"job-{request.data_type}"] = request
        return pb.BackfillResponse(job=job(request, pb.BACKFILL_STATUS_QUEUED))

    def status(job_id: str) -> pb.GetBackfillStatusResponse:
        done = job(asked[job_id], pb.BACKFILL_STATUS_SUCCEEDED, evidence=pb.BUCKET_FINDING_EMPTY,
                   ts_finished_ns=clock[0])  # fmt: skip
        return pb.GetBackfillStatusResponse(job=done)

    collector = FakeCollector(backfill, status)
    book, driver = setup(collector, clock)
    asyncio.run(driver.step())
    assert [(r.start_ns, r.end_ns) for r in collector.requests] == [(minute(1), minute(2))] * 2
    assert {r.request_id.rsplit("#", 1)[1] for r in collector.requests} == {"0"}
    assert state_of(book, 1, clock[0]) is BucketState.PENDING  # in flight
    book.flush_rows(clock[0])
    assert {g.state for g in book.gaps.open_gaps()} == {GapState.BACKFILLING}
    asyncio.run(driver.step())  # the jobs succeeded: evidence recorded, not settled until the consumer caught up
    assert driver.in_flight == 2
    book.caught_up_ns = clock[0] + 2 * SEC
    asyncio.run(driver.step())
    assert driver.in_flight == 0
    assert state_of(book, 1, clock[0]) is BucketState.EXCHANGE_EMPTY
    book.flush_rows(clock[0])
    assert list(book.gaps.open_gaps()) == []


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_a_busy_or_absent_collector_is_asked_again_after_a_backoff_under_a_new_request_id(
    code: grpc.StatusCode,
) -> None:
    clock = [minute(3) + 2 * SEC]
    answers = iter([rpc_error(code), rpc_error(code)])

    def backfill(request: pb.BackfillRequest) -> pb.BackfillResponse:
        error = next(answers, None)
        if error is not None:
            raise error
        return pb.BackfillResponse(job=job(request, pb.BACKFILL_STATUS_QUEUED))

    collector = FakeCollector(backfill, lambda job_id: pb.GetBackfillStatusResponse())
    book, driver = setup(collector, clock)
    asyncio.run(driver.step())
    assert len(collector.requests) == 1  # the answer is about the collector: the candles ask is not tried now
    assert state_of(book, 1, clock[0]) is BucketState.MISSING
    asyncio.run(driver.step())
    assert len(collector.requests) == 1  # inside the collector's backoff: nothing asked
    clock[0] += 5 * SEC
    asyncio.run(driver.step())
    assert len(collector.requests) == 2  # the trades ask again (#1), refused again: backed off again
    clock[0] += 5 * SEC
    asyncio.run(driver.step())
    # Both asks go now: the trades ask as its third attempt, the candles ask (never tried) as its first.
    assert [r.request_id.rsplit("#", 1)[1] for r in collector.requests] == ["0", "1", "2", "0"]
    assert driver.in_flight == 2


def test_backoffs_wait_on_the_wall_clock_whatever_the_market_clock_does() -> None:
    """At 120x market speed a 1 s backoff must still be a wall second: a collector restarts in wall time."""
    clock, wall = [minute(3) + 2 * SEC], [0]
    refuse = [True]

    def backfill(request: pb.BackfillRequest) -> pb.BackfillResponse:
        if refuse[0]:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, "connection refused")
        return pb.BackfillResponse(job=job(request, pb.BACKFILL_STATUS_QUEUED))

    collector = FakeCollector(backfill, lambda job_id: pb.GetBackfillStatusResponse())
    _, driver = setup(collector, clock, wall)
    asyncio.run(driver.step())
    assert len(collector.requests) == 1
    clock[0] += 120 * SEC  # two market minutes, no wall time: still backing off
    asyncio.run(driver.step())
    assert len(collector.requests) == 1
    refuse[0] = False
    wall[0] += 2 * SEC
    asyncio.run(driver.step())
    assert driver.in_flight == 2


def test_an_instrument_the_collector_does_not_serve_is_given_up_and_its_gap_unrecoverable() -> None:
    clock = [minute(3) + 2 * SEC]

    def backfill(request: pb.BackfillRequest) -> pb.BackfillResponse:
        raise rpc_error(grpc.StatusCode.NOT_FOUND, "not this collector's instrument")

    collector = FakeCollector(backfill, lambda job_id: pb.GetBackfillStatusResponse())
    book, driver = setup(collector, clock)
    asyncio.run(driver.step())
    assert driver.stats.given_up == 2
    book.flush_rows(clock[0])
    assert {g.state for g in book.gaps.take_changed()} == {GapState.UNRECOVERABLE}
    clock[0] += 3600 * SEC
    asyncio.run(driver.step())
    assert len(collector.requests) == 2  # never asked again
    assert state_of(book, 1, clock[0]) is BucketState.MISSING


def test_a_collector_that_forgot_its_job_is_asked_again() -> None:
    clock = [minute(3) + 2 * SEC]

    def backfill(request: pb.BackfillRequest) -> pb.BackfillResponse:
        return pb.BackfillResponse(job=job(request, pb.BACKFILL_STATUS_QUEUED))

    def status(job_id: str) -> pb.GetBackfillStatusResponse:
        raise rpc_error(grpc.StatusCode.NOT_FOUND, f"no job {job_id}")  # restarted: its jobs are gone

    collector = FakeCollector(backfill, status)
    _, driver = setup(collector, clock)
    asyncio.run(driver.step())
    asyncio.run(driver.step())  # both jobs unknown: dropped, asked again after the backoff
    assert driver.in_flight == 0
    clock[0] += 5 * SEC
    asyncio.run(driver.step())
    assert len(collector.requests) == 4
    assert {r.request_id.rsplit("#", 1)[1] for r in collector.requests[2:]} == {"1"}
