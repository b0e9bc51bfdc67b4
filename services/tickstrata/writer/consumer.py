"""The writer's batch handler on the consumer-group engine: market-data entries → QuestDB, acked once stored.

    ConsumerGroup (tickstrata.common.consumer_group: read, claim, ack, dead-letter, trim, lag, losses)
      └─ handler: decode → entry rules → one DataFrame per table → one transaction per table
                  → check no table is WAL-suspended → entries to acknowledge / dead-letter

A crash anywhere before the XACK re-delivers the entries, and the tables' DEDUP keys absorb the replay. While
QuestDB is down the handler retries the batch it holds (with capped backoff) and the engine reads nothing new: the
stream is the buffer and the writer's memory stays one batch.

Poison entries (undecodable, breaking the entry rules — wrong stream, implausible time, bad numbers — holding
events QuestDB cannot store, or delivered more than `max_deliveries` times) go to `dlq:writer` with their reason,
each alone: the rest of the batch is stored. Each traced entry continues its collector's trace
(`tickstrata.writer.tracing`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from opentelemetry import metrics, trace

from tickstrata.common.backoff import Backoff
from tickstrata.common.consumer_group import AbandonBatch, BatchOutcome, ConsumerGroup, Delivered, GroupConfig
from tickstrata.common.questdb_schema import STORED_DATA_TYPES
from tickstrata.common.streams import (
    WRITER_GROUP,
    EntryDecodeError,
    UnsupportedSchemaError,
    dead_letter_stream,
    parse_market_data_stream,
)
from tickstrata.writer.candle_guard import ClosedCandles
from tickstrata.writer.entry_rules import entry_violation, size_violation
from tickstrata.writer.frames import TableFrame, build_batch
from tickstrata.writer.questdb_sink import TableWrite
from tickstrata.writer.tracing import BatchSpans
from tickstrata.writer.wire import WireEvent, decode_wire_entry

logger = logging.getLogger(__name__)

DEAD_LETTER_STREAM: Final = dead_letter_stream(WRITER_GROUP)
RETRY_BACKOFF_MIN_SECS: Final = 0.1
RETRY_BACKOFF_MAX_SECS: Final = 5.0

# Writes each frame as one transaction and says when; raises on any failure (nothing is acknowledged then).
WriteTables = Callable[[Sequence[TableFrame]], Awaitable[Sequence[TableWrite]]]


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    consumer_name: str
    batch_entries: int = 500
    block_ms: int = 1000
    claim_idle_ms: int = 60_000
    max_deliveries: int = 5
    janitor_interval_secs: float = 10.0
    dead_letter_max_entries: int = 100_000
    future_tolerance_ns: int = 5_000_000_000
    max_entry_bytes: int = 4 * 1024 * 1024


def is_stored_stream(name: str) -> bool:
    """A market-data stream whose data type the writer stores (a malformed name created by hand is not ours)."""
    try:
        return parse_market_data_stream(name).data_type in STORED_DATA_TYPES
    except ValueError:
        return False


class StreamConsumer:
    """One writer consumer. `run()` until `request_stop()`; the batch in hand is finished (written and acked)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        write_tables: WriteTables,
        config: ConsumerConfig,
        *,
        tracer: trace.Tracer | None = None,
        meter: metrics.Meter | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._write_tables = write_tables
        self._config = config
        self._tracer = tracer or trace.get_tracer(__name__)
        self._clock_ns = clock_ns
        self._closed_candles = ClosedCandles()
        self.group = ConsumerGroup(
            redis,
            self._handle,
            GroupConfig(
                group=WRITER_GROUP,
                consumer_name=config.consumer_name,
                batch_entries=config.batch_entries,
                block_ms=config.block_ms,
                claim_idle_ms=config.claim_idle_ms,
                max_deliveries=config.max_deliveries,
                janitor_interval_secs=config.janitor_interval_secs,
                dead_letter_max_entries=config.dead_letter_max_entries,
            ),
            accepts=is_stored_stream,
            meter=meter,
            clock_ns=clock_ns,
        )
        self.written_events = 0

    @property
    def dead_lettered(self) -> int:
        return self.group.dead_lettered

    def request_stop(self) -> None:
        self.group.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self.group.stop_requested

    async def sleep(self, secs: float) -> None:
        await self.group.sleep(secs)

    async def run(self) -> None:
        await self.group.run()

    # ---- the batch handler --------------------------------------------------------------------------------

    async def _handle(self, delivered: Sequence[Delivered]) -> BatchOutcome:
        spans = BatchSpans(self._tracer)
        try:
            outcome = await self._handle_traced(delivered, spans)
        except BaseException as error:
            spans.finish(error)
            raise
        spans.finish()
        return outcome

    async def _handle_traced(self, delivered: Sequence[Delivered], spans: BatchSpans) -> BatchOutcome:
        outcome = BatchOutcome()
        decoded = self._decode(delivered, spans, outcome)
        if decoded:
            # Off the event loop: a large batch takes tens of milliseconds of CPU, and health checks must answer.
            entries = [(item.fields, events) for item, events in decoded]
            batch = await asyncio.to_thread(build_batch, entries, self._closed_candles.keep)
            for index, (item, _) in enumerate(decoded):
                if index in batch.rejected:
                    outcome.dead.append((item, batch.rejected[index]))
                else:
                    outcome.acked.append(item)
            if batch.frames:
                writes = await self._write_until_done(batch.frames, spans)
                spans.record_writes(writes)
                self.written_events += sum(len(frame) for frame in batch.frames)
        for item, reason in outcome.dead:
            spans.fail(item.stream, item.entry_id, f"dead-lettered: {reason}")
        return outcome

    def _decode(
        self, delivered: Sequence[Delivered], spans: BatchSpans, outcome: BatchOutcome
    ) -> list[tuple[Delivered, tuple[WireEvent, ...]]]:
        """The entries to store; poison ones go to `outcome.dead`, newer schemas stay pending."""
        decoded: list[tuple[Delivered, tuple[WireEvent, ...]]] = []
        now_ns = self._clock_ns()
        for item in delivered:
            entry_bytes = sum(len(value) for value in item.fields.values())
            too_large = size_violation(entry_bytes, self._config.max_entry_bytes)
            if too_large is not None:  # refused unread: decoding it is the cost a hostile entry would impose
                spans.start(item.stream, item.entry_id, item.fields, ())
                outcome.dead.append((item, too_large))
                continue
            try:
                events = decode_wire_entry(item.fields)
            except UnsupportedSchemaError as error:
                # A newer producer: a newer writer will read it. Dead-lettering would hide it; alert instead.
                logger.error(
                    "entry left pending", extra={"stream": item.stream, "id": item.entry_id, "error": str(error)}
                )
                spans.start(item.stream, item.entry_id, item.fields, ())
                spans.fail(item.stream, item.entry_id, f"left pending: {error}")
                continue
            except EntryDecodeError as error:
                spans.start(item.stream, item.entry_id, item.fields, ())
                outcome.dead.append((item, str(error)))
                continue
            spans.start(item.stream, item.entry_id, item.fields, events)
            violation = entry_violation(
                parse_market_data_stream(item.stream),
                events,
                now_ns=now_ns,
                future_tolerance_ns=self._config.future_tolerance_ns,
                entry_bytes=entry_bytes,
                max_entry_bytes=self._config.max_entry_bytes,
            )
            if violation is not None:
                outcome.dead.append((item, violation))
                continue
            decoded.append((item, events))
        return decoded

    async def _write_until_done(self, frames: Sequence[TableFrame], spans: BatchSpans) -> Sequence[TableWrite]:
        backoff = Backoff(RETRY_BACKOFF_MIN_SECS, RETRY_BACKOFF_MAX_SECS)
        while True:
            try:
                return await self._write_tables(frames)
            except Exception as error:  # any QuestDB failure: keep the entries pending, retry, never ack
                logger.warning("QuestDB write failed; retrying", extra={"error": f"{type(error).__name__}: {error}"})
                spans.record_retry(error)
            if self.stop_requested:
                raise AbandonBatch
            await self.sleep(backoff.next_delay_secs())
