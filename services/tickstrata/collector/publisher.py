"""From the sockets to Redis: a bounded queue, batched pipelined XADDs, and the latest-price cache.

Why this shape:
- The queue is bounded. When Redis is slow or down, `put` waits, the socket readers stop reading, and TCP pushes
  back to the venue; memory stays flat and nothing is dropped inside the process.
- One pipeline round trip per batch: events that arrived while the previous batch was in flight, or during a
  short linger (`linger_ms`, 1 ms by default), go out together, grouped by stream into entries of at most
  `batch_events` events. At low rates this is one event per entry; under load batches grow by themselves.
- A failed round trip is retried with the same batch until it succeeds or the collector stops: at-least-once,
  and every consumer is idempotent by (exchange, symbol, id/time) keys.
- What gives way when Redis cannot keep up (its memory budget is full, or it is down long enough to fill the queue)
  follows the stream contract (docs/architecture.md): trades, candles, funding and gaps are never dropped; quotes
  and book snapshots are (`collector.drops`), the oldest first — the batch being retried against a full Redis sheds
  them, and new ones are not queued while the queue is full — and each dropped window is published as a
  `backpressure` gap once Redis takes writes again.
- Market-data streams are never trimmed here (no MAXLEN): only their consumer groups trim, below what all of them
  acknowledged. `qa:quarantine`, which no group consumes, is capped by length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions
from opentelemetry import metrics, trace

from tickstrata.collector.drops import DropLedger, is_droppable
from tickstrata.common.backoff import Backoff
from tickstrata.common.clock import market_time_ns
from tickstrata.common.events import BookSnapshot, Event, Quote, Trade
from tickstrata.common.redis_connection import is_redis_full
from tickstrata.common.streams import (
    COLLECTOR_STATS_EVENTS,
    COLLECTOR_STATS_LAST_RECV_NS,
    QUARANTINE_STREAM,
    LatestPrice,
    collector_stats_key,
    encode_latest_price,
    latest_price_key,
    stream_for,
    xadd_args,
)
from tickstrata.common.telemetry import ATTR_EXCHANGE, producer_span

logger = logging.getLogger(__name__)

RETRY_INITIAL_SECS: Final = 0.1
RETRY_MAX_SECS: Final = 5.0
DROP_REASON: Final = "Redis could not take them in time (memory budget full or Redis unavailable)"


class Publisher:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        exchange: str,
        queue_events: int,
        batch_events: int,
        quarantine_max_entries: int = 10_000,
        linger_ms: float = 1.0,
        stats_key: str | None = None,
        tracer: trace.Tracer,
        meter: metrics.Meter,
    ) -> None:
        self._client = client
        self._exchange = exchange
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_events)
        self._batch_events = batch_events
        self._linger_secs = linger_ms / 1000
        self._drain_limit = max(batch_events * 20, 1000)
        self._quarantine_max_entries = quarantine_max_entries
        self._drops = DropLedger(exchange)
        self._stats_key = stats_key if stats_key is not None else collector_stats_key(exchange)
        self._tracer = tracer
        self.published_events = 0
        self.published_entries = 0
        self._published_counter = meter.create_counter(
            "tickstrata.collector.events.published", unit="{event}", description="Events written to Redis Streams"
        )
        self._cache_latency_ms = meter.create_histogram(
            "tickstrata.collector.event_to_cache.latency_ms",
            unit="ms",
            description="Venue event time to the latest-price cache being updated",
        )
        self._redis_errors = meter.create_counter(
            "tickstrata.collector.redis.errors", unit="{error}", description="Failed Redis round trips (retried)"
        )
        self._dropped_counter = meter.create_counter(
            "tickstrata.collector.events.dropped",
            unit="{event}",
            description="Quotes and books dropped because Redis could not take them (each window published as a gap)",
        )
        self._quarantine_trimmed = meter.create_counter(
            "tickstrata.collector.quarantine.trimmed",
            unit="{entry}",
            description="Quarantine entries pushed out of qa:quarantine by its length cap",
        )

    @property
    def queued_events(self) -> int:
        return self._queue.qsize()

    @property
    def dropped_events(self) -> int:
        return self._drops.dropped_events

    async def put(self, event: Event) -> None:
        """Queue one event. While the queue is full, quotes and books are dropped (recorded for a gap) and every
        other event waits (backpressure to the socket reader)."""
        if not self._queue.full():
            self._queue.put_nowait(event)
        elif is_droppable(event):
            self._drop(event)
        else:
            await self._queue.put(event)

    def _drop(self, event: Quote | BookSnapshot) -> None:
        if not self._drops:
            logger.error("Redis cannot keep up: dropping quotes and books", extra={"queued": self._queue.qsize()})
        data_type = self._drops.drop(event)
        self._dropped_counter.add(
            1, {"exchange": self._exchange, "data_type": data_type.value, "reason": "backpressure"}
        )

    async def put_many(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.put(event)

    async def run(self) -> None:
        """Publish until cancelled. Cancellation between batches loses nothing still queued: see `flush`."""
        while True:
            first = await self._queue.get()
            if self._queue.qsize() < self._batch_events and self._linger_secs:
                # A moment for the socket readers to add to this batch: without it a busy feed sends one round
                # trip per ~3 events and Redis round trips, not parsing, cap the collector (measured 7k vs 29k
                # events/s with 2 ms). Idle feeds pay the linger once per event, far inside the latency budget.
                await asyncio.sleep(self._linger_secs)
            batch = [first]
            while len(batch) < self._drain_limit and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._publish_with_retry(batch)

    async def flush(self, *, timeout_secs: float) -> int:
        """Publish whatever is still queued (shutdown path); return how many events were left unpublished."""
        deadline = time.monotonic() + timeout_secs
        while not self._queue.empty() and time.monotonic() < deadline:
            batch: list[Event] = []
            while len(batch) < self._drain_limit and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await asyncio.wait_for(self._publish(batch), timeout=max(0.01, deadline - time.monotonic()))
            except (TimeoutError, redis.exceptions.RedisError, OSError):
                logger.exception("flush failed", extra={"events_lost": len(batch) + self._queue.qsize()})
                return len(batch) + self._queue.qsize()
        return self._queue.qsize()

    async def _publish_with_retry(self, batch: list[Event]) -> None:
        backoff = Backoff(RETRY_INITIAL_SECS, RETRY_MAX_SECS)
        while True:
            if self._drops:
                # Redis takes writes again (or did until now): publish what was let go, with its exact windows.
                batch = [*batch, *self._drops.take_gaps(now_ns=market_time_ns(), reason=DROP_REASON)]
            try:
                await self._publish(batch)
                return
            except (redis.exceptions.RedisError, OSError) as error:
                self._redis_errors.add(1)
                if is_redis_full(error) or self._queue.full():
                    batch = self._shed(batch)
                delay_secs = backoff.next_delay_secs()
                logger.warning(
                    "redis publish failed; retrying the same batch",
                    extra={"error": repr(error), "events": len(batch), "retry_in_secs": round(delay_secs, 3)},
                )
                await asyncio.sleep(delay_secs)

    def _shed(self, batch: list[Event]) -> list[Event]:
        """Drop the quotes and books of a batch Redis cannot take (the oldest of them: the queue holds newer)."""
        kept: list[Event] = []
        for event in batch:
            if is_droppable(event):
                self._drop(event)
            else:
                kept.append(event)
        return kept

    async def _publish(self, batch: list[Event]) -> None:
        by_stream: dict[str, list[Event]] = defaultdict(list)
        latest: dict[str, Trade] = {}
        for event in batch:
            by_stream[stream_for(event)].append(event)
            if type(event) is Trade and not event.backfilled:
                latest[event.symbol] = event
        pipe = self._client.pipeline(transaction=False)
        entries = 0
        quarantine_entries = 0
        # One PRODUCER span per stream and round trip, open until Redis answered, its context in every entry.
        with contextlib.ExitStack() as spans:
            for stream, events in by_stream.items():
                carrier: dict[str, str] = {}
                span = spans.enter_context(
                    producer_span(self._tracer, stream, carrier=carrier, attributes={ATTR_EXCHANGE: self._exchange})
                )
                span.set_attribute("messaging.batch.message_count", len(events))
                for start in range(0, len(events), self._batch_events):
                    name, fields = xadd_args(
                        events[start : start + self._batch_events],
                        traceparent=carrier.get("traceparent"),
                        tracestate=carrier.get("tracestate"),
                    )
                    if name == QUARANTINE_STREAM:
                        pipe.xadd(name, fields, maxlen=self._quarantine_max_entries, approximate=False)
                        quarantine_entries += 1
                    else:
                        pipe.xadd(name, fields)  # never trimmed here: consumers trim below what all groups acked
                    entries += 1
            for symbol, trade in latest.items():
                pipe.set(latest_price_key(self._exchange, symbol), encode_latest_price(LatestPrice.from_trade(trade)))
            # Totals for the operator's status (events/s, last event age): two cheap commands in the same trip.
            pipe.hincrby(self._stats_key, COLLECTOR_STATS_EVENTS, len(batch))
            pipe.hset(self._stats_key, COLLECTOR_STATS_LAST_RECV_NS, str(max(event.ts_recv_ns for event in batch)))
            if quarantine_entries:
                pipe.xlen(QUARANTINE_STREAM)
            replies = await pipe.execute()
        if quarantine_entries and int(replies[-1]) >= self._quarantine_max_entries:
            # At the cap every quarantine entry added pushed an older one out.
            self._quarantine_trimmed.add(quarantine_entries, {"exchange": self._exchange})
        now_ns = market_time_ns()
        for trade in latest.values():
            self._cache_latency_ms.record((now_ns - trade.ts_event_ns) / 1e6)
        self.published_events += len(batch)
        self.published_entries += entries
        self._published_counter.add(len(batch), {"exchange": self._exchange})
