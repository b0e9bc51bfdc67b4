"""Backfill jobs bounded: a few run, more wait FIFO, the excess is refused; idempotent repeats; finished jobs pruned.

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
from tickstrata.collector.backfill import BackfillJob, BackfillJobs, JobStatus
from tickstrata.collector.backfill_table import (
    BackfillNotFoundError,
    BackfillRequestError,
    JobLimits,
    JobTable,
    QueueFullError,
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


def limits(*, running: int = 2, queued: int = 0, retention_secs: int = RETENTION_SECS, finished: int = 3) -> JobLimits:
    return JobLimits(
        max_running_jobs=running,
        max_queued_jobs=queued,
        finished_retention_ns=retention_secs * SEC,
        max_finished_jobs=finished,
    )


# ---- JobTable: the pure bookkeeping ------------------------------------------------------------------------------


def test_jobs_beyond_the_running_limit_queue_and_beyond_the_queue_are_refused() -> None:
    table: JobTable[str] = JobTable(limits(running=2, queued=2))
    assert [table.admit(name, f"job {name}", f"req-{name}", T0_NS) for name in "abcd"] == [True, True, False, False]
    assert (table.running, table.queued) == (2, 2)
    with pytest.raises(QueueFullError) as refused:
        table.admit("e", "job e", "req-e", T0_NS)
    assert (refused.value.queued, refused.value.limit) == (2, 2)
    assert "2 backfill jobs queued, the limit is 2 (COLLECTOR_BACKFILL_MAX_QUEUED_JOBS)" in str(refused.value)
    assert table.get("e", T0_NS) is None
    assert table.by_request("req-e", T0_NS) is None  # a refused request leaves no trace to grow the table
    assert table.get("c", T0_NS) == "job c"  # a queued job is answerable, by id and by request id
    assert table.by_request("req-d", T0_NS) == "job d"


def test_a_finished_job_hands_its_slot_to_the_first_queued_one() -> None:
    table: JobTable[str] = JobTable(limits(running=1, queued=3, finished=10))
    for name in "abcd":
        table.admit(name, f"job {name}", f"req-{name}", T0_NS)
    assert table.queued_jobs() == ["job b", "job c", "job d"]
    assert table.finish("a", T0_NS + SEC) == ("b", "job b")  # first in, first out
    assert table.finish("b", T0_NS + 2 * SEC) == ("c", "job c")
    assert (table.running, table.queued, table.finished) == (1, 1, 2)
    assert table.finish("d", T0_NS + 3 * SEC) is None  # ending a queued job frees no running slot
    assert table.finish("c", T0_NS + 4 * SEC) is None  # nothing left to promote
    assert (table.running, table.queued, table.finished) == (0, 0, 4)
    assert table.admit("e", "job e", "", T0_NS + 5 * SEC) is True


def test_without_a_queue_the_running_limit_is_the_bound() -> None:
    table: JobTable[str] = JobTable(limits(running=1, queued=0))
    assert table.admit("a", "job a", "", T0_NS)
    with pytest.raises(QueueFullError, match="0 backfill jobs queued, the limit is 0"):
        table.admit("b", "job b", "", T0_NS)


def test_a_finished_job_stays_answerable() -> None:
    table: JobTable[str] = JobTable(limits(running=1))
    table.admit("a", "job a", "req-a", T0_NS)
    table.finish("a", T0_NS + SEC)
    table.admit("b", "job b", "req-b", T0_NS + 2 * SEC)
    assert table.running == 1
    assert table.get("a", T0_NS + 2 * SEC) == "job a"
    assert table.by_request("req-a", T0_NS + 2 * SEC) == "job a"


def test_finished_jobs_are_pruned_by_age_with_their_request_ids() -> None:
    table: JobTable[str] = JobTable(limits(running=2, finished=100))
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
    table: JobTable[str] = JobTable(limits(running=5, finished=3))
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


def test_running_and_queued_jobs_are_never_pruned_however_old() -> None:
    table: JobTable[str] = JobTable(limits(running=1, queued=1, finished=1))
    table.admit("a", "job a", "req-a", T0_NS)
    table.admit("b", "job b", "req-b", T0_NS)
    much_later_ns = T0_NS + 100 * RETENTION_SECS * SEC
    assert table.prune(much_later_ns) == 0
    assert table.get("a", much_later_ns) == "job a"
    assert table.by_request("req-b", much_later_ns) == "job b"


def test_default_limits_are_the_settings_defaults() -> None:
    assert JobLimits() == JobLimits.from_settings(load_settings(CollectorSettings, {}))
    assert (JobLimits().max_running_jobs, JobLimits().max_queued_jobs) == (2, 256)
    configured = load_settings(
        CollectorSettings,
        {
            "COLLECTOR_BACKFILL_MAX_RUNNING_JOBS": "3",
            "COLLECTOR_BACKFILL_MAX_QUEUED_JOBS": "7",
            "COLLECTOR_BACKFILL_FINISHED_RETENTION_SECS": "1.5",
            "COLLECTOR_BACKFILL_MAX_FINISHED_JOBS": "20",
        },
    )
    assert JobLimits.from_settings(configured) == JobLimits(3, 7, 1_500_000_000, 20)


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
        self.started: list[str] = []  # the job of each call, by its task's name
        self.error: BaseException | None = None

    async def get(self, path: str, params: dict[str, str], *, weight: int) -> bytes:
        self.calls += 1
        task = asyncio.current_task()
        self.started.append(task.get_name().removeprefix("backfill-") if task is not None else "")
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


async def test_jobs_beyond_the_running_limit_wait_in_order_and_the_excess_is_refused() -> None:
    rest, clock = GatedRest(), FakeClock()
    jobs, publisher = make_jobs(rest, clock, limits(running=2, queued=2))
    first, second, third, fourth = (submit(jobs, f"r{index}") for index in range(1, 5))
    await asyncio.sleep(0)  # the running jobs reach the venue
    assert [job.status for job in (first, second, third, fourth)] == [JobStatus.RUNNING] * 2 + [JobStatus.QUEUED] * 2
    # Queued jobs hold no place in the venue's budget; the two running ones take turns with one request in flight.
    assert rest.calls == 1
    with pytest.raises(QueueFullError, match="2 backfill jobs queued, the limit is 2"):
        submit(jobs, "r5")
    # A repeat is answered with its job, takes no place, and is not refused even though the queue is full.
    assert submit(jobs, "r3") is third
    assert (jobs.running, jobs.queued) == (2, 2)
    rest.gate.set()
    await settled(jobs, first, second, third, fourth)
    assert {job.status for job in (first, second, third, fourth)} == {JobStatus.SUCCEEDED}
    assert third.ts_created_ns == fourth.ts_created_ns  # queued at the same instant, started in arrival order:
    assert rest.started == [first.job_id, second.job_id, third.job_id, fourth.job_id]
    assert (jobs.running, jobs.queued) == (0, 0)
    assert len(publisher.events) == sum(job.rows_published for job in (first, second, third, fourth)) > 0
    fifth = submit(jobs, "r5")
    await settled(jobs, fifth)
    assert fifth.status is JobStatus.SUCCEEDED
    assert rest.calls == 5  # the refused request and the repeat never reached the venue


async def test_a_pruned_job_is_forgotten_and_its_request_id_starts_a_new_job() -> None:
    rest, clock = GatedRest(), FakeClock()
    rest.gate.set()
    jobs, _publisher = make_jobs(rest, clock, limits(running=1, finished=10))
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
    jobs, _publisher = make_jobs(rest, clock, limits(running=2, queued=5))
    waiting = submit(jobs, "r1")
    await asyncio.sleep(0)  # the job starts and waits for the venue
    never_started = submit(jobs, "r2")  # cancelled before its first step: no `finally` of its own would run
    queued = [submit(jobs, f"q{index}") for index in range(3)]  # never run: a stopping collector starts nothing
    await jobs.cancel_all()
    for job in (waiting, never_started, *queued):
        assert (job.status, job.retryable, job.done.is_set()) == (JobStatus.FAILED, True, True)
        assert job.error_message.startswith("cancelled")
        assert job.ts_finished_ns == clock.now_ns
    assert (jobs.running, jobs.queued) == (0, 0)
    assert rest.calls == 1


async def test_a_crashed_job_ends_failed_and_frees_its_slot() -> None:
    rest, clock = GatedRest(), FakeClock()
    jobs, _publisher = make_jobs(rest, clock, limits(running=1))
    rest.error = RuntimeError("a bug")
    rest.gate.set()
    crashed = submit(jobs, "r3")
    await settled(jobs, crashed)
    assert crashed.status is JobStatus.FAILED
    assert "internal error: RuntimeError('a bug')" in crashed.error_message
    assert (jobs.running, jobs.queued) == (0, 0)


async def test_bad_requests_are_refused_before_taking_a_place() -> None:
    jobs, _publisher = make_jobs(GatedRest(), FakeClock(), limits(running=1))
    with pytest.raises(BackfillNotFoundError, match="unknown symbol 'NOPE-USDT'"):
        submit(jobs, "r1", symbol="NOPE-USDT")
    with pytest.raises(BackfillNotFoundError, match="serves binance, not 'kraken'"):
        submit(jobs, "r1", exchange="kraken")
    with pytest.raises(BackfillRequestError, match="too long"):
        submit(jobs, "x" * 201)
    with pytest.raises(BackfillRequestError, match="too long"):
        submit(jobs, "r1", reason="x" * 1001)
    with pytest.raises(BackfillRequestError, match="empty or inverted"):
        submit(jobs, "r1", end_ns=T0_NS + 300 * SEC)  # [start, start) holds nothing
    with pytest.raises(BackfillRequestError, match="not books"):
        submit(jobs, "r1", data_type=DataType.BOOKS)
    # A malformed request is INVALID_ARGUMENT even for an instrument we do not serve.
    with pytest.raises(BackfillRequestError, match="empty or inverted"):
        submit(jobs, "r1", symbol="NOPE-USDT", end_ns=T0_NS)
    assert (jobs.running, jobs.queued) == (0, 0)


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


def backfill_request(request_id: str, **overrides: Any) -> pb.BackfillRequest:
    fields: dict[str, Any] = {
        "exchange": "binance",
        "symbol": "BTC-USDT",
        "data_type": market_data_pb2.DATA_TYPE_TRADES,
        "start_ns": T0_NS + 300 * SEC,
        "end_ns": T0_NS + 360 * SEC,
        "request_id": request_id,
    }
    return pb.BackfillRequest(**(fields | overrides))


async def aborted(coroutine: Any, context: FakeContext) -> tuple[grpc.StatusCode | None, str]:
    """Await a call that must abort; return the status it aborted with."""
    with pytest.raises(AbortedError):
        await coroutine
    return context.code, context.details


async def backfill_code(service: BackfillService, request: pb.BackfillRequest) -> grpc.StatusCode | None:
    context = FakeContext()
    return (await aborted(service.Backfill(request, cast(Any, context)), context))[0]


async def test_service_queues_then_answers_resource_exhausted_only_when_the_queue_is_full() -> None:
    jobs, _publisher = make_jobs(GatedRest(), FakeClock(), limits(running=1, queued=1))
    service = BackfillService(jobs)
    context = FakeContext()
    running = await service.Backfill(backfill_request("r1"), cast(Any, context))
    await asyncio.sleep(0)
    queued = await service.Backfill(backfill_request("r2"), cast(Any, context))
    assert queued.job.status == pb.BACKFILL_STATUS_QUEUED
    status = await service.GetBackfillStatus(pb.GetBackfillStatusRequest(job_id=running.job.job_id), cast(Any, context))
    assert status.job.status == pb.BACKFILL_STATUS_RUNNING
    full = FakeContext()
    code, details = await aborted(service.Backfill(backfill_request("r3"), cast(Any, full)), full)
    assert (code, details.split(" (")[0]) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "1 backfill jobs queued, the limit is 1",
    )
    again = FakeContext()
    assert (await service.Backfill(backfill_request("r2"), cast(Any, again))).job.job_id == queued.job.job_id
    await jobs.cancel_all()


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"symbol": "NOPE-USDT"}, grpc.StatusCode.NOT_FOUND),  # not in this collector's feed
        ({"exchange": "binance-usdm"}, grpc.StatusCode.NOT_FOUND),  # another collector's venue
        ({"data_type": market_data_pb2.DATA_TYPE_UNSPECIFIED}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"data_type": market_data_pb2.DATA_TYPE_QUOTES}, grpc.StatusCode.INVALID_ARGUMENT),  # no REST history
        ({"end_ns": T0_NS + 300 * SEC}, grpc.StatusCode.INVALID_ARGUMENT),  # empty: [start, start)
        ({"end_ns": T0_NS}, grpc.StatusCode.INVALID_ARGUMENT),  # inverted
        ({"start_ns": 0}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"end_ns": T0_NS + 300 * SEC + 32 * 86_400 * SEC}, grpc.StatusCode.INVALID_ARGUMENT),  # over 31 days
        ({"reason": "x" * 1001}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_service_status_codes(overrides: dict[str, Any], code: grpc.StatusCode) -> None:
    jobs, _publisher = make_jobs(GatedRest(), FakeClock(), limits(running=1))
    assert await backfill_code(BackfillService(jobs), backfill_request("r", **overrides)) == code
    assert (jobs.running, jobs.queued) == (0, 0)


async def test_service_answers_not_found_for_an_unknown_job_id() -> None:
    jobs, _publisher = make_jobs(GatedRest(), FakeClock(), limits(running=1))
    missing = FakeContext()
    status_call = BackfillService(jobs).GetBackfillStatus(
        pb.GetBackfillStatusRequest(job_id="binance-0-0"), cast(Any, missing)
    )
    assert await aborted(status_call, missing) == (
        grpc.StatusCode.NOT_FOUND,
        "no backfill job 'binance-0-0' (unknown, or finished and no longer kept)",
    )
