"""Backfill jobs against a scripted venue history: half-open windows, exact REST bounds, evidence, Retry-After.

`HistoryRest` answers `aggTrades` and `klines` from a small in-memory history the way Binance does (inclusive
millisecond bounds, `limit`, `fromId`); the last test puts a real `RestClient` in front of a loopback venue that
bans (418) any request arriving inside its `Retry-After`, as Binance does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final, cast

import pytest
from aiohttp import web

from tickstrata.collector.backfill import BackfillJob, BackfillJobs, JobStatus
from tickstrata.collector.backfill_evidence import MINUTE_NS, BucketFinding, EvidenceRun
from tickstrata.collector.backfill_table import JobLimits
from tickstrata.collector.instruments import InstrumentRegistry
from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestBudget, RestClient
from tickstrata.collector.venues import BinanceSpotAdapter
from tickstrata.common.events import Candle, DataType, Event, Trade

DATA: Final = Path(__file__).resolve().parents[2] / "data" / "exchanges" / "binance"
SEC: Final = 1_000_000_000
MS: Final = 1_000_000
T0_NS: Final = 1_767_225_600 * SEC  # 2026-01-01T00:00:00Z
T0_MS: Final = T0_NS // MS
MINUTE_MS: Final = 60_000
DATA_, EMPTY, NO_RECORD = BucketFinding.DATA, BucketFinding.EMPTY, BucketFinding.NO_RECORD


def minute(offset: int) -> int:
    return T0_NS + offset * MINUTE_NS


def run(first: int, stop: int, finding: BucketFinding, rows: int) -> EvidenceRun:
    return EvidenceRun(minute(first), minute(stop), finding, rows)


class HistoryRest:
    """A venue's REST history: aggregate trades (id, ms) and 1-minute klines (open ms → trade count)."""

    def __init__(self, trades: list[tuple[int, int]], klines: Mapping[int, int], *, sloppy: bool = False) -> None:
        self.trades = trades
        self.klines = klines
        self.sloppy = sloppy  # answer one kline beyond each requested bound, as a careless venue might
        self.calls: list[tuple[str, dict[str, str]]] = []

    async def get(self, path: str, params: Mapping[str, str], *, weight: int) -> bytes:
        endpoint = path.rsplit("/", 1)[-1]
        self.calls.append((endpoint, dict(params)))
        limit = int(params["limit"])
        if endpoint == "aggTrades":
            if "fromId" in params:
                rows = [t for t in self.trades if t[0] >= int(params["fromId"])]
            else:
                rows = [t for t in self.trades if int(params["startTime"]) <= t[1] <= int(params["endTime"])]
            return json.dumps([agg_trade(trade_id, ms) for trade_id, ms in rows[:limit]]).encode()
        low, high = int(params["startTime"]), int(params["endTime"])
        if self.sloppy:
            low, high = low - MINUTE_MS, high + MINUTE_MS
        opens = [open_ms for open_ms in sorted(self.klines) if low <= open_ms <= high]
        return json.dumps([kline(open_ms, self.klines[open_ms]) for open_ms in opens[:limit]]).encode()


def agg_trade(trade_id: int, ms: int) -> dict[str, Any]:
    return {"a": trade_id, "p": "87654.32000000", "q": "0.00120000", "f": trade_id, "l": trade_id, "T": ms,
            "m": True, "M": True}  # fmt: skip


def kline(open_ms: int, trades: int) -> list[Any]:
    volume = "1.00000000" if trades else "0.00000000"
    quote = "87640.00000000" if trades else "0.00000000"
    price = "87640.00000000"
    return [open_ms, price, price, price, price, volume, open_ms + MINUTE_MS - 1, quote, trades, "0", "0", "0"]


class CollectingPublisher:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def put_many(self, events: list[Event]) -> None:
        self.events.extend(events)


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


class SmallPagesAdapter(BinanceSpotAdapter):
    agg_trades_page_limit = 2  # pages of two: busy minutes continue by id


def make_jobs(
    rest: object,
    *,
    now_ns: int = T0_NS + 86_400 * SEC,
    limits: JobLimits | None = None,
    adapter_type: type[BinanceSpotAdapter] = BinanceSpotAdapter,
) -> tuple[BackfillJobs, CollectingPublisher]:
    registry = InstrumentRegistry("binance")
    adapter = adapter_type(registry)
    registry.replace(adapter.parse_exchange_info((DATA / "exchange_info.json").read_bytes()))
    publisher = CollectingPublisher()
    jobs = BackfillJobs(adapter, cast(RestClient, rest), cast(Publisher, publisher), limits=limits, clock=Clock(now_ns))
    return jobs, publisher


