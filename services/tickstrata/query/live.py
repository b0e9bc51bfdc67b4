"""Live latest prices for `SubscribeLatest`: one reader of the trade streams, fanned out to every subscriber.

    md:*:trades ──XREAD (one task per query process)──► LivePrices ──► Subscription (per call)

The reader follows every `md:<exchange>:trades` stream from its tail (new streams are found by SCAN) and hands
each trade to the subscriptions that want its symbol and exchange. A subscription keeps only the newest price per
instrument that it has not sent yet (`Conflator`), so a slow client receives the newest values, never a backlog,
and its memory is bounded by the number of instruments it follows. The first answer of a call is the cache's
current value of every matching instrument, read with SCAN/MGET like GetLatestPrice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.typing import KeyT, StreamIdT

from tickstrata.common.events import Trade
from tickstrata.common.streams import LatestPrice, decode_entry, parse_market_data_stream

Instrument = tuple[str, str]
"""(exchange, symbol)."""

TRADE_STREAM_PATTERN: Final = "md:*:trades"
DISCOVER_EVERY_SECS: Final = 2.0
RETRY_SECS: Final = 1.0

logger = logging.getLogger(__name__)


@dataclass
class Conflator:
    """The newest unsent value per instrument, released at most once per `min_interval_ns` per instrument. Pure."""

    min_interval_ns: int
    pending: dict[Instrument, LatestPrice] = field(default_factory=dict)
    last_sent_ns: dict[Instrument, int] = field(default_factory=dict)

    def offer(self, instrument: Instrument, value: LatestPrice) -> None:
        current = self.pending.get(instrument)
        if current is None or value.ts_event_ns >= current.ts_event_ns:
            self.pending[instrument] = value

    def due(self, now_ns: int) -> list[tuple[Instrument, LatestPrice]]:
        """Values that may be sent now, in instrument order; they leave the pending set."""
        ready = [
            instrument
            for instrument in sorted(self.pending)
            if now_ns - self.last_sent_ns.get(instrument, -(2**62)) >= self.min_interval_ns
        ]
        for instrument in ready:
            self.last_sent_ns[instrument] = now_ns
        return [(instrument, self.pending.pop(instrument)) for instrument in ready]

    def next_due_ns(self) -> int | None:
        """When the earliest held-back value may go, or None when nothing is pending."""
        if not self.pending:
            return None
        return min(self.last_sent_ns.get(i, -(2**62)) + self.min_interval_ns for i in self.pending)


@dataclass(eq=False)  # identity: one object per call, kept in a set
class Subscription:
    symbols: frozenset[str]
    exchanges: frozenset[str]
    """Empty: every exchange."""
    conflator: Conflator
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def wants(self, instrument: Instrument) -> bool:
        exchange, symbol = instrument
        return symbol in self.symbols and (not self.exchanges or exchange in self.exchanges)

    def offer(self, instrument: Instrument, value: LatestPrice) -> None:
        self.conflator.offer(instrument, value)
        self.wake.set()


class LivePrices:
    """The shared reader; `start()` spawns it, `close()` stops it and ends every subscription."""

    def __init__(self, redis: aioredis.Redis, *, block_ms: int) -> None:
        self._redis = redis
        self._block_ms = block_ms
        self._subscriptions: set[Subscription] = set()
        self._cursors: dict[KeyT, StreamIdT] = {}
        self._task: asyncio.Task[None] | None = None
        self._next_discover = 0.0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-prices")

    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.closed = True
            subscription.wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self, symbols: Iterable[str], exchanges: Iterable[str], min_interval_ns: int) -> Subscription:
        subscription = Subscription(frozenset(symbols), frozenset(exchanges), Conflator(min_interval_ns))
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def _discover(self) -> None:
        async for raw in self._redis.scan_iter(match=TRADE_STREAM_PATTERN, _type="stream"):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            if name not in self._cursors:
                # New streams are read from their tail: history is what the snapshot (the cache) is for.
                self._cursors[name] = "$"

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() >= self._next_discover:
                    await self._discover()
                    self._next_discover = loop.time() + DISCOVER_EVERY_SECS
                if not self._cursors:
                    await asyncio.sleep(self._block_ms / 1000)
                    continue
                reply: Any = await self._redis.xread(dict(self._cursors), block=self._block_ms, count=1000)
            except (RedisError, OSError) as error:
                logger.warning("live prices: Redis unavailable; retrying", extra={"error": repr(error)})
                await asyncio.sleep(RETRY_SECS)
                continue
            for raw_stream, entries in reply or []:
                stream = raw_stream.decode() if isinstance(raw_stream, bytes) else str(raw_stream)
                self._cursors[stream] = entries[-1][0]
                self._dispatch(stream, entries)

    def _dispatch(self, stream: str, entries: list[Any]) -> None:
        exchange = parse_market_data_stream(stream).exchange
        newest: dict[Instrument, LatestPrice] = {}
        for _entry_id, fields in entries:
            try:
                events = decode_entry(fields).events
            except ValueError:
                continue  # the writer dead-letters it; a live view just skips it
            for event in events:
                if isinstance(event, Trade):
                    newest[(exchange, event.symbol)] = LatestPrice.from_trade(event)
        for instrument, value in newest.items():
            for subscription in self._subscriptions:
                if subscription.wants(instrument):
                    subscription.offer(instrument, value)


async def updates(subscription: Subscription, *, clock_ns: Any) -> AsyncIterator[tuple[Instrument, LatestPrice]]:
    """Yield what the subscription may send, waiting for new values or for the conflation interval to pass."""
    while not subscription.closed:
        now_ns = clock_ns()
        for item in subscription.conflator.due(now_ns):
            yield item
        next_due = subscription.conflator.next_due_ns()
        subscription.wake.clear()
        timeout = None if next_due is None else max(0.0, (next_due - clock_ns()) / 1e9)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await subscription.wake.wait()
