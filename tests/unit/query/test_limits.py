"""Bounded cost and a reader that survives bad input: the instrument cache's single flight (injected clock), the
concurrency admission, and SubscribeLatest's shared reader over a fake Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import grpc
import pytest
from opentelemetry import metrics

from tickstrata.common.events import Side, Trade
from tickstrata.common.streams import xadd_args
from tickstrata.query.bad_values import BadValues
from tickstrata.query.history_rpcs import CallSlots, _AbortError
from tickstrata.query.instruments import Instrument, InstrumentCache
from tickstrata.query.live import LivePrices, LiveReaderFailedError, updates

METER = metrics.NoOpMeter("test")
BTC = ("binance", "BTC-USDT")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A fake instrument scan that blocks until released, counting the scans."""

    def __init__(self) -> None:
        self.scans = 0
        self.release = asyncio.Event()
        self.known: frozenset[Instrument] = frozenset({BTC})

    async def __call__(self) -> frozenset[Instrument]:
        self.scans += 1
        await self.release.wait()
        return self.known


async def test_a_thousand_unknown_symbols_share_one_scan_per_refresh_interval() -> None:
    source, clock = Source(), Clock()
    cache = InstrumentCache(source, refresh_secs=30, meter=METER, clock=clock)
    waiters = [asyncio.create_task(cache.get()) for _ in range(1000)]
    await asyncio.sleep(0)
    source.release.set()
    assert all(known == {BTC} for known in await asyncio.gather(*waiters))
    assert source.scans == 1, "concurrent callers of a stale list share one read"
    for _ in range(1000):  # unknown symbols within the interval: answered from the cache
        assert ("binance", "NOPE-USDT") not in await cache.get()
    clock.now += 29.9
    await cache.get()
    assert source.scans == 1
    clock.now += 0.2  # 30.1 s after the read began: a known instrument does not wait for the re-read
    source.release.clear()
    assert await cache.get(BTC) == {BTC}
    await asyncio.sleep(0)  # the background read starts
    assert source.scans == 2, "re-read in the background"
    source.release.set()
    source.known = frozenset({BTC, ("binance", "NEW-USDT")})
    results = await asyncio.gather(*(cache.get(("binance", "NEW-USDT")) for _ in range(100)))
    assert source.scans == 2
    assert all(("binance", "NEW-USDT") in known for known in results)
    assert cache.scans == 2


async def test_a_failed_scan_is_not_cached_and_a_cancelled_caller_does_not_cancel_it() -> None:
    calls = 0

    async def flaky() -> frozenset[Instrument]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise ConnectionError("QuestDB down")
        return frozenset({BTC})

    cache = InstrumentCache(flaky, refresh_secs=30, meter=METER, clock=Clock())
    with pytest.raises(ConnectionError):
        await cache.get()
    impatient = asyncio.create_task(cache.get())
    patient = asyncio.create_task(cache.get())
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == {BTC}
    assert calls == 2


def test_call_slots_refuse_past_the_limit_at_once_and_free_on_exit() -> None:
    slots = CallSlots(2)
    with slots.admit(), slots.admit():
        with pytest.raises(_AbortError) as refused, slots.admit():
            pass
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "QUERY_MAX_CONCURRENT_HISTORY_CALLS" in str(refused.value)
    assert slots.in_use == 0
    with slots.admit():
        assert slots.in_use == 1


# ---- SubscribeLatest's shared reader -------------------------------------------------------------------------


def _entry(exchange: str, trade_id: int, price: str) -> dict[bytes, bytes]:
    trade = Trade(exchange=exchange, symbol="BTC-USDT", trade_id=str(trade_id), price=Decimal(price),
                  size=Decimal(1), side=Side.BUY, ts_event_ns=trade_id, ts_recv_ns=trade_id)  # fmt: skip
    _, fields = xadd_args([trade])
    return {bytes(key) if not isinstance(key, str) else key.encode(): bytes(value) for key, value in fields.items()}  # type: ignore[arg-type]


class FakeRedis:
    """SCAN and XREAD over in-memory streams; XREAD hands out each queued reply once, then blocks briefly."""

    def __init__(self, streams: list[str]) -> None:
        self.streams = streams
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.read_keys: list[set[str]] = []

    async def scan_iter(self, match: str, _type: str) -> AsyncIterator[bytes]:
        for name in self.streams:
            yield name.encode()

    async def xread(self, streams: dict[str, Any], block: int, count: int) -> Any:
        self.read_keys.append(set(streams))
        reply = await self.replies.get()
        if isinstance(reply, BaseException):
            raise reply
        return reply


async def _next_price(subscription: Any) -> Decimal:
    async with asyncio.timeout(5):
        async for _, value in updates(subscription, clock_ns=lambda: 0):
            return Decimal(value.price)
    raise AssertionError("the subscription ended")


async def test_the_reader_skips_a_foreign_stream_garbage_and_a_huge_trade_and_counts_them() -> None:
    redis = FakeRedis(["md:Evil:trades", "md:binance:trades", "md:a:b:trades"])
    bad = BadValues(METER)
    live = LivePrices(redis, block_ms=10, bad_values=bad)  # type: ignore[arg-type]
    subscription = live.subscribe(["BTC-USDT"], [], 0)
    await live.start()
    redis.replies.put_nowait(
        [(b"md:binance:trades", [(b"1-0", {b"v": b"2", b"d": b"\xc1"}), (b"2-0", _entry("binance", 2, "1e999999999"))])]
    )
    redis.replies.put_nowait([(b"md:binance:trades", [(b"3-0", _entry("binance", 3, "64000.5"))])])
    assert await _next_price(subscription) == Decimal("64000.5")
    assert redis.read_keys[0] == {"md:binance:trades"}, "the foreign names are never read"
    assert bad.count == 4  # two foreign names, one garbage entry, one huge trade
    assert (await live.ready()).ok
    await live.close()


async def test_a_dead_reader_fails_readiness_ends_subscriptions_and_refuses_new_ones() -> None:
    redis = FakeRedis(["md:binance:trades"])
    live = LivePrices(redis, block_ms=10, bad_values=BadValues(METER))  # type: ignore[arg-type]
    subscription = live.subscribe(["BTC-USDT"], [], 0)
    await live.start()
    redis.replies.put_nowait(RuntimeError("a bug"))
    with pytest.raises(LiveReaderFailedError, match="a bug"):
        await _next_price(subscription)
    check = await live.ready()
    assert not check.ok
    assert "a bug" in check.detail
    with pytest.raises(LiveReaderFailedError):
        live.subscribe(["BTC-USDT"], [], 0)
    await live.close()
