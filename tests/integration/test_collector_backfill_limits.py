"""BackfillService under a storm of calls: a few jobs run, more queue, the excess is refused, memory stays flat.

Real simulator, real Redis, a real collector process, real gRPC. The venue is made to answer one 429 with a long
`Retry-After` first, so every admitted job sits behind the collector's REST pause instead of finishing in a few
milliseconds: the running slots and the queue are really full while the storm arrives (the situation the bounds
exist for: the venue rate-limits us and callers keep asking). The venue bans (418) any request inside its
`Retry-After`; it never has to.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc
import pytest
import redis

from tests.integration.collector_harness import (
    CollectorProcess,
    post_fault,
    running_collector,
    simulator_state,
    wait_until,
)
from tests.integration.servers.simulator_fixtures import SimulatorEndpoints, start_simulator
from tickstrata.backfill.v1 import backfill_service_pb2 as pb
from tickstrata.backfill.v1 import backfill_service_pb2_grpc as pb_grpc
from tickstrata.collector.settings import CollectorSettings
from tickstrata.common.settings import load_settings
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_pb2

pytestmark = pytest.mark.integration

CALLS: Final = 10_000
WARMUP_CALLS: Final = 1_000  # same mix first, so gRPC's and the allocator's steady state is in the baseline
CLIENT_CONCURRENCY: Final = 32
PAUSE_SECS: Final = 45  # the venue's Retry-After: below the REST client's 60 s wait limit, so jobs wait it out
# RSS noise allowed over the 10,000 calls: allocator arenas, gRPC buffers, log handlers. An unbounded table (one
# job, task and request id per call, as before the fix) grows it by tens of MiB.
RSS_NOISE_BYTES: Final = 8 * 1024 * 1024
PRIMER_ID: Final = "storm-primer"
SECOND_NS: Final = 1_000_000_000


@pytest.fixture
def fresh_simulator(tmp_path: Path) -> Iterator[SimulatorEndpoints]:
    """A simulator of this test's own: the 429 fault changes its state."""
    process, endpoints = start_simulator(tmp_path, trades_per_sec="5", book_updates_per_sec="2")
    try:
        yield endpoints
    finally:
        process.stop()


@dataclass(frozen=True)
class Outcome:
    request_id: str
    code: grpc.StatusCode
    job_id: str = ""
    message: str = ""


def rss_bytes(collector: CollectorProcess) -> int:
    pid = collector.process.pid
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise AssertionError("no VmRSS line")


