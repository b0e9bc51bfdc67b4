from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tickstrata.collector.rest import (
    BannedError,
    RateLimitedError,
    RestBudget,
    RestClient,
    RestError,
    RestUnavailableError,
)

VENUE = "binance"


# -- virtual time for the budget alone ----------------------------------------------------------------------------


class FakeClock:
    """Virtual time: sleeping advances the clock at once (single-task tests only)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, secs: float) -> None:
        self.sleeps.append(secs)
        self.now += secs
        await asyncio.sleep(0)


async def test_budget_waits_for_the_next_window_when_full() -> None:
    clock = FakeClock(now=1_000.0)  # a window boundary (60 s windows)
    budget = RestBudget(VENUE, limit_weight=100, safety_margin=0.1, clock=clock)
    assert budget.capacity_weight == 90
    await budget.acquire(50)
    await budget.acquire(40)
    assert clock.sleeps == []
    await budget.acquire(1)  # 91 > 90: waits for the window starting at 1 020 (17 * 60)
    assert clock.now == pytest.approx(1_020.0)
    assert (budget.used_weight, budget.weight_used_total, budget.waits_total) == (1, 91, 1)
    assert budget.wait_secs_total == pytest.approx(20.0)


async def test_budget_adopts_the_venue_header_only_upwards() -> None:
    clock = FakeClock(now=0.0)
    budget = RestBudget(VENUE, limit_weight=6000, clock=clock)
    await budget.acquire(10)
    budget.record_used_weight(5_000)  # other processes on our IP used weight too
    assert budget.used_weight == 5_000
    budget.record_used_weight(3)  # a late response cannot lower the count
    assert budget.used_weight == 5_000
    await budget.acquire(400)  # exactly fills the 5 400 we allow ourselves (6 000 less the 10 % margin)
    assert clock.sleeps == []
    await budget.acquire(1)
    assert clock.now == pytest.approx(60.0)


async def test_budget_refuses_impossible_weights() -> None:
    budget = RestBudget(VENUE, limit_weight=100, clock=FakeClock())
    with pytest.raises(ValueError, match="outside"):
        await budget.acquire(91)
    with pytest.raises(ValueError, match="outside"):
        await budget.acquire(0)


async def test_budget_429_without_retry_after_pauses_to_the_window_end_and_long_pauses_fail_fast() -> None:
    clock = FakeClock(now=30.0)
    budget = RestBudget(VENUE, limit_weight=100, clock=clock)
    assert budget.rate_limited(None) == pytest.approx(60.0)
    with pytest.raises(RateLimitedError) as caught:
        await budget.acquire(1, max_wait_secs=10)
    assert caught.value.resume_at == pytest.approx(60.0)
    assert clock.sleeps == []  # failing fast never sleeps
    await budget.acquire(1, max_wait_secs=30)
    assert clock.now == pytest.approx(60.0)
    assert budget.rate_limited_total == 1


async def test_budget_ban_defaults_to_two_minutes() -> None:
    clock = FakeClock(now=0.0)
    budget = RestBudget(VENUE, limit_weight=100, clock=clock)
    assert budget.banned(None) == pytest.approx(120.0)
    with pytest.raises(BannedError):
        await budget.acquire(1)  # 60 s default wait < 120 s ban
    await budget.acquire(1, max_wait_secs=math.inf)
    assert clock.now == pytest.approx(120.0)


# -- a scripted venue on loopback ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay_secs: float = 0.0


@dataclass
class ScriptedVenue:
    """Answers from ``script`` in order, then ``default``; optionally meters weight like Binance does."""

    script: deque[Reply] = field(default_factory=deque)
    default: Reply = field(default_factory=Reply)
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    meter_window_secs: float | None = None  # when set: count ``w`` per window, send the header, 429 past the limit
    meter_limit: int = 0
    metered: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        self.arrivals.append((now, request.path_qs))
        if self.meter_window_secs is not None:
            window = math.floor(now / self.meter_window_secs)
            self.metered[window] += int(request.query.get("w", "1"))
            used = self.metered[window]
            if used > self.meter_limit:
                return web.Response(status=429, body=b'{"code":-1003,"msg":"Too many requests"}')
            return web.Response(body=b"{}", headers={"X-MBX-USED-WEIGHT-1M": str(used)})
        reply = self.script.popleft() if self.script else self.default
        if reply.delay_secs:
            await asyncio.sleep(reply.delay_secs)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


@pytest.fixture
async def venue() -> AsyncIterator[tuple[ScriptedVenue, str]]:
    scripted = ScriptedVenue()
    app = web.Application()
    app.router.add_get("/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield scripted, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _sleep_to_window_start(window_secs: float) -> None:
    # Start just after a boundary so "the next request fell in a later window" means it waited.
    now = time.time()
    await asyncio.sleep(math.floor(now / window_secs + 1) * window_secs - now + 0.01)


async def test_requests_queue_when_the_weight_header_nears_the_limit(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.script.append(Reply(headers={"X-MBX-USED-WEIGHT-1M": "95"}))
    budget = RestBudget(VENUE, limit_weight=100, window_secs=0.5, safety_margin=0.0)
    async with RestClient(url, budget) as client:
        await _sleep_to_window_start(0.5)
        await client.get("/api/v3/depth", {"symbol": "BTCUSDT", "limit": 100}, weight=5)
        await client.get("/api/v3/depth", {"symbol": "ETHUSDT", "limit": 100}, weight=10)  # 95 + 10 > 100
    (first_at, first_path), (second_at, _) = scripted.arrivals
    assert first_path == "/api/v3/depth?symbol=BTCUSDT&limit=100"
    assert math.floor(second_at / 0.5) > math.floor(first_at / 0.5)
    assert budget.waits_total == 1


async def test_a_snapshot_storm_queues_instead_of_tripping_429(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.meter_window_secs, scripted.meter_limit = 0.4, 100
    budget = RestBudget(VENUE, limit_weight=100, window_secs=0.4, safety_margin=0.2)
    async with RestClient(url, budget) as client:
        await _sleep_to_window_start(0.4)
        bodies = await asyncio.gather(*(client.get("/api/v3/depth", {"w": 30}, weight=30) for _ in range(8)))
    assert bodies == [b"{}"] * 8
    assert budget.rate_limited_total == 0
    assert max(scripted.metered.values()) <= 80  # 2 x 30 per window under the 80 we allow ourselves
    assert len(scripted.metered) >= 4


async def test_429_retry_after_pauses_every_request_of_the_venue(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.script.append(
        Reply(status=429, body=b'{"code":-1003,"msg":"Too many requests"}', headers={"Retry-After": "1"})
    )
    budget = RestBudget(VENUE, limit_weight=6000)
    async with RestClient(url, budget) as client:
        first = asyncio.create_task(client.get("/api/v3/klines", weight=2))
        # Polling the counter under test: the budget exposes no event to await, and adding one only for tests is worse.
        while budget.rate_limited_total == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        limited_at = scripted.arrivals[0][0]
        others = [asyncio.create_task(client.get(f"/api/v3/depth?n={i}", weight=5)) for i in range(3)]
        assert await asyncio.gather(first, *others) == [b"{}"] * 4
    later = [at for at, _ in scripted.arrivals[1:]]
    assert len(later) == 4
    assert min(later) >= limited_at + 1.0 - 0.02  # nobody, not only the limited request, went before Retry-After
    assert budget.rate_limited_total == 1
    assert client.retries_total == 1


async def test_418_ban_raises_logs_and_blocks_until_it_ends(
    venue: tuple[ScriptedVenue, str], caplog: pytest.LogCaptureFixture
) -> None:
    scripted, url = venue
    scripted.script.append(
        Reply(
            status=418, body=b'{"code":-1003,"msg":"Way too many requests; IP banned."}', headers={"Retry-After": "1"}
        )
    )
    budget = RestBudget(VENUE, limit_weight=6000)
    async with RestClient(url, budget) as client:
        with caplog.at_level(logging.ERROR, logger="tickstrata.collector.rest"), pytest.raises(BannedError) as caught:
            await client.get("/api/v3/klines", weight=2)
        banned_at = scripted.arrivals[0][0]
        assert caught.value.status == 418
        assert caught.value.code == -1003
        assert caught.value.banned_until == pytest.approx(banned_at + 1.0, abs=0.1)
        assert budget.banned_total == 1
        assert any("banned" in record.getMessage() for record in caplog.records)

        with pytest.raises(BannedError):  # a caller that will not wait never reaches the venue
            await client.get("/api/v3/klines", weight=2, max_wait_secs=0)
        assert len(scripted.arrivals) == 1

        assert await client.get("/api/v3/klines", weight=2, max_wait_secs=5) == b"{}"
    assert scripted.arrivals[1][0] >= banned_at + 1.0 - 0.02


async def test_5xx_is_retried_with_backoff_then_succeeds(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.script.extend([Reply(status=503, body=b"busy"), Reply(status=502, body=b"")])
    scripted.default = Reply(body=b'{"lastUpdateId":1}')
    budget = RestBudget(VENUE, limit_weight=6000)
    async with RestClient(url, budget, backoff_initial_secs=0.01) as client:
        assert await client.get("/api/v3/depth", {"symbol": "BTCUSDT"}, weight=5) == b'{"lastUpdateId":1}'
    assert len(scripted.arrivals) == 3
    assert (client.retries_total, client.server_errors_total) == (2, 2)
    assert budget.weight_used_total == 15  # every attempt is counted by the venue, so by us


async def test_5xx_gives_up_after_max_attempts(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.default = Reply(status=500, body=b'{"code":-1000,"msg":"An unknown error occurred."}')
    async with RestClient(
        url, RestBudget(VENUE, limit_weight=6000), max_attempts=3, backoff_initial_secs=0.01
    ) as client:
        with pytest.raises(RestUnavailableError) as caught:
            await client.get("/api/v3/depth", weight=5)
    assert (caught.value.status, caught.value.code) == (500, -1000)
    assert len(scripted.arrivals) == 3


async def test_timeouts_are_retried(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.script.append(Reply(delay_secs=0.5))
    async with RestClient(
        url, RestBudget(VENUE, limit_weight=6000), timeout_secs=0.1, backoff_initial_secs=0.01
    ) as client:
        assert await client.get("/api/v3/depth", weight=5) == b"{}"
    assert client.transport_errors_total == 1
    assert len(scripted.arrivals) == 2


async def test_4xx_is_not_retried_and_carries_the_venue_error_code(venue: tuple[ScriptedVenue, str]) -> None:
    scripted, url = venue
    scripted.script.extend(
        [
            Reply(status=400, body=b'{"code":-1121,"msg":"Invalid symbol."}'),
            Reply(status=403, body=b"<html>Forbidden</html>"),  # a WAF page, not JSON
        ]
    )
    async with RestClient(url, RestBudget(VENUE, limit_weight=6000)) as client:
        with pytest.raises(RestError) as caught:
            await client.get("/api/v3/depth", {"symbol": "NOPE"}, weight=5)
        assert (caught.value.status, caught.value.code, caught.value.msg) == (
            400,
            -1121,
            "GET /api/v3/depth: Invalid symbol.",
        )
        assert len(scripted.arrivals) == 1
        with pytest.raises(RestError) as caught:
            await client.get("/api/v3/depth", weight=5)
        assert (caught.value.status, caught.value.code) == (403, None)
        assert len(scripted.arrivals) == 2
        assert client.retries_total == 0
