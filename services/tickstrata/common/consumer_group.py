"""One consumer-group engine for every service that consumes streams: the writer today, the validator and tierer next.

    discover streams, create the group → re-read own pending entries (id 0) → read new (>) → handler(batch)
    → dead-letter + XACK in one MULTI, XACK the rest → every `janitor_interval_secs`: claim entries idle in dead
    consumers (XAUTOCLAIM), account for losses, sample the lag, trim below what every group has acknowledged

The handler decides what each entry becomes (acknowledged, dead-lettered with a reason, or left pending) and raises
`AbandonBatch` when a stop was requested while its sink was failing; the engine owns every Redis mechanic. A crash
anywhere before the XACK re-delivers the entries, so handlers must be idempotent (the writer's are, by QuestDB's
DEDUP keys).

Nothing is lost silently (`tickstrata.common.stream_accounting`): an entry deleted while pending, or deleted before
it was ever delivered, is an ERROR log line, the `tickstrata.stream.lost_entries` counter, and a `stream_loss` gap on
`qa:gaps` with the window its events can have had. Lag per stream is exported as gauges (pending entries, entries
not yet delivered, age of the oldest unacknowledged entry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis.asyncio as aioredis
from opentelemetry import metrics
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import KeyT, StreamIdT

from tickstrata.common.backoff import Backoff
from tickstrata.common.redis_connection import is_redis_full
from tickstrata.common.stream_accounting import (
    GroupState,
    StreamId,
    StreamState,
    UndeliveredLoss,
    format_id,
    just_before,
    loss_gap,
    oldest_pending_age_ms,
    parse_id,
    trim_point,
    undelivered_loss,
)
from tickstrata.common.streams import (
    GAP_STREAM,
    MARKET_DATA_STREAM_PATTERN,
    dead_letter_stream,
    encode_dead_letter,
    encode_entry,
)

logger = logging.getLogger(__name__)

RETRY_BACKOFF_MIN_SECS: Final = 0.1
RETRY_BACKOFF_MAX_SECS: Final = 5.0


@dataclass(frozen=True, slots=True)
class GroupConfig:
    group: str
    consumer_name: str
    stream_pattern: str = MARKET_DATA_STREAM_PATTERN
    batch_entries: int = 500
    block_ms: int = 1000
    claim_idle_ms: int = 60_000
    max_deliveries: int = 5
    janitor_interval_secs: float = 10.0
    dead_letter_max_entries: int = 100_000
    """`dlq:<group>` is trimmed to about this many entries (MAXLEN ~): poison input cannot fill Redis."""


@dataclass(frozen=True, slots=True)
class Delivered:
    stream: str
    entry_id: bytes
    fields: Mapping[bytes, bytes]
    deliveries: int


@dataclass(slots=True)
class BatchOutcome:
    """What the handler made of a batch; entries in neither list stay pending (read again after a restart)."""

    acked: list[Delivered] = field(default_factory=list)
    dead: list[tuple[Delivered, str]] = field(default_factory=list)


class AbandonBatch(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by a handler when stop was requested while its sink was failing: the batch stays pending."""


