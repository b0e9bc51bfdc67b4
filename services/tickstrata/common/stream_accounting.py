"""What a consumer group is owed and what it lost: stream ids, lag, trim points and loss windows. Pure.

The stream contract (docs/architecture.md, "Stream contract") promises that a market-data entry is deleted only
after every consumer group has acknowledged it. The consumer-group engine (`tickstrata.common.consumer_group`)
enforces the consumer side of that promise with the functions here, and makes every breach visible:

- an entry deleted while pending (a forced trim, an XDEL) comes back from XREADGROUP/XAUTOCLAIM without fields;
- entries deleted before they were ever delivered show in Redis 7's counters: the stream starts after the group's
  ``last-delivered-id`` while ``entries-added`` exceeds what the group read plus what is left, or (an XDEL) the
  stream's ``max-deleted-entry-id`` lies above that cursor.

Either way the loss becomes a `Gap` of kind ``stream_loss``. A stream id is the Redis clock's millisecond at XADD,
and a collector publishes an event after it received it, so the lost events' times are at most the last lost id's
millisecond (plus clock skew between the hosts). They can be older than the first lost id by as long as the
collector held them (its queue, a Redis outage): the window starts ``lookback_ns`` before the first lost id. The
window is half-open like every gap's: it ends 1 ns after the last lost id's millisecond plus the skew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tickstrata.common.events import Gap, GapKind
from tickstrata.common.streams import parse_market_data_stream

StreamId = tuple[int, int]
"""A stream entry id as (milliseconds, sequence): ordered like Redis orders them."""

ZERO_ID: Final[StreamId] = (0, 0)
NS_PER_MS: Final = 1_000_000
DEFAULT_LOSS_LOOKBACK_NS: Final = 60 * 1_000_000_000
"""How long before a lost entry's id its events may have happened: a collector's queue plus a Redis outage."""
DEFAULT_LOSS_SKEW_NS: Final = 5 * 1_000_000_000
"""Clock skew allowed between the collector's host and Redis's, after the last lost id."""


def parse_id(entry_id: bytes | str) -> StreamId:
    """``b"1717000000000-3"`` → ``(1717000000000, 3)``; a bare millisecond reads as sequence 0."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(entry_id: StreamId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


@dataclass(frozen=True, slots=True)
class GroupState:
    """One consumer group on one stream, as XINFO GROUPS and XPENDING report it."""

    name: str
    last_delivered: StreamId
    pending: int
    oldest_pending: StreamId | None
    """The smallest id still pending, None when nothing is."""
    behind: int | None
    """Entries not yet delivered to the group (XINFO ``lag``); None when Redis cannot tell (after deletions)."""


@dataclass(frozen=True, slots=True)
class StreamState:
    """One stream as XINFO STREAM reports it."""

    length: int
    first_entry: StreamId | None
    last_generated: StreamId
    max_deleted: StreamId
    """Raised by XDEL only: Redis 7.0 trims (MAXLEN, MINID) delete from the head without touching it."""
    entries_added: int


def trim_point(groups: list[GroupState]) -> StreamId | None:
    """The MINID below which every group is done: each group's oldest pending entry, else its last delivered.

    None when the stream has no group yet (nothing may be trimmed then: a group created later starts at 0).
    """
    needed = [min(g.last_delivered, g.oldest_pending) if g.oldest_pending else g.last_delivered for g in groups]
    return min(needed) if needed else None


def oldest_pending_age_ms(group: GroupState, now_ns: int) -> int:
    """How long the oldest unacknowledged entry has waited (by its id's clock); 0 when none is pending."""
    if group.oldest_pending is None or group.pending == 0:
        return 0
    return max(0, now_ns // NS_PER_MS - group.oldest_pending[0])


@dataclass(frozen=True, slots=True)
class UndeliveredLoss:
    """Entries deleted before the group read them: ids in ``(after, through]``."""

    after: StreamId
    through: StreamId
    skippable: bool
    """True when nothing in the range survives (a head trim): the group may move its cursor to ``through``."""
    entries: int | None
    """How many were lost, when Redis's counters allow knowing it."""


def just_before(entry_id: StreamId) -> StreamId:
    """The greatest id below ``entry_id``: a group cursor there has read nothing from ``entry_id`` on."""
    ms, seq = entry_id
    return (ms, seq - 1) if seq > 0 else (ms - 1, 2**64 - 1)


def undelivered_loss(stream: StreamState, group: GroupState, *, entries_read: int | None) -> UndeliveredLoss | None:
    """Entries the group never saw because they were deleted first, or None.

    Our own trims delete only below every group's last delivered id, so they never show here; a count-based trim
    (``MAXLEN``), an ``XTRIM`` by hand or an ``XDEL`` of an undelivered entry do. A trim deletes from the head: when
    the stream now starts after the group's cursor, everything the group has not read and the stream no longer
    holds is gone, ``entries_added - entries_read - length`` entries. An ``XDEL`` past the cursor shows only as the
    stream's ``max-deleted-entry-id``, without a count.
    """
    past_cursor = stream.first_entry is None or stream.first_entry > group.last_delivered
    if entries_read == 0 and group.last_delivered != ZERO_ID:
        entries_read = None  # Redis 7.0 loses the counter over an AOF restart: a cursor that moved has read some
    if past_cursor and entries_read is None:
        if stream.first_entry is None and stream.last_generated > group.last_delivered:
            # Emptied past the cursor: entries were added after it and none survives (at least one lost).
            return UndeliveredLoss(group.last_delivered, stream.last_generated, skippable=True, entries=None)
        return None
    if past_cursor and entries_read is not None:
        lost = stream.entries_added - entries_read - stream.length
        if lost > 0:
            through = stream.last_generated if stream.first_entry is None else just_before(stream.first_entry)
            return UndeliveredLoss(group.last_delivered, through, skippable=True, entries=lost)
        return None
    if stream.max_deleted > group.last_delivered:
        return UndeliveredLoss(group.last_delivered, stream.max_deleted, skippable=False, entries=None)
    return None


def loss_gap(
    stream: str,
    first_lost: StreamId,
    last_lost: StreamId,
    *,
    cause: str,
    now_ns: int,
    lookback_ns: int = DEFAULT_LOSS_LOOKBACK_NS,
    skew_ns: int = DEFAULT_LOSS_SKEW_NS,
) -> Gap | None:
    """The gap event for entries lost from a market-data stream; None for a stream that is not one (no venue)."""
    try:
        exchange, data_type = parse_market_data_stream(stream)
    except ValueError:
        return None
    start_ns = max(0, first_lost[0] * NS_PER_MS - lookback_ns)
    # Half-open like every gap window: the last lost id's millisecond (plus skew) is inside.
    end_ns = max(start_ns, last_lost[0] * NS_PER_MS + skew_ns) + 1
    return Gap(
        exchange=exchange,
        data_type=data_type,
        symbol=None,
        kind=GapKind.STREAM_LOSS,
        start_ns=start_ns,
        end_ns=end_ns,
        cause=f"{cause} (stream {stream}, ids {format_id(first_lost)}..{format_id(last_lost)})",
        ts_recv_ns=now_ns,
    )
