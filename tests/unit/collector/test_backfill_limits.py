"""Backfill jobs bounded: admission up to N, idempotent repeats, finished jobs pruned by age and count.

`JobTable` is pure: every call takes the time, so the clock here is a number the test moves. `BackfillJobs` runs
against the recorded Binance instruments, a REST client whose answers the test releases, and a publisher that
only collects: the jobs are real asyncio tasks, the venue and Redis are not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Final, cast

import grpc
import pytest

from tickstrata.backfill.v1 import backfill_service_pb2 as pb
from tickstrata.collector.backfill import (
    BackfillJob,
    BackfillJobs,
    BackfillNotFoundError,
    BackfillRequestError,
    JobLimits,
    JobStatus,
    JobTable,
    TooManyJobsError,
)
from tickstrata.collector.instruments import InstrumentRegistry
from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestClient
from tickstrata.collector.servicer import BackfillService
from tickstrata.collector.settings import CollectorSettings
from tickstrata.collector.venues import BinanceSpotAdapter
from tickstrata.common.events import DataType, Event
from tickstrata.common.settings import load_settings
from tickstrata.marketdata.v1 import market_data_pb2

DATA: Final = Path(__file__).resolve().parents[2] / "data" / "exchanges" / "binance"
SEC: Final = 1_000_000_000
T0_NS: Final = 1_767_225_600 * SEC  # 2026-01-01T00:00:00Z; the recorded aggTrades are at 00:05:01
RETENTION_SECS: Final = 600


def limits(*, jobs: int = 2, retention_secs: int = RETENTION_SECS, finished: int = 3) -> JobLimits:
    return JobLimits(max_concurrent_jobs=jobs, finished_retention_ns=retention_secs * SEC, max_finished_jobs=finished)


# ---- JobTable: the pure bookkeeping ------------------------------------------------------------------------------


def test_admission_beyond_the_limit_is_refused_and_records_nothing() -> None:
    table: JobTable[str] = JobTable(limits(jobs=2))
    table.admit("a", "job a", "req-a", T0_NS)
    table.admit("b", "job b", "req-b", T0_NS)
    with pytest.raises(TooManyJobsError) as refused:
        table.admit("c", "job c", "req-c", T0_NS)
    assert (refused.value.running, refused.value.limit) == (2, 2)
    assert "2 backfill jobs running, the limit is 2" in str(refused.value)
    assert table.active == 2
    assert table.get("c", T0_NS) is None
    assert table.by_request("req-c", T0_NS) is None  # a refused request leaves no trace to grow the table


def test_a_finished_job_frees_its_slot_and_stays_answerable() -> None:
    table: JobTable[str] = JobTable(limits(jobs=1))
    table.admit("a", "job a", "req-a", T0_NS)
    table.finish("a", T0_NS + SEC)
    table.admit("b", "job b", "req-b", T0_NS + 2 * SEC)
    assert table.active == 1
    assert table.get("a", T0_NS + 2 * SEC) == "job a"
    assert table.by_request("req-a", T0_NS + 2 * SEC) == "job a"


def test_finished_jobs_are_pruned_by_age_with_their_request_ids() -> None:
    table: JobTable[str] = JobTable(limits(jobs=2, finished=100))
    table.admit("old", "old job", "req-old", T0_NS)
    table.admit("young", "young job", "req-young", T0_NS)
    table.finish("old", T0_NS + 10 * SEC)
    table.finish("young", T0_NS + 20 * SEC)
    expiry_ns = T0_NS + 10 * SEC + RETENTION_SECS * SEC
    assert table.get("old", expiry_ns - 1) == "old job"  # kept for exactly the retention
    assert table.get("old", expiry_ns) is None
    assert table.by_request("req-old", expiry_ns) is None
    assert table.get("young", expiry_ns) == "young job"
    assert table.finished == 1


def test_finished_jobs_beyond_the_count_are_pruned_oldest_first() -> None:
    table: JobTable[str] = JobTable(limits(jobs=5, finished=3))
    for index in range(5):
        table.admit(f"j{index}", f"job {index}", f"req-{index}", T0_NS)
    for index in (3, 0, 4, 1, 2):  # finishing order, not admission order, is age
        table.finish(f"j{index}", T0_NS + SEC)
    now_ns = T0_NS + 2 * SEC
    assert [job_id for job_id in (f"j{i}" for i in range(5)) if table.get(job_id, now_ns) is not None] == [
        "j1",
        "j2",
        "j4",
    ]
    assert table.by_request("req-3", now_ns) is None
    assert table.by_request("req-0", now_ns) is None
    assert table.finished == 3


def test_running_jobs_are_never_pruned_however_old() -> None:
    table: JobTable[str] = JobTable(limits(jobs=1, finished=1))
    table.admit("a", "job a", "req-a", T0_NS)
    much_later_ns = T0_NS + 100 * RETENTION_SECS * SEC
    assert table.prune(much_later_ns) == 0
    assert table.get("a", much_later_ns) == "job a"
    assert table.by_request("req-a", much_later_ns) == "job a"


def test_default_limits_are_the_settings_defaults() -> None:
    assert JobLimits() == JobLimits.from_settings(load_settings(CollectorSettings, {}))
    configured = load_settings(
        CollectorSettings,
        {
            "COLLECTOR_BACKFILL_MAX_CONCURRENT_JOBS": "7",
            "COLLECTOR_BACKFILL_FINISHED_RETENTION_SECS": "1.5",
            "COLLECTOR_BACKFILL_MAX_FINISHED_JOBS": "20",
        },
    )
    assert JobLimits.from_settings(configured) == JobLimits(7, 1_500_000_000, 20)


# ---- BackfillJobs: the asyncio edge -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now_ns = T0_NS + 3600 * SEC

    def __call__(self) -> int:
        return self.now_ns


class GatedRest:
    """Answers every aggTrades request with the recorded page, once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0
        self.error: BaseException | None = None

    async def get(self, path: str, params: dict[str, str], *, weight: int) -> bytes:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return (DATA / "agg_trades.json").read_bytes()


class CollectingPublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def put_many(self, events: list[Event]) -> None:
        self.events.extend(events)


def make_jobs(rest: GatedRest, clock: FakeClock, job_limits: JobLimits) -> tuple[BackfillJobs, CollectingPublisher]:
    registry = InstrumentRegistry("binance")
    adapter = BinanceSpotAdapter(registry)
    registry.replace(adapter.parse_exchange_info((DATA / "exchange_info.json").read_bytes()))
    publisher = CollectingPublisher()
    jobs = BackfillJobs(adapter, cast(RestClient, rest), cast(Publisher, publisher), limits=job_limits, clock=clock)
    return jobs, publisher


def submit(jobs: BackfillJobs, request_id: str, **overrides: Any) -> BackfillJob:
    request: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "data_type": DataType.TRADES,
        "start_ns": T0_NS + 300 * SEC,
        "end_ns": T0_NS + 360 * SEC,
        "reason": "test",
        "request_id": request_id,
    }
    return jobs.submit(**(request | overrides))


async def settled(jobs: BackfillJobs, *waiting: BackfillJob) -> None:
    await asyncio.wait_for(asyncio.gather(*(job.done.wait() for job in waiting)), timeout=10)


async def test_jobs_beyond_the_limit_are_refused_until_one_finishes() -> None:
    rest, clock = GatedRest(), FakeClock()
    jobs, publisher = make_jobs(rest, clock, limits(jobs=2))
    first, second = submit(jobs, "r1"), submit(jobs, "r2")
    with pytest.raises(TooManyJobsError, match="2 backfill jobs running, the limit is 2"):
        submit(jobs, "r3")
    # A repeat is answered with its job, takes no slot, and is not refused even though every slot is taken.
    assert submit(jobs, "r1") is first
    assert jobs.active == 2
    rest.gate.set()
    await settled(jobs, first, second)
    assert (first.status, second.status) == (JobStatus.SUCCEEDED, JobStatus.SUCCEEDED)
    assert jobs.active == 0
    assert len(publisher.events) == first.rows_published + second.rows_published > 0
    third = submit(jobs, "r3")
    await settled(jobs, third)
    assert third.status is JobStatus.SUCCEEDED
    assert rest.calls == 3  # the refused request and the repeat never reached the venue