BatchHandler = Callable[[Sequence[Delivered]], Awaitable[BatchOutcome]]
StreamFilter = Callable[[str], bool]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ConsumerGroup:
    """One consumer of one group. `run()` until `request_stop()`; the batch in hand is finished first."""

    def __init__(
        self,
        redis: aioredis.Redis,
        handler: BatchHandler,
        config: GroupConfig,
        *,
        accepts: StreamFilter = lambda _stream: True,
        meter: metrics.Meter | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._redis = redis
        self._handler = handler
        self._config = config
        self._accepts = accepts
        self._clock_ns = clock_ns
        self._dead_letter_stream = dead_letter_stream(config.group)
        self._streams: set[str] = set()
        # Streams whose own pending history (XREADGROUP ... <id>) is still being re-read, with the cursor.
        self._history: dict[KeyT, StreamIdT] = {}
        self._stopping = asyncio.Event()
        self._next_janitor_at = 0.0
        self._reported_losses: set[tuple[str, StreamId]] = set()
        self.caught_up_ns = 0
        """Wall time of the last read after which nothing added earlier was left unhandled (0: not yet)."""
        self.lag: dict[str, GroupState] = {}
        """The last sampled state of this group per stream (the gauges read it)."""
        self.dead_lettered = 0
        self.lost_entries = 0
        meter = meter or metrics.get_meter(__name__)
        self._lost_counter = meter.create_counter(
            "tickstrata.stream.lost_entries",
            unit="{entry}",
            description="Stream entries deleted before this group acknowledged them (each published as a gap)",
        )
        self._dead_counter = meter.create_counter(
            "tickstrata.consumer.dead_lettered", unit="{entry}", description="Entries given up on, by reason"
        )
        meter.create_observable_gauge(
            "tickstrata.stream.pending_entries",
            [self._observe(lambda state: state.pending)],
            unit="{entry}",
            description="Entries delivered to the group and not yet acknowledged",
        )
        meter.create_observable_gauge(
            "tickstrata.stream.behind_entries",
            [self._observe(lambda state: state.behind or 0)],
            unit="{entry}",
            description="Entries not yet delivered to the group",
        )
        meter.create_observable_gauge(
            "tickstrata.stream.oldest_pending_age_seconds",
            [self._observe(lambda state: oldest_pending_age_ms(state, self._clock_ns()) / 1000)],
            unit="s",
            description="Age of the oldest entry the group has not acknowledged",
        )

    def _observe(self, value: Callable[[GroupState], float]) -> Callable[[metrics.CallbackOptions], Iterable[Any]]:
        def callback(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            for stream, state in list(self.lag.items()):
                yield metrics.Observation(value(state), {"stream": stream, "group": self._config.group})

        return callback

    @property
    def config(self) -> GroupConfig:
        return self._config

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def stop_requested(self) -> bool:
        return self._stopping.is_set()

    async def sleep(self, secs: float) -> None:
        """Sleep, waking early on stop, so a stop request is not delayed by a backoff."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=secs)

    async def run(self) -> None:
        backoff = Backoff(RETRY_BACKOFF_MIN_SECS, RETRY_BACKOFF_MAX_SECS)
        while not self._stopping.is_set():
            try:
                await self._step()
                backoff.reset()
            except AbandonBatch:
                logger.warning("stopped while the sink was failing; the batch stays pending for the next consumer")
                return
            except ResponseError as error:
                if not is_redis_full(error):
                    raise
                # Redis at its memory budget refuses what could grow it (a group, a gap, a dead letter) but still
                # takes reads, acks and trims, which free memory: retry after a pause.
                logger.warning("Redis is full; retrying", extra={"error": str(error)})
                self._history = dict.fromkeys(self._streams, b"0")
                await self.sleep(backoff.next_delay_secs())
            except (RedisConnectionError, RedisTimeoutError) as error:
                # Redis away: nothing was acked, so whatever was read is pending for us. Re-read our own history
                # once it is back (a read reply lost in transit still counts as delivered to us).
                logger.warning("Redis unavailable; retrying", extra={"error": f"{type(error).__name__}: {error}"})
                self._history = dict.fromkeys(self._streams, b"0")
                await self.sleep(backoff.next_delay_secs())

    async def _step(self) -> None:
        if time.monotonic() >= self._next_janitor_at:
            await self.run_janitor()
            self._next_janitor_at = time.monotonic() + self._config.janitor_interval_secs
        read_at_ns = self._clock_ns()
        if not self._streams:
            self.caught_up_ns = read_at_ns  # nothing to read is nothing left unread
            await self.sleep(self._config.block_ms / 1000)
            return
        reading_history = bool(self._history)
        entries = await (self._read_history() if self._history else self._read_new())
        if entries:
            await self._process(entries)
        if not reading_history and len(entries) < self._config.batch_entries:
            # A short read of new entries returned everything added before it began, and the handler is done
            # with it: consumers that judge by time (the validator's watermark) know nothing older is unread.
            self.caught_up_ns = read_at_ns

    # ---- reading ------------------------------------------------------------------------------------------

    async def _read_new(self) -> list[tuple[str, bytes, Any, int]]:
        reply: Any = await self._redis.xreadgroup(
            self._config.group,
            self._config.consumer_name,
            dict.fromkeys(sorted(self._streams), ">"),
            count=self._config.batch_entries,
            block=self._config.block_ms,
        )
        return [(_text(stream), entry_id, fields, 1) for stream, entries in reply or [] for entry_id, fields in entries]

    async def _read_history(self) -> list[tuple[str, bytes, Any, int]]:
        reply: Any = await self._redis.xreadgroup(
            self._config.group, self._config.consumer_name, dict(self._history), count=self._config.batch_entries
        )
        read: list[tuple[str, bytes, Any, int]] = []
        for raw_stream, entries in reply or []:
            stream = _text(raw_stream)
            if not entries:
                del self._history[stream]  # own history exhausted: from now on only new entries
                continue
            self._history[stream] = entries[-1][0]
            counts = await self._delivery_counts(stream, entries[0][0], entries[-1][0], len(entries))
            read += [(stream, i, fields, counts.get(i, 1)) for i, fields in entries]
        return read

    async def _delivery_counts(self, stream: str, first: bytes, last: bytes, count: int) -> dict[bytes, int]:
        rows: Any = await self._redis.xpending_range(
            stream, self._config.group, min=first, max=last, count=count, consumername=self._config.consumer_name
        )
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    # ---- processing ---------------------------------------------------------------------------------------

    async def _process(self, entries: Sequence[tuple[str, bytes, Any, int]]) -> None:
        """Account for entries deleted while pending, give up on over-delivered ones, hand the rest over."""
        deleted: dict[str, list[bytes]] = {}
        live: list[Delivered] = []
        over_delivered: list[tuple[Delivered, str]] = []
        for stream, entry_id, fields, deliveries in entries:
            if fields is None:
                deleted.setdefault(stream, []).append(entry_id)
                continue
            item = Delivered(stream, entry_id, fields, deliveries)
            if deliveries > self._config.max_deliveries:
                over_delivered.append((item, f"max_deliveries: delivered {deliveries} times"))
            else:
                live.append(item)
        for stream, ids in deleted.items():
            await self._record_loss(stream, ids, cause="deleted while pending", ack=True)
        outcome = await self._handler(live) if live else BatchOutcome()
        by_stream: dict[str, list[bytes]] = {}
        for item in outcome.acked:
            by_stream.setdefault(item.stream, []).append(item.entry_id)
        for stream, ids in by_stream.items():
            await self._redis.xack(stream, self._config.group, *ids)
        # After the acks: a full Redis refuses the dead letters' XADD (they stay pending and come back), but the
        # stored entries are acknowledged and can be trimmed, which frees the memory.
        dead = over_delivered + outcome.dead
        if dead:
            await self._dead_letter(dead)

    async def _dead_letter(self, dead: Sequence[tuple[Delivered, str]]) -> None:
        # XADD and XACK in one MULTI: a crash between them would otherwise dead-letter the entry twice.
        async with self._redis.pipeline(transaction=True) as pipe:
            for item, reason in dead:
                fields = encode_dead_letter(
                    source_stream=item.stream,
                    entry_id=item.entry_id,
                    reason=reason,
                    delivery_count=item.deliveries,
                    fields=item.fields,
                )
                pipe.xadd(
                    self._dead_letter_stream,
                    dict(fields),  # type: ignore[arg-type]
                    maxlen=self._config.dead_letter_max_entries,
                    approximate=True,
                )
                pipe.xack(item.stream, self._config.group, item.entry_id)
                logger.error(
                    "entry dead-lettered", extra={"stream": item.stream, "id": item.entry_id, "reason": reason}
                )
            await pipe.execute()
        for _item, reason in dead:
            self._dead_counter.add(1, {"group": self._config.group, "reason": reason.partition(":")[0]})
        self.dead_lettered += len(dead)

    async def _record_loss(
        self, stream: str, ids: Sequence[bytes | str], *, cause: str, ack: bool, count: int | None = None
    ) -> None:
        """ERROR log, counter and gap event for entries deleted before this group acknowledged them."""
        parsed = sorted(parse_id(i) for i in ids)
        lost = count if count is not None else len(parsed)
        gap = loss_gap(stream, parsed[0], parsed[-1], cause=cause, now_ns=self._clock_ns())
        logger.error(
            "stream entries lost before they were acknowledged",
            extra={
                "stream": stream,
                "group": self._config.group,
                "entries": lost,
                "first_id": format_id(parsed[0]),
                "last_id": format_id(parsed[-1]),
                "cause": cause,
                "gap_window_ns": None if gap is None else [gap.start_ns, gap.end_ns],
            },
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            if gap is not None:
                pipe.xadd(GAP_STREAM, dict(encode_entry([gap])))  # type: ignore[arg-type]
            if ack:
                pipe.xack(stream, self._config.group, *ids)
            await pipe.execute()
        self._lost_counter.add(lost, {"stream": stream, "group": self._config.group, "cause": cause})
        self.lost_entries += lost

    # ---- janitor ------------------------------------------------------------------------------------------

    async def run_janitor(self) -> None:
        """One janitor pass (what `run` does every `janitor_interval_secs`): discover, claim, account, sample, trim."""
        await self._discover()
        for stream in sorted(self._streams):
            await self._claim_idle(stream)
            if self._stopping.is_set():
                return
            await self._account(stream)

    async def _discover(self) -> None:
        found: set[str] = set()
        async for raw in self._redis.scan_iter(match=self._config.stream_pattern, _type="stream"):
            name = _text(raw)
            if self._accepts(name):
                found.add(name)
        for stream in sorted(found - self._streams):
            await self._create_group(stream)
            self._streams.add(stream)
            self._history[stream] = b"0"  # a restarted consumer first re-reads what it had taken

    async def _create_group(self, stream: str) -> None:
        # A new group starts with what the stream holds now: entries trimmed before the group existed were never
        # owed to it, so they must not read as its losses (its entries-read counts them as read).
        try:
            info: Any = await self._redis.xinfo_stream(stream)
            groups: Any = await self._redis.xinfo_groups(stream)
        except ResponseError:  # no such stream (yet): the group starts at the beginning of an empty stream
            info, groups = {"first-entry": None, "entries-added": 0, "length": 0}, []
        if any(_text(group["name"]) == self._config.group for group in groups):
            return  # checked first: XGROUP CREATE is refused outright by a full Redis, even for an existing group
        first = info.get("first-entry")
        start = format_id(just_before(parse_id(first[0]))) if first else "$"
        try:
            await self._redis.xgroup_create(
                stream,
                self._config.group,
                id=start,
                mkstream=True,
                entries_read=max(0, int(info.get("entries-added") or 0) - int(info["length"])),
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _claim_idle(self, stream: str) -> None:
        cursor: bytes | str = b"0-0"
        deleted: list[bytes] = []
        while not self._stopping.is_set():
            reply: Any = await self._redis.xautoclaim(
                stream,
                self._config.group,
                self._config.consumer_name,
                min_idle_time=self._config.claim_idle_ms,
                start_id=cursor,
                count=self._config.batch_entries,
            )
            cursor, entries = reply[0], reply[1]
            # Redis 7 drops pending entries that were deleted from the PEL (any consumer's, idle or not) and lists them.
            deleted += reply[2] if len(reply) > 2 else []
            live = [(i, f) for i, f in entries if f is not None]
            if live:
                counts = await self._delivery_counts(stream, live[0][0], live[-1][0], len(live))
                logger.info("claimed idle entries", extra={"stream": stream, "entries": len(live)})
                await self._process([(stream, i, f, counts.get(i, 1)) for i, f in live])
            if parse_id(cursor) == (0, 0):
                break
        if deleted:
            await self._record_loss(stream, deleted, cause="deleted while pending", ack=False)

    async def _account(self, stream: str) -> None:
        """Report entries deleted before delivery, sample the lag, trim below what every group acknowledged."""
        info: Any = await self._redis.xinfo_stream(stream)
        first = info.get("first-entry")
        state = StreamState(
            length=int(info["length"]),
            first_entry=parse_id(first[0]) if first else None,
            last_generated=parse_id(info["last-generated-id"]),
            max_deleted=parse_id(info.get("max-deleted-entry-id") or b"0-0"),
            entries_added=int(info.get("entries-added") or 0),
        )
        groups: Any = await self._redis.xinfo_groups(stream)
        states: list[GroupState] = []
        for group in groups:
            pending = int(group["pending"])
            oldest: StreamId | None = None
            if pending > 0:
                summary: Any = await self._redis.xpending(stream, group["name"])
                oldest = parse_id(summary["min"]) if summary["min"] is not None else None
            lag = group.get("lag")
            group_state = GroupState(
                name=_text(group["name"]),
                last_delivered=parse_id(group["last-delivered-id"]),
                pending=pending,
                oldest_pending=oldest,
                behind=None if lag is None else int(lag),
            )
            states.append(group_state)
            if group_state.name == self._config.group:
                self.lag[stream] = group_state
                read = group.get("entries-read")
                loss = undelivered_loss(state, group_state, entries_read=None if read is None else int(read))
                if loss is not None:
                    await self._record_undelivered_loss(stream, loss, state)
        keep_from = trim_point(states)
        if keep_from is not None and keep_from > (0, 0):
            await self._redis.xtrim(stream, minid=format_id(keep_from), approximate=True)

    async def _record_undelivered_loss(self, stream: str, loss: UndeliveredLoss, state: StreamState) -> None:
        if (stream, loss.through) in self._reported_losses:
            return
        first_lost = (loss.after[0], loss.after[1] + 1)
        await self._record_loss(
            stream,
            [format_id(first_lost), format_id(loss.through)],
            cause="deleted before delivery",
            ack=False,
            count=loss.entries if loss.entries is not None else 1,  # at least one; Redis cannot say more
        )
        if loss.skippable:
            # Nothing survives in the range: move the cursor past it, which also keeps the report from repeating
            # after a restart. Where entries survive among the deleted ones (an XDEL), remember it in memory.
            # Every entry still in the stream comes after the deletions, so the group has read all the others.
            await self._redis.xgroup_setid(
                stream,
                self._config.group,
                format_id(loss.through),
                entries_read=max(0, state.entries_added - state.length),
            )
        else:
            self._reported_losses.add((stream, loss.through))
