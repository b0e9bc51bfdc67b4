"""The writer's loop: market-data streams → QuestDB, acknowledged only once QuestDB has the rows.

    discover md:* streams, ensure the group → re-read own pending entries (id 0) → read new (>) → decode →
    one DataFrame per table → write one transaction per table → check no table is WAL-suspended → XACK

A crash anywhere before the XACK re-delivers the entries, and the tables' DEDUP keys absorb the replay. While
QuestDB is down the loop retries the batch it holds (with capped backoff) and reads nothing new: the stream is
the buffer and the writer's memory stays one batch. Every `janitor_interval_secs` it discovers new streams,
claims entries idle in dead consumers (XAUTOCLAIM), and trims each stream below what every group has consumed.

Poison entries (undecodable, holding events the canonical decoder refuses or QuestDB cannot store, or delivered
more than `max_deliveries` times) go to `dlq:writer` with their reason, each alone: the rest of the batch is
stored. Each traced entry continues its collector's trace (`tickstrata.writer.tracing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio as aioredis
from opentelemetry import trace
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import KeyT, StreamIdT

from tickstrata.common.streams import (
    MARKET_DATA_STREAM_PATTERN,
    WRITER_GROUP,
    EntryDecodeError,
    UnsupportedSchemaError,
    dead_letter_stream,
    encode_dead_letter,
    parse_market_data_stream,
)
from tickstrata.writer.frames import TableFrame, build_batch
from tickstrata.writer.questdb_sink import TableWrite
from tickstrata.writer.tables import STORED_DATA_TYPES
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


@dataclass(frozen=True, slots=True)
class Delivered:
    stream: str
    entry_id: bytes
    fields: Mapping[bytes, bytes] | None
    """None when the entry was deleted (trimmed) while pending: nothing left to write."""
    deliveries: int


class _AbandonedError(Exception):
    """Stop was requested while QuestDB was failing: leave the batch pending for the next writer."""


def _id_key(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StreamConsumer:
    """One writer consumer. `run()` until `request_stop()`; the batch in hand is finished (written and acked)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        write_tables: WriteTables,
        config: ConsumerConfig,
        *,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._redis = redis
        self._write_tables = write_tables
        self._config = config
        self._tracer = tracer or trace.get_tracer(__name__)
        self._streams: set[str] = set()
        # Streams whose own pending history (XREADGROUP ... <id>) is still being re-read, with the cursor.
        self._history: dict[KeyT, StreamIdT] = {}
        self._stopping = asyncio.Event()
        self._next_janitor_at = 0.0
        self.written_events = 0
        self.dead_lettered = 0

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        backoff_secs = RETRY_BACKOFF_MIN_SECS
        while not self._stopping.is_set():
            try:
                await self._step()
                backoff_secs = RETRY_BACKOFF_MIN_SECS
            except _AbandonedError:
                logger.warning("stopped while QuestDB was failing; the batch stays pending for the next writer")
                return
            except (RedisConnectionError, RedisTimeoutError) as error:
                # Redis away: nothing was acked, so whatever was read is pending for us. Re-read our own history
                # once it is back (a read reply lost in transit still counts as delivered to us).
                logger.warning("Redis unavailable; retrying", extra={"error": f"{type(error).__name__}: {error}"})
                self._history = dict.fromkeys(self._streams, b"0")
                await self.sleep(backoff_secs)
                backoff_secs = min(backoff_secs * 2, RETRY_BACKOFF_MAX_SECS)

    async def _step(self) -> None:
        if time.monotonic() >= self._next_janitor_at:
            await self._janitor()
            self._next_janitor_at = time.monotonic() + self._config.janitor_interval_secs
        delivered = await self._read()
        if delivered:
            await self._process(delivered)

    # ---- reading ------------------------------------------------------------------------------------------

    async def _read(self) -> list[Delivered]:
        if not self._streams:
            await self.sleep(self._config.block_ms / 1000)
            return []
        if self._history:
            return await self._read_history()
        reply: Any = await self._redis.xreadgroup(
            WRITER_GROUP,
            self._config.consumer_name,
            dict.fromkeys(sorted(self._streams), ">"),
            count=self._config.batch_entries,
            block=self._config.block_ms,
        )
        return [
            Delivered(_text(stream), entry_id, fields, 1)
            for stream, entries in reply or []
            for entry_id, fields in entries
        ]

    async def _read_history(self) -> list[Delivered]:
        reply: Any = await self._redis.xreadgroup(
            WRITER_GROUP, self._config.consumer_name, dict(self._history), count=self._config.batch_entries
        )
        delivered: list[Delivered] = []
        for raw_stream, entries in reply or []:
            stream = _text(raw_stream)
            if not entries:
                del self._history[stream]  # own history exhausted: from now on only new entries
                continue
            self._history[stream] = entries[-1][0]
            counts = await self._delivery_counts(stream, entries[0][0], entries[-1][0], len(entries))
            delivered += [Delivered(stream, i, fields, counts.get(i, 1)) for i, fields in entries]
        return delivered

    async def _delivery_counts(self, stream: str, first: bytes, last: bytes, count: int) -> dict[bytes, int]:
        rows: Any = await self._redis.xpending_range(
            stream, WRITER_GROUP, min=first, max=last, count=count, consumername=self._config.consumer_name
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    # ---- processing ---------------------------------------------------------------------------------------

    async def _process(self, delivered: Sequence[Delivered]) -> None:
        spans = BatchSpans(self._tracer)
        try:
            await self._process_traced(delivered, spans)
        except BaseException as error:
            spans.finish(error)
            raise
        spans.finish()

    async def _process_traced(self, delivered: Sequence[Delivered], spans: BatchSpans) -> None:
        to_ack: dict[str, list[bytes]] = {}
        dead: list[tuple[Delivered, str]] = []
        decoded = self._decode(delivered, spans, to_ack, dead)
        if decoded:
            # Off the event loop: a large batch takes tens of milliseconds of CPU, and health checks must answer.
            batch = await asyncio.to_thread(build_batch, [(item.fields or {}, events) for item, events in decoded])
            for index, (item, _) in enumerate(decoded):
                if index in batch.rejected:
                    dead.append((item, batch.rejected[index]))
                else:
                    to_ack.setdefault(item.stream, []).append(item.entry_id)
            if batch.frames:
                writes = await self._write_until_done(batch.frames, spans)
                spans.record_writes(writes)
                self.written_events += sum(len(frame) for frame in batch.frames)
        if dead:
            await self._dead_letter(dead, spans)
        for stream, ids in to_ack.items():
            await self._redis.xack(stream, WRITER_GROUP, *ids)

    def _decode(
        self,
        delivered: Sequence[Delivered],
        spans: BatchSpans,
        to_ack: dict[str, list[bytes]],
        dead: list[tuple[Delivered, str]],
    ) -> list[tuple[Delivered, tuple[WireEvent, ...]]]:
        """The entries to store; deleted ones go to `to_ack`, poison ones to `dead`, newer schemas stay pending."""
        decoded: list[tuple[Delivered, tuple[WireEvent, ...]]] = []
        for item in delivered:
            if item.fields is None:
                to_ack.setdefault(item.stream, []).append(item.entry_id)
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
                dead.append((item, str(error)))
                continue
            spans.start(item.stream, item.entry_id, item.fields, events)
            if item.deliveries > self._config.max_deliveries:
                dead.append((item, f"max_deliveries: delivered {item.deliveries} times"))
                continue
            decoded.append((item, events))
        return decoded

    async def _write_until_done(self, frames: Sequence[TableFrame], spans: BatchSpans) -> Sequence[TableWrite]:
        backoff_secs = RETRY_BACKOFF_MIN_SECS
        while True:
            try:
                return await self._write_tables(frames)
            except Exception as error:  # any QuestDB failure: keep the entries pending, retry, never ack
                logger.warning("QuestDB write failed; retrying", extra={"error": f"{type(error).__name__}: {error}"})
                spans.record_retry(error)
            if self._stopping.is_set():
                raise _AbandonedError
            await self.sleep(backoff_secs)
            backoff_secs = min(backoff_secs * 2, RETRY_BACKOFF_MAX_SECS)

    async def _dead_letter(self, dead: Sequence[tuple[Delivered, str]], spans: BatchSpans) -> None:
        # XADD and XACK in one MULTI: a crash between them would otherwise dead-letter the entry twice.
        async with self._redis.pipeline(transaction=True) as pipe:
            for item, reason in dead:
                fields = encode_dead_letter(
                    source_stream=item.stream,
                    entry_id=item.entry_id,
                    reason=reason,
                    delivery_count=item.deliveries,
                    fields=item.fields or {},
                )
                pipe.xadd(DEAD_LETTER_STREAM, dict(fields))  # type: ignore[arg-type]
                pipe.xack(item.stream, WRITER_GROUP, item.entry_id)
                logger.error(
                    "entry dead-lettered", extra={"stream": item.stream, "id": item.entry_id, "reason": reason}
                )
            await pipe.execute()
        for item, reason in dead:
            spans.fail(item.stream, item.entry_id, f"dead-lettered: {reason}")
        self.dead_lettered += len(dead)

    async def sleep(self, secs: float) -> None:
        # Wakes early on stop, so a stop request is not delayed by a backoff.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=secs)

    # ---- janitor ------------------------------------------------------------------------------------------

    async def _janitor(self) -> None:
        await self._discover()
        for stream in sorted(self._streams):
            await self._claim_idle(stream)
            if self._stopping.is_set():
                return
            await self._trim(stream)

    async def _discover(self) -> None:
        found: set[str] = set()
        async for raw in self._redis.scan_iter(match=MARKET_DATA_STREAM_PATTERN, _type="stream"):
            name = _text(raw)
            try:
                data_type = parse_market_data_stream(name).data_type
            except ValueError:
                continue  # not ours to write (a malformed name someone created by hand)
            if data_type in STORED_DATA_TYPES:
                found.add(name)
        for stream in sorted(found - self._streams):
            try:
                await self._redis.xgroup_create(stream, WRITER_GROUP, id="0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
            self._streams.add(stream)
            self._history[stream] = b"0"  # a restarted writer first re-reads what it had taken

    async def _claim_idle(self, stream: str) -> None:
        cursor: bytes | str = b"0-0"
        while not self._stopping.is_set():
            reply: Any = await self._redis.xautoclaim(
                stream,
                WRITER_GROUP,
                self._config.consumer_name,
                min_idle_time=self._config.claim_idle_ms,
                start_id=cursor,
                count=self._config.batch_entries,
            )
            cursor, entries = reply[0], reply[1]
            live = [(i, f) for i, f in entries if f is not None]  # Redis 7 drops deleted ones from the PEL itself
            if live:
                counts = await self._delivery_counts(stream, live[0][0], live[-1][0], len(live))
                logger.info("claimed idle entries", extra={"stream": stream, "entries": len(live)})
                await self._process([Delivered(stream, i, f, counts.get(i, 1)) for i, f in live])
            if _id_key(cursor) == (0, 0):
                return

    async def _trim(self, stream: str) -> None:
        """Trim below the oldest entry any group still needs: its oldest pending, else its last delivered."""
        groups: Any = await self._redis.xinfo_groups(stream)
        keep_from: tuple[int, int] | None = None
        for group in groups:
            needed = _id_key(group["last-delivered-id"])
            if int(group["pending"]) > 0:
                summary: Any = await self._redis.xpending(stream, group["name"])
                if summary["min"] is not None:
                    needed = min(needed, _id_key(summary["min"]))
            keep_from = needed if keep_from is None else min(keep_from, needed)
        if keep_from is not None and keep_from > (0, 0):
            await self._redis.xtrim(stream, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=True)