async def test_a_pruned_job_is_forgotten_and_its_request_id_starts_a_new_job() -> None:
    rest, clock = GatedRest(), FakeClock()
    rest.gate.set()
    jobs, _publisher = make_jobs(rest, clock, limits(jobs=1, finished=10))
    job = submit(jobs, "r1")
    await settled(jobs, job)
    assert job.ts_finished_ns == clock.now_ns
    clock.now_ns += RETENTION_SECS * SEC - 1
    assert jobs.get(job.job_id) is job
    assert submit(jobs, "r1") is job
    clock.now_ns += 1
    assert jobs.get(job.job_id) is None
    again = submit(jobs, "r1")
    assert again is not job
    await settled(jobs, again)


async def test_cancelled_and_crashed_jobs_end_failed_and_free_their_slots() -> None:
    rest, clock = GatedRest(), FakeClock()
    jobs, _publisher = make_jobs(rest, clock, limits(jobs=2))
    waiting = submit(jobs, "r1")
    await asyncio.sleep(0)  # the job starts and waits for the venue
    never_started = submit(jobs, "r2")  # cancelled before its first step: no `finally` of its own would run
    await jobs.cancel_all()
    for job in (waiting, never_started):
        assert (job.status, job.retryable, job.done.is_set()) == (JobStatus.FAILED, True, True)
        assert job.error_message.startswith("cancelled")
        assert job.ts_finished_ns == clock.now_ns
    assert jobs.active == 0
    rest.error = RuntimeError("a bug")
    rest.gate.set()
    crashed = submit(jobs, "r3")
    await settled(jobs, crashed)
    assert crashed.status is JobStatus.FAILED
    assert "internal error: RuntimeError('a bug')" in crashed.error_message
    assert jobs.active == 0


async def test_bad_requests_are_refused_before_taking_a_slot() -> None:
    jobs, _publisher = make_jobs(GatedRest(), FakeClock(), limits(jobs=1))
    with pytest.raises(BackfillNotFoundError, match="unknown symbol 'NOPE-USDT'"):
        submit(jobs, "r1", symbol="NOPE-USDT")
    with pytest.raises(BackfillNotFoundError, match="serves binance, not 'kraken'"):
        submit(jobs, "r1", exchange="kraken")
    with pytest.raises(BackfillRequestError, match="too long"):
        submit(jobs, "x" * 201)
    with pytest.raises(BackfillRequestError, match="too long"):
        submit(jobs, "r1", reason="x" * 1001)
    assert jobs.active == 0


# ---- BackfillService: the status codes the proto promises ---------------------------------------------------------


class AbortedError(Exception):
    pass


class FakeContext:
    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise AbortedError

    def time_remaining(self) -> float | None:
        return None


def backfill_request(request_id: str, symbol: str = "BTC-USDT") -> pb.BackfillRequest:
    return pb.BackfillRequest(
        exchange="binance",
        symbol=symbol,
        data_type=market_data_pb2.DATA_TYPE_TRADES,
        start_ns=T0_NS + 300 * SEC,
        end_ns=T0_NS + 360 * SEC,
        request_id=request_id,
    )


async def call(coroutine: Any, context: FakeContext) -> tuple[grpc.StatusCode | None, str]:
    """Await a call that must abort; return the status it aborted with."""
    with pytest.raises(AbortedError):
        await coroutine
    return context.code, context.details


async def test_service_answers_resource_exhausted_and_not_found() -> None:
    jobs, _publisher = make_jobs(GatedRest(), FakeClock(), limits(jobs=1))
    service = BackfillService(jobs)
    context = FakeContext()
    reply = await service.Backfill(backfill_request("r1"), cast(Any, context))
    assert reply.job.status == pb.BACKFILL_STATUS_QUEUED
    code, details = await call(service.Backfill(backfill_request("r2"), cast(Any, context)), context)
    assert (code, details.split(" (")[0]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "1 backfill jobs running, the limit is 1",
    )
    again = FakeContext()
    assert (await service.Backfill(backfill_request("r1"), cast(Any, again))).job.job_id == reply.job.job_id
    unknown = FakeContext()
    code, _ = await call(service.Backfill(backfill_request("r3", symbol="NOPE-USDT"), cast(Any, unknown)), unknown)
    assert code == grpc.StatusCode.NOT_FOUND
    missing = FakeContext()
    status_call = service.GetBackfillStatus(pb.GetBackfillStatusRequest(job_id="binance-0-0"), cast(Any, missing))
    assert await call(status_call, missing) == (
        grpc.StatusCode.NOT_FOUND,
        "no backfill job 'binance-0-0' (unknown, or finished and no longer kept)",
    )
    await jobs.cancel_all()
