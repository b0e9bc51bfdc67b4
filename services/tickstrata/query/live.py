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
from redis.exceptions import RedisError, ResponseError
from redis.typing import KeyT, StreamIdT

from tickstrata.common.events import Trade
from tickstrata.common.health import CheckResult
from tickstrata.common.streams import LatestPrice, decode_entry, parse_market_data_stream
from tickstrata.query.bad_values import BadValues, latest_price_problem
from tickstrata.query.tasks import stop_task

Instrument = tuple[str, str]
"""(exchange, symbol)."""

TRADE_STREAM_PATTERN: Final = "md:*:trades"
DISCOVER_EVERY_SECS: Final = 2.0
RETRY_SECS: Final = 1.0
MAX_IGNORED_STREAMS: Final = 10_000
MAX_FAILURE_CHARS: Final = 500

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
    failure: str | None = None
    """Set when the shared reader died: `updates` raises `LiveReaderFailedError`."""

    def wants(self, instrument: Instrument) -> bool:
        exchange, symbol = instrument
        return symbol in self.symbols and (not self.exchanges or exchange in self.exchanges)

    def offer(self, instrument: Instrument, value: LatestPrice) -> None:
        self.conflator.offer(instrument, value)
        self.wake.set()


class LiveReaderFailedError(RuntimeError):
    """The shared reader died: subscriptions end with UNAVAILABLE and readiness fails until a restart."""


class LivePrices:
    """The shared reader; `start()` spawns it, `close()` stops it and ends every subscription.

    A stream whose name does not parse, an entry that does not decode and a trade outside the stored bounds are
    skipped and counted (`BadValues`, source ``stream``): one foreign writer cannot stop the reader. If the
    reader dies anyway, `failure` says why, every subscription ends with that error and `ready()` fails.
    """

    def __init__(self, redis: aioredis.Redis, *, block_ms: int, bad_values: BadValues) -> None:
        self._redis = redis
        self._block_ms = block_ms
        self._bad_values = bad_values
        self._subscriptions: set[Subscription] = set()
        self._cursors: dict[str, StreamIdT] = {}
        self._exchanges: dict[str, str] = {}
        self._ignored: set[str] = set()
        """Names matched by the SCAN pattern that are not ours; bounded by `MAX_IGNORED_STREAMS`."""
        self._task: asyncio.Task[None] | None = None
        self._next_discover = 0.0
        self.failure: str | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._supervised(), name="live-prices")

    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.closed = True
            subscription.wake.set()
        if self._task is not None:
            await stop_task(self._task)

    async def ready(self) -> CheckResult:
        """The readiness check: false once the reader has died."""
        if self.failure is not None:
            return CheckResult(False, f"live price reader failed: {self.failure}")
        return CheckResult(True, f"following {len(self._cursors)} trade streams")

    def subscribe(self, symbols: Iterable[str], exchanges: Iterable[str], min_interval_ns: int) -> Subscription:
        if self.failure is not None:
            raise LiveReaderFailedError(self.failure)
        subscription = Subscription(frozenset(symbols), frozenset(exchanges), Conflator(min_interval_ns))
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def _supervised(self) -> None:
        try:
            await self._run()
        except Exception as error:  # a bug or the unforeseen: fail loudly, never leave subscribers waiting
            self.failure = f"{type(error).__name__}: {error}"[:MAX_FAILURE_CHARS]
            logger.error("live prices: the shared reader died; subscriptions end", exc_info=error)
            for subscription in self._subscriptions:
                subscription.failure = self.failure
                subscription.wake.set()

    async def _discover(self) -> None:
        async for raw in self._redis.scan_iter(match=TRADE_STREAM_PATTERN, _type="stream"):
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            if name in self._cursors or name in self._ignored:
                continue
            try:
                exchange = parse_market_data_stream(name).exchange
            except ValueError as error:
                self._bad_values.record("stream", name, f"not a market-data stream: {error}")
                if len(self._ignored) < MAX_IGNORED_STREAMS:
                    self._ignored.add(name)
                continue
            # New streams are read from their tail: history is what the snapshot (the cache) is for.
            self._cursors[name] = "$"
            self._exchanges[name] = exchange

    async def _drop_non_streams(self) -> None:
        """After a WRONGTYPE reply: a followed key was replaced by another type; stop following it."""
        for name in list(self._cursors):
            if await self._redis.type(name) not in (b"stream", "stream"):
                self._bad_values.record("stream", name, "no longer a stream")
                del self._cursors[name]
                del self._exchanges[name]

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
                cursors: dict[KeyT, StreamIdT] = {name: cursor for name, cursor in self._cursors.items()}
                reply: Any = await self._redis.xread(cursors, block=self._block_ms, count=1000)
            except ResponseError as error:
                logger.warning("live prices: XREAD refused; re-checking the streams", extra={"error": repr(error)})
                with contextlib.suppress(RedisError, OSError):
                    await self._drop_non_streams()
                await asyncio.sleep(RETRY_SECS)
                continue
            except (RedisError, OSError) as error:
                logger.warning("live prices: Redis unavailable; retrying", extra={"error": repr(error)})
                await asyncio.sleep(RETRY_SECS)
                continue
            for raw_stream, entries in reply or []:
                stream = raw_stream.decode("utf-8", "replace") if isinstance(raw_stream, bytes) else str(raw_stream)
                if stream in self._cursors and entries:
                    self._cursors[stream] = entries[-1][0]
                    self._dispatch(stream, self._exchanges[stream], entries)

    def _dispatch(self, stream: str, exchange: str, entries: list[Any]) -> None:
        newest: dict[Instrument, LatestPrice] = {}
        for _entry_id, fields in entries:
            try:
                events = decode_entry(fields).events
            except Exception as error:  # anything a foreign writer put there: the writer dead-letters it
                self._bad_values.record("stream", stream, f"undecodable entry: {type(error).__name__}: {error}")
                continue
            for event in events:
                if not isinstance(event, Trade):
                    continue
                value = LatestPrice.from_trade(event)
                problem = latest_price_problem(value)
                if problem is not None:
                    self._bad_values.record("stream", stream, f"{event.symbol}: {problem}")
                    continue
                newest[(exchange, event.symbol)] = value
        for instrument, value in newest.items():
            for subscription in self._subscriptions:
                if subscription.wants(instrument):
                    subscription.offer(instrument, value)


async def updates(subscription: Subscription, *, clock_ns: Any) -> AsyncIterator[tuple[Instrument, LatestPrice]]:
    """Yield what the subscription may send, waiting for new values or for the conflation interval to pass.

    Raise `LiveReaderFailedError` when the shared reader dies: nothing more would ever arrive."""
    while not subscription.closed:
        if subscription.failure is not None:
            raise LiveReaderFailedError(subscription.failure)
        now_ns = clock_ns()
        for item in subscription.conflator.due(now_ns):
            yield item
        next_due = subscription.conflator.next_due_ns()
        subscription.wake.clear()
        timeout = None if next_due is None else max(0.0, (next_due - clock_ns()) / 1e9)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await subscription.wake.wait()
