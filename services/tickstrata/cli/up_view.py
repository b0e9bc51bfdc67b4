"""The live view of `tickstrata up`: what flows per feed, how fresh it is, what is stored and what is missing.

`sample()` is the only I/O: it reads Redis (stream tails, new entries since the last sample, consumer-group lag,
gap and quarantine streams) and QuestDB (`count()` per table over `/exec`). `render()` is a pure function from
two samples to lines of text, so what the user sees is unit-tested without servers. On a terminal the view is
redrawn in place; elsewhere (CI, a log file) it is printed as a block every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from tickstrata.common.events import Gap
from tickstrata.common.streams import (
    GAP_STREAM,
    QUARANTINE_STREAM,
    WRITER_GROUP,
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
class FeedSample:
    """One `md:<exchange>:<type>` stream at one moment."""

    exchange: str
    data_type: str
    events_total: int
    """Events counted in entries read so far by this view (since it started)."""
    newest_event_ns: int | None
    writer_lag_entries: int | None
    """Entries not yet delivered to the writer group, plus entries delivered but not yet acknowledged."""


@dataclass(frozen=True)
class Sample:
    at_ns: int
    feeds: tuple[FeedSample, ...]
    gaps_by_exchange: Mapping[str, int]
    quarantined: int
    stored_rows: Mapping[str, int | None]
    """Rows per QuestDB table; None when QuestDB did not answer."""


def _rate(current: FeedSample, previous: FeedSample | None, secs: float) -> float | None:
    if previous is None or secs <= 0:
        return None
    return max(0, current.events_total - previous.events_total) / secs


def _age(newest_ns: int | None, now_ns: int) -> str:
    if newest_ns is None:
        return "—"
    age_ms = max(0.0, (now_ns - newest_ns) / 1e6)
    return f"{age_ms:,.0f} ms" if age_ms < 10_000 else f"{age_ms / 1000:,.0f} s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [
        max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i]) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i in {0, 1} else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(headers), *(line(row) for row in rows)]


def render(current: Sample, previous: Sample | None) -> list[str]:
    """The view's lines: a feed table (events/s, freshness, writer lag), stored rows, gaps and quarantines."""
    secs = (current.at_ns - previous.at_ns) / 1e9 if previous is not None else 0.0
    before = {(f.exchange, f.data_type): f for f in previous.feeds} if previous is not None else {}
    rows = []
    for feed in sorted(current.feeds, key=lambda f: (f.exchange, f.data_type)):
        rate = _rate(feed, before.get((feed.exchange, feed.data_type)), secs)
        rows.append(
            [
                feed.exchange,
                feed.data_type,
                "—" if rate is None else f"{rate:,.0f}",
                _age(feed.newest_event_ns, current.at_ns),
                "—" if feed.writer_lag_entries is None else f"{feed.writer_lag_entries:,}",
            ]
        )
    lines = _table(["exchange", "feed", "events/s", "freshness", "writer lag"], rows) if rows else ["no feeds yet"]
    stored = ", ".join(
        f"{table} {'?' if count is None else f'{count:,}'}" for table, count in current.stored_rows.items()
    )
    gaps = ", ".join(f"{exchange} {count}" for exchange, count in sorted(current.gaps_by_exchange.items())) or "none"
    lines += [f"stored in QuestDB: {stored}", f"gaps: {gaps}; quarantined: {current.quarantined:,}"]
    return lines


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

    def _writer_lag(self, stream: str) -> int | None:
        try:
            groups: Any = self.client.xinfo_groups(stream)
        except redis.ResponseError:
            return None
        for group in groups:
            name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
            if name == WRITER_GROUP:
                lag = group.get("lag")
                return int(lag or 0) + int(group["pending"])
        return None

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
        return dict(self._gaps)

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
                    writer_lag_entries=self._writer_lag(name),
                )
            )
        return Sample(
            at_ns=time.time_ns(),
            feeds=tuple(feeds),
            gaps_by_exchange=self._gap_counts(),
            quarantined=int(self.client.xlen(QUARANTINE_STREAM)),
            stored_rows=self.stored_rows(),
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
