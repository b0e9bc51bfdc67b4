"""The live view of `tickstrata up`: what flows per feed, how fresh it is, what is stored and what is missing.

`sample()` is the only I/O: it reads Redis (stream tails, new entries since the last sample, each consumer
group's pending and undelivered entries and its oldest pending id, gap and quarantine streams, memory) and QuestDB
(`count()` per table over `/exec`). `render()` is a pure function from two samples to lines of text, so what the
user sees is unit-tested without servers. On a terminal the view is redrawn in place; elsewhere (CI, a log file)
it is printed as a block every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from tickstrata.common.completeness import COMPLETENESS_KEY_PREFIX, BucketCounts, completeness_percent, sum_symbols
from tickstrata.common.events import Gap, GapKind
from tickstrata.common.stream_accounting import parse_id
from tickstrata.common.streams import (
    GAP_STREAM,
    QUARANTINE_STREAM,
    CodecError,
    decode_entry,
    parse_market_data_stream,
)
from tickstrata.localstack.questdb import QuestDBServer, QuestDBSqlError

STORED_TABLES: Final = ("trades", "candles", "quotes", "books", "funding")
MIN_RATE_BASE_NS: Final = 1_000_000_000
STREAM_READ_COUNT: Final = 10_000
"""Entries read per stream per sample to count events; more than that means the view undercounts (says so)."""


@dataclass(frozen=True)
class GroupLag:
    """One consumer group on one stream: what it holds and what it has not seen yet (XINFO GROUPS, XPENDING)."""

    group: str
    pending: int
    """Entries delivered to the group and not yet acknowledged."""
    behind: int | None
    """Entries not yet delivered to the group; None when Redis cannot tell (entries were deleted)."""
    oldest_pending_ms: int | None
    """The millisecond of the oldest pending entry's id (Redis's clock at XADD); None when nothing is pending."""


@dataclass(frozen=True)
class FeedSample:
    """One `md:<exchange>:<type>` stream at one moment."""

    exchange: str
    data_type: str
    events_total: int
    """Events counted in entries read so far by this view (since it started)."""
    newest_event_ns: int | None
    groups: tuple[GroupLag, ...] = ()
    """Every consumer group on the stream, by name."""


@dataclass(frozen=True)
class RedisMemory:
    used_bytes: int
    max_bytes: int
    """`maxmemory`; 0 means unbounded (against the stream contract: a full host, not a refused write)."""


@dataclass(frozen=True)
class Sample:
    at_ns: int
    feeds: tuple[FeedSample, ...]
    gaps_by_exchange: Mapping[str, int]
    quarantined: int
    stored_rows: Mapping[str, int | None]
    """Rows per QuestDB table; None when QuestDB did not answer."""
    stream_losses: Mapping[tuple[str, str], int] = field(default_factory=dict)
    """Gap events of kind `stream_loss` per (exchange, data type) on the gap stream."""
    redis_memory: RedisMemory | None = None
    """None when Redis did not answer INFO."""
    completeness: Mapping[str, BucketCounts] = field(default_factory=dict)
    """The validator's bucket counts per exchange over its rolling window (absent before it has counted any)."""


def _rate(current: FeedSample, previous: FeedSample | None, secs: float) -> float | None:
    if previous is None or secs <= 0:
        return None
    return max(0, current.events_total - previous.events_total) / secs


def _age(newest_ns: int | None, now_ns: int) -> str:
    if newest_ns is None:
        return "—"
    age_ms = max(0.0, (now_ns - newest_ns) / 1e6)
    if age_ms < 10_000:
        return f"{age_ms:,.0f} ms"
    if age_ms < 600_000:
        return f"{age_ms / 1000:,.0f} s"
    return f"{age_ms / 60_000:,.0f} min"


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _bytes(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:,.1f} {unit}"
    return f"{value} B"


def _memory_line(memory: RedisMemory | None) -> str:
    if memory is None:
        return "redis memory: ?"
    if memory.max_bytes <= 0:
        return f"redis memory: {_bytes(memory.used_bytes)}, no maxmemory (unbounded: see docs/architecture.md)"
    percent = 100 * memory.used_bytes / memory.max_bytes
    return f"redis memory: {_bytes(memory.used_bytes)} of {_bytes(memory.max_bytes)} maxmemory ({percent:.0f}%)"


def _group_cells(group: GroupLag | None, now_ns: int) -> list[str]:
    if group is None:
        return ["—", "—", "—", "no group"]
    oldest_ns = None if group.oldest_pending_ms is None or not group.pending else group.oldest_pending_ms * 1_000_000
    return [f"{group.pending:,}", _count(group.behind), _age(oldest_ns, now_ns), group.group]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: frozenset[int]) -> list[str]:
    widths = [
        max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i]) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


FEED_HEADERS: Final = ("exchange", "feed", "events/s", "freshness", "losses", "pending", "behind", "oldest", "group")
"""`losses` counts the stream's `stream_loss` gap events; `pending`, `behind` and `oldest` (the age of the oldest
unacknowledged entry) belong to the consumer group named last on the line."""