def request_ids(prefix: str, count: int) -> list[str]:
    """A mix: mostly new ids, every 4th a repeat of an earlier id of the run, every 10th the primer's job."""
    ids: list[str] = []
    for index in range(count):
        if index % 10 == 9:
            ids.append(PRIMER_ID)
        elif index % 4 == 3:
            ids.append(ids[index // 2])
        else:
            ids.append(f"{prefix}-{index}")
    return ids


def backfill_request(request_id: str, now_ns: int) -> pb.BackfillRequest:
    return pb.BackfillRequest(
        exchange="binance",
        symbol="BTC-USDT",
        data_type=market_data_pb2.DATA_TYPE_TRADES,
        start_ns=now_ns - 120 * SECOND_NS,  # a one-minute window: one aggTrades page
        end_ns=now_ns - 60 * SECOND_NS,
        reason="storm",
        request_id=request_id,
    )


async def storm(port: int, ids: list[str], now_ns: int) -> list[Outcome]:
    """Every id as one Backfill call, `CLIENT_CONCURRENCY` in flight at once."""
    outcomes: list[Outcome] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for request_id in ids:
        queue.put_nowait(request_id)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.BackfillServiceStub(channel)

        async def worker() -> None:
            while not queue.empty():
                request_id = queue.get_nowait()
                try:
                    reply = await stub.Backfill(backfill_request(request_id, now_ns), timeout=30)
                except grpc.aio.AioRpcError as error:
                    outcomes.append(Outcome(request_id, error.code(), message=error.details() or ""))
                else:
                    outcomes.append(Outcome(request_id, grpc.StatusCode.OK, job_id=reply.job.job_id))

        await asyncio.gather(*(worker() for _ in range(CLIENT_CONCURRENCY)))
    return outcomes


async def statuses(port: int, job_ids: set[str]) -> dict[str, pb.BackfillJob]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.BackfillServiceStub(channel)
        replies = await asyncio.gather(
            *(stub.GetBackfillStatus(pb.GetBackfillStatusRequest(job_id=job_id), timeout=10) for job_id in job_ids)
        )
    return {reply.job.job_id: reply.job for reply in replies}


def most_at_once(jobs: list[pb.BackfillJob]) -> int:
    """The most jobs kept (running or queued) at the same instant: a sweep over [created, finished)."""
    edges: list[tuple[int, int]] = []
    for job in jobs:
        edges.append((job.ts_created_ns, +1))
        if job.ts_finished_ns:
            edges.append((job.ts_finished_ns, -1))
    # At equal stamps the release sorts first: a place freed and taken at the same nanosecond was held once.
    held = peak = 0
    for _stamp, step in sorted(edges):
        held += step
        peak = max(peak, held)
    return peak


async def not_found_codes(port: int) -> tuple[grpc.StatusCode, grpc.StatusCode]:
    """The codes for a symbol outside the feed and for a job id never issued."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.BackfillServiceStub(channel)
        request = backfill_request("unknown-symbol", time.time_ns())
        request.symbol = "NOPE-USDT"
        with pytest.raises(grpc.aio.AioRpcError) as unknown_symbol:
            await stub.Backfill(request, timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as unknown_job:
            await stub.GetBackfillStatus(pb.GetBackfillStatusRequest(job_id="binance-0-0"), timeout=10)
    return unknown_symbol.value.code(), unknown_job.value.code()


async def test_ten_thousand_backfill_calls_keep_jobs_bounded_and_memory_flat(
    tmp_path: Path, fresh_simulator: SimulatorEndpoints, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    del redis_client  # asked for its FLUSHALL afterwards: the trades this test publishes must not reach the next
    settings = load_settings(CollectorSettings, {})
    running_limit, queue_limit = settings.backfill_max_running_jobs, settings.backfill_max_queued_jobs
    with running_collector(
        tmp_path, fresh_simulator, redis_server.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
    ) as collector:
        # The venue rate-limits the first backfill request: from then on every job waits out the pause.
        post_fault(fresh_simulator, "binance", {"kind": "rest_429", "count": 1, "retry_after_secs": PAUSE_SECS})
        now_ns = time.time_ns()
        (primer,) = await storm(collector.grpc_port, [PRIMER_ID], now_ns)
        assert primer.code == grpc.StatusCode.OK, primer
        wait_until(
            lambda: simulator_state(fresh_simulator, "binance")["rest"]["responses"].get("429", 0) >= 1,
            timeout_secs=30,
            what="the venue's 429 to the first backfill request",
        )
        paused_at = time.monotonic()

        warmup = await storm(collector.grpc_port, request_ids("warmup", WARMUP_CALLS), now_ns)
        rss_before = rss_bytes(collector)
        started = time.monotonic()
        outcomes = await storm(collector.grpc_port, request_ids("storm", CALLS), now_ns)
        storm_secs = time.monotonic() - started
        rss_after = rss_bytes(collector)
        in_pause = time.monotonic() - paused_at < PAUSE_SECS  # every admitted job was still waiting throughout

        print(
            f"\n{CALLS} Backfill calls in {storm_secs:.1f} s; {running_limit} running, {queue_limit} queued at most; "
            f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
        )
        codes = collections.Counter(outcome.code for outcome in outcomes)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        # The excess is refused, and says why.
        refused = [outcome for outcome in outcomes if outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert len(refused) > CALLS // 2, codes
        assert all(f"queued, the limit is {queue_limit}" in outcome.message for outcome in refused), refused[0].message
        # Idempotent: all calls naming one request id got one job, the primer's even while every slot was taken.
        everything = [primer, *warmup, *outcomes]
        job_by_request: dict[str, set[str]] = collections.defaultdict(set)
        for outcome in everything:
            if outcome.code == grpc.StatusCode.OK:
                job_by_request[outcome.request_id].add(outcome.job_id)
        assert all(len(job_ids) == 1 for job_ids in job_by_request.values()), job_by_request
        assert [o.code for o in outcomes if o.request_id == PRIMER_ID] == [grpc.StatusCode.OK] * (CALLS // 10)
        assert job_by_request[PRIMER_ID] == {primer.job_id}
        admitted = set().union(*job_by_request.values())
        jobs = await statuses(collector.grpc_port, admitted)
        in_pause = in_pause and time.monotonic() - paused_at < PAUSE_SECS
        not_found = await not_found_codes(collector.grpc_port)
        rest_state = simulator_state(fresh_simulator, "binance")["rest"]

    # Never more than running + queued jobs were kept at once, by the collector's own stamps; and that was reached.
    assert set(jobs) == admitted
    assert most_at_once(list(jobs.values())) == running_limit + queue_limit
    if in_pause:  # no job could finish while the venue's pause lasted: the first ones admitted were all there was
        assert len(admitted) == running_limit + queue_limit, len(admitted)
        by_status = collections.Counter(job.status for job in jobs.values())
        assert by_status == {pb.BACKFILL_STATUS_RUNNING: running_limit, pb.BACKFILL_STATUS_QUEUED: queue_limit}
        assert jobs[primer.job_id].status == pb.BACKFILL_STATUS_RUNNING  # first come, first served
    assert not_found == (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND)
    # Every request after the 429 waited out the Retry-After: the venue, which bans any other, never had to.
    assert rest_state["responses"].get("429", 0) == 1
    assert rest_state["responses"].get("418", 0) == 0
    assert rest_state["banned_until_ms"] == 0
    # Flat memory: the table holds at most the running, the queued and a bounded number of finished jobs.
    assert rss_after - rss_before < RSS_NOISE_BYTES, (rss_before, rss_after)