async def backfill(jobs: BackfillJobs, data_type: DataType, start_ns: int, end_ns: int) -> BackfillJob:
    job = jobs.submit(
        exchange="binance",
        symbol="BTC-USDT",
        data_type=data_type,
        start_ns=start_ns,
        end_ns=end_ns,
        reason="test",
        request_id="",
    )
    await asyncio.wait_for(job.done.wait(), timeout=10)
    assert job.status is JobStatus.SUCCEEDED, job.error_message
    return job


async def test_trade_window_is_half_open_with_exact_venue_bounds() -> None:
    start_ns = T0_NS + 300 * SEC + 1  # 1 ns into a millisecond: a trade stamped that millisecond is before it
    end_ns = T0_NS + 360 * SEC + 1_500_001  # mid-millisecond: the venue's last inclusive ms is 360.001 s
    first_ms, last_ms = T0_MS + 300_000, T0_MS + 360_001
    rest = HistoryRest([(1, first_ms), (2, first_ms + 1), (3, last_ms), (4, last_ms + 1)], {})
    jobs, publisher = make_jobs(rest)
    job = await backfill(jobs, DataType.TRADES, start_ns, end_ns)
    assert rest.calls[0][1] | {"symbol": "x"} == {
        "symbol": "x",
        "startTime": str(start_ns // MS),  # startTime = start_ns // 1e6
        "endTime": str(-(-end_ns // MS) - 1),  # endTime = ceil(end_ns / 1e6) - 1
        "limit": "1000",
    }
    assert (int(rest.calls[0][1]["startTime"]), int(rest.calls[0][1]["endTime"])) == (first_ms, last_ms)
    published = [event.trade_id for event in publisher.events if isinstance(event, Trade)]
    assert published == ["2", "3"]  # 1 is stamped before start_ns; 4 is past the venue's endTime
    assert job.rows_published == 2
    assert job.buckets == []  # no whole minute inside: no evidence
    assert job.covered_until_ns == end_ns


async def test_an_exact_end_excludes_its_own_stamp() -> None:
    rest = HistoryRest([(1, T0_MS + 60_000 - 1), (2, T0_MS + 60_000)], {})
    jobs, publisher = make_jobs(rest)
    job = await backfill(jobs, DataType.TRADES, minute(0), minute(1))
    assert rest.calls[0][1]["endTime"] == str(T0_MS + 60_000 - 1)
    assert [event.trade_id for event in publisher.events if isinstance(event, Trade)] == ["1"]
    assert job.buckets == [run(0, 1, DATA_, 1)]


async def test_trade_evidence_over_hours_paged_by_id() -> None:
    trades = [(1, T0_MS + 5), (2, T0_MS + 5), (3, T0_MS + 59_999), (4, T0_MS + 61 * MINUTE_MS),
              (5, T0_MS + 61 * MINUTE_MS + 1), (6, T0_MS + 89 * MINUTE_MS)]  # fmt: skip
    rest = HistoryRest(trades, {})
    jobs, publisher = make_jobs(rest, adapter_type=SmallPagesAdapter)
    job = await backfill(jobs, DataType.TRADES, minute(0), minute(90))
    assert [(endpoint, params.get("startTime"), params.get("fromId")) for endpoint, params in rest.calls] == [
        ("aggTrades", str(T0_MS), None),
        ("aggTrades", None, "3"),  # trade 4 comes back too, but belongs to the next chunk
        ("aggTrades", str(T0_MS + 60 * MINUTE_MS), None),
        ("aggTrades", None, "6"),  # one trade: the chunk is done
    ]
    assert rest.calls[0][1]["endTime"] == str(T0_MS + 60 * MINUTE_MS - 1)  # chunks end on a minute: one hour
    assert sorted(int(e.trade_id) for e in publisher.events if isinstance(e, Trade)) == [1, 2, 3, 4, 5, 6]
    assert job.buckets == [
        run(0, 1, DATA_, 3),
        run(1, 61, EMPTY, 0),
        run(61, 62, DATA_, 2),
        run(62, 89, EMPTY, 0),
        run(89, 90, DATA_, 1),
    ]


async def test_an_unaligned_window_cuts_chunks_at_minutes_and_gives_edges_no_evidence() -> None:
    rest = HistoryRest([(1, T0_MS + 30_000), (2, T0_MS + 65 * MINUTE_MS)], {})
    jobs, _publisher = make_jobs(rest)
    job = await backfill(jobs, DataType.TRADES, minute(0) + 20 * SEC, minute(70) + 20 * SEC)
    bounds = [(int(p["startTime"]), int(p["endTime"])) for _endpoint, p in rest.calls]
    assert bounds == [
        (T0_MS + 20_000, T0_MS + 60 * MINUTE_MS - 1),  # to the last minute boundary within the venue's hour
        (T0_MS + 60 * MINUTE_MS, T0_MS + 70 * MINUTE_MS + 20_000 - 1),
    ]
    assert job.buckets == [run(1, 65, EMPTY, 0), run(65, 66, DATA_, 1), run(66, 70, EMPTY, 0)]


async def test_a_minute_still_in_progress_at_the_fetch_gets_no_evidence() -> None:
    rest = HistoryRest([], {})
    now_ns = minute(10) + SEC // 2  # minute 9 ended half a second ago: within the venue clock margin
    jobs, _publisher = make_jobs(rest, now_ns=now_ns)
    job = await backfill(jobs, DataType.TRADES, minute(5), minute(11))
    assert job.buckets == [run(5, 9, EMPTY, 0)]


async def test_candle_window_evidence_and_nothing_published_outside_it() -> None:
    klines = {T0_MS + m * MINUTE_MS: count for m, count in {0: 5, 1: 4, 2: 0, 4: 1, 5: 2, 6: 3}.items()}
    rest = HistoryRest([], klines, sloppy=True)  # the venue also returns the minutes just outside the bounds
    jobs, publisher = make_jobs(rest)
    job = await backfill(jobs, DataType.CANDLES, minute(0) + 30 * SEC, minute(5) + 30 * SEC)
    (call,) = rest.calls
    assert (call[1]["startTime"], call[1]["endTime"]) == (str(T0_MS + MINUTE_MS), str(T0_MS + 330_000 - 1))
    opens = [event.open_time_ns for event in publisher.events if isinstance(event, Candle)]
    assert opens == [minute(1), minute(2), minute(4), minute(5)]  # keyed by open time: 5 opens inside the window
    assert job.rows_published == 4
    # Minute 3 had no candle inside the answered range: no record. Minute 5 is partial: no evidence.
    assert job.buckets == [run(1, 2, DATA_, 1), run(2, 3, EMPTY, 1), run(3, 4, NO_RECORD, 0), run(4, 5, DATA_, 1)]


async def test_candle_pages_carry_the_evidence_across() -> None:
    klines = {T0_MS + m * MINUTE_MS: 0 for m in range(2500)}
    rest = HistoryRest([], klines)
    jobs, publisher = make_jobs(rest, now_ns=T0_NS + 7 * 86_400 * SEC)
    job = await backfill(jobs, DataType.CANDLES, minute(0), minute(2500))
    assert len(rest.calls) == 3  # 1000 rows a page on spot
    assert len(publisher.events) == 2500
    assert job.buckets == [run(0, 2500, EMPTY, 2500)]  # one run, not 2500


# ---- Retry-After: no backfill request goes out inside the venue's pause ------------------------------------------


class PausingVenue:
    """Answers the first `aggTrades` with 429 and Retry-After; like Binance, bans (418) a request inside the pause."""

    def __init__(self, retry_after_secs: float) -> None:
        self.retry_after_secs = retry_after_secs
        self.paused_until = 0.0
        self.arrivals: list[tuple[float, int]] = []  # (time, status answered)

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        body: object
        if not self.arrivals:
            self.paused_until = now + self.retry_after_secs
            status, body = 429, {"code": -1003, "msg": "Too many requests"}
        elif now < self.paused_until:
            status, body = 418, {"code": -1003, "msg": "IP banned"}
        else:
            status, body = 200, []
        self.arrivals.append((now, status))
        headers = {"Retry-After": str(self.retry_after_secs)} if status != 200 else {}
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def pausing_venue() -> AsyncIterator[tuple[PausingVenue, str]]:
    venue = PausingVenue(retry_after_secs=1)
    app = web.Application()
    app.router.add_get("/{tail:.*}", venue.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield venue, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_backfill_jobs_sit_out_a_retry_after_and_are_never_banned(
    pausing_venue: tuple[PausingVenue, str],
) -> None:
    venue, url = pausing_venue
    budget = RestBudget("binance", limit_weight=6000)
    async with RestClient(url, budget) as client:
        jobs, _publisher = make_jobs(
            client, now_ns=time.time_ns(), limits=JobLimits(max_running_jobs=2, max_queued_jobs=4)
        )
        submitted = [
            jobs.submit(
                exchange="binance",
                symbol="BTC-USDT",
                data_type=DataType.TRADES,
                start_ns=minute(0),
                end_ns=minute(130),  # three chunks each: several requests per job after the pause
                reason="test",
                request_id=f"r{index}",
            )
            for index in range(4)
        ]
        await asyncio.wait_for(asyncio.gather(*(job.done.wait() for job in submitted)), timeout=20)
    assert [job.status for job in submitted] == [JobStatus.SUCCEEDED] * 4, [j.error_message for j in submitted]
    limited_at, first_status = venue.arrivals[0]
    assert first_status == 429
    later = venue.arrivals[1:]
    assert len(later) == 4 * 3  # the limited request retried after the pause, and every other one
    assert all(status == 200 for _at, status in later)  # never a 418
    assert min(at for at, _status in later) >= limited_at + venue.retry_after_secs - 0.02
    assert (budget.rate_limited_total, budget.banned_total) == (1, 0)