def render(current: Sample, previous: Sample | None) -> list[str]:
    """The view's lines: a feed table (events/s, freshness, the stream's losses, then per consumer group its
    pending entries, entries not yet delivered and the age of its oldest pending entry), stored rows, gaps,
    quarantines and Redis memory. A stream read by several groups takes one line per group.
    """
    secs = (current.at_ns - previous.at_ns) / 1e9 if previous is not None else 0.0
    before = {(f.exchange, f.data_type): f for f in previous.feeds} if previous is not None else {}
    rows = []
    for feed in sorted(current.feeds, key=lambda f: (f.exchange, f.data_type)):
        rate = _rate(feed, before.get((feed.exchange, feed.data_type)), secs)
        lost = current.stream_losses.get((feed.exchange, feed.data_type), 0)
        by_name = sorted(feed.groups, key=lambda g: g.group)
        groups: list[GroupLag | None] = [*by_name] if by_name else [None]
        rows.append(
            [
                feed.exchange,
                feed.data_type,
                "—" if rate is None else f"{rate:,.0f}",
                _age(feed.newest_event_ns, current.at_ns),
                f"{lost:,}",
                *_group_cells(groups[0], current.at_ns),
            ]
        )
        # Further groups of the same stream continue below it; the stream's own cells are not repeated.
        rows.extend(["", "", "", "", "", *_group_cells(group, current.at_ns)] for group in groups[1:])
    lines = _table(FEED_HEADERS, rows, left=frozenset({0, 1, 8})) if rows else ["no feeds yet"]
    stored = ", ".join(
        f"{table} {'?' if count is None else f'{count:,}'}" for table, count in current.stored_rows.items()
    )
    gaps = ", ".join(f"{exchange} {count}" for exchange, count in sorted(current.gaps_by_exchange.items())) or "none"
    lines += [
        f"stored in QuestDB: {stored}",
        f"gaps: {gaps}; quarantined: {current.quarantined:,}",
        _completeness_line(current.completeness),
        _memory_line(current.redis_memory),
    ]
    return lines


def _completeness_line(by_exchange: Mapping[str, BucketCounts]) -> str:
    by_exchange = {exchange: counts for exchange, counts in by_exchange.items() if counts.total}
    if not by_exchange:
        return "completeness: not counted yet (the validator judges each minute once it has ended)"
    parts = [
        f"{exchange} {completeness_percent(c)}% ({c.present:,} present, {c.backfilled:,} backfilled, "
        f"{c.exchange_empty:,} empty, {c.missing:,} missing, {c.pending:,} pending)"
        for exchange, c in sorted(by_exchange.items())
    ]
    return "completeness: " + "; ".join(parts)


@dataclass
class Sampler:
    """Reads what the view needs; keeps per-stream cursors so each event is counted once."""

    client: redis.Redis
    questdb: QuestDBServer
    _cursors: dict[str, bytes] = field(default_factory=dict)
    _events: dict[str, int] = field(default_factory=dict)
    _newest: dict[str, int] = field(default_factory=dict)
    _gap_cursor: bytes = b"0-0"
    _gaps: dict[str, int] = field(default_factory=dict)
    _losses: dict[tuple[str, str], int] = field(default_factory=dict)

    def _count_new(self, stream: str) -> None:
        cursor = self._cursors.get(stream)
        if cursor is None:
            # Start at the tail: the view counts rates from now, not the history of a resumed run.
            tail: Any = self.client.xrevrange(stream, count=1)
            self._cursors[stream] = tail[0][0] if tail else b"0-0"
            self._events[stream] = 0
            if tail:
                self._note_newest(stream, tail[0][1])
            return
        entries: Any = self.client.xrange(stream, min=b"(" + cursor, count=STREAM_READ_COUNT)
        for entry_id, fields in entries:
            self._cursors[stream] = entry_id
            try:
                self._events[stream] += len(decode_entry(fields).events)
            except CodecError:
                continue
        if entries:
            self._note_newest(stream, entries[-1][1])

    def _note_newest(self, stream: str, fields: Any) -> None:
        try:
            events = decode_entry(fields).events
        except CodecError:
            return
        stamps = [getattr(event, "ts_event_ns", 0) or getattr(event, "open_time_ns", 0) for event in events]
        if stamps:
            self._newest[stream] = max(self._newest.get(stream, 0), *stamps)

    def _group_lags(self, stream: str) -> tuple[GroupLag, ...]:
        try:
            groups: Any = self.client.xinfo_groups(stream)
        except redis.ResponseError:
            return ()
        lags = []
        for group in groups:
            name = group["name"].decode() if isinstance(group["name"], bytes) else str(group["name"])
            pending = int(group["pending"])
            oldest_ms = None
            if pending:
                summary: Any = self.client.xpending(stream, name)
                oldest = summary.get("min")
                if oldest:
                    oldest_ms = parse_id(oldest)[0]
            # `lag` is nil when Redis cannot count it (entries deleted inside the group's range), absent before 7.0.
            lag = group.get("lag")
            lags.append(GroupLag(name, pending, None if lag is None else int(lag), oldest_ms))
        return tuple(lags)

    def _memory(self) -> RedisMemory | None:
        try:
            info: Any = self.client.info("memory")
        except redis.RedisError:
            return None
        return RedisMemory(used_bytes=int(info["used_memory"]), max_bytes=int(info.get("maxmemory", 0)))

    def _gap_counts(self) -> dict[str, int]:
        entries: Any = self.client.xrange(GAP_STREAM, min=b"(" + self._gap_cursor, count=STREAM_READ_COUNT)
        for entry_id, fields in entries:
            self._gap_cursor = entry_id
            try:
                events = decode_entry(fields).events
            except CodecError:
                continue
            for event in events:
                if isinstance(event, Gap):
                    self._gaps[event.exchange] = self._gaps.get(event.exchange, 0) + 1
                    if event.kind is GapKind.STREAM_LOSS:
                        feed = (event.exchange, event.data_type.value)
                        self._losses[feed] = self._losses.get(feed, 0) + 1
        return dict(self._gaps)

    def _completeness(self) -> dict[str, BucketCounts]:
        found: dict[str, BucketCounts] = {}
        for raw in self.client.scan_iter(match=f"{COMPLETENESS_KEY_PREFIX}*", _type="hash"):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            fields: Any = self.client.hgetall(key)
            symbols = [k for k in fields if not (k.decode() if isinstance(k, bytes) else k).startswith("_")]
            try:
                counts = sum_symbols(fields, [s.decode() if isinstance(s, bytes) else s for s in symbols])
            except ValueError:
                continue  # one writer, so a bad value is a bug; the view must not die of it
            if counts is not None:
                found[key.removeprefix(COMPLETENESS_KEY_PREFIX)] = counts
        return found

    def stored_rows(self) -> dict[str, int | None]:
        counts: dict[str, int | None] = {}
        for table in STORED_TABLES:
            try:
                payload = self.questdb.exec_sql(f"SELECT count() FROM {table}", timeout_secs=2.0)  # noqa: S608 - constant names
                counts[table] = int(payload["dataset"][0][0])
            except (QuestDBSqlError, OSError, ValueError, KeyError, IndexError):
                counts[table] = None  # not created yet, or QuestDB busy: the view says "?"
        return counts

    def sample(self) -> Sample:
        feeds = []
        for raw in sorted(self.client.scan_iter(match="md:*", _type="stream")):
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            try:
                parsed = parse_market_data_stream(name)
            except ValueError:
                continue
            self._count_new(name)
            feeds.append(
                FeedSample(
                    exchange=parsed.exchange,
                    data_type=parsed.data_type.value,
                    events_total=self._events.get(name, 0),
                    newest_event_ns=self._newest.get(name),
                    groups=self._group_lags(name),
                )
            )
        gaps = self._gap_counts()
        return Sample(
            at_ns=time.time_ns(),
            feeds=tuple(feeds),
            gaps_by_exchange=gaps,
            quarantined=int(self.client.xlen(QUARANTINE_STREAM)),
            stored_rows=self.stored_rows(),
            stream_losses=dict(self._losses),
            redis_memory=self._memory(),
            completeness=self._completeness(),
        )


class LiveView:
    """Prints samples: redrawn in place on a terminal, as timestamped blocks otherwise."""

    def __init__(self, sampler: Sampler, *, tty: bool, write: Any = print) -> None:
        self._sampler = sampler
        self._tty = tty
        self._write = write
        self._previous: Sample | None = None
        self._base: Sample | None = None
        self._drawn_lines = 0

    def refresh(self) -> None:
        self.draw()

    def draw(self) -> list[str]:
        """Sample, print, and return the lines printed."""
        current = self._sampler.sample()
        # A redraw right after the last one (the final view at stop) keeps the last one's base: rates over ~0 s
        # would mislead.
        last = self._previous
        if last is not None and current.at_ns - last.at_ns < MIN_RATE_BASE_NS:
            base = self._base
        else:
            base = last
            self._previous = current
        self._base = base
        lines = render(current, base)
        if self._tty:
            # Move up over the previous drawing and clear to the end of the screen before drawing again.
            prefix = f"\x1b[{self._drawn_lines}F\x1b[J" if self._drawn_lines else ""
            self._write(prefix + "\n".join(lines), flush=True)
            self._drawn_lines = len(lines)
        else:
            stamp = time.strftime("%H:%M:%S")
            self._write("\n".join(f"[up {stamp}] {line}" for line in lines), flush=True)
        return lines

    def draw_final(self) -> None:
        """The view at stop, unless the last one is less than a second old (it would print the same block)."""
        if self._previous is None or time.time_ns() - self._previous.at_ns >= MIN_RATE_BASE_NS:
            self.forget_drawing()
            self.draw()

    def forget_drawing(self) -> None:
        """Something else printed below the view: draw the next one fresh instead of over those lines."""
        self._drawn_lines = 0
