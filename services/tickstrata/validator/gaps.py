"""The gap list: every loss of continuity a collector reported or a scan found, and where its repair stands. Pure.

A gap is recorded once under a content-derived id (a re-delivered `qa:gaps` entry or a restarted validator finds the
same id), then moves OPEN → BACKFILLING (a backfill was asked for its window) → RESOLVED (every minute it touches is
present, backfilled or proven empty) or UNRECOVERABLE (the venue cannot supply it). Windows are half-open.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from tickstrata.common.events import DataType, Gap

SCAN_KIND = "scan"
"""The kind of a gap the validator found itself (quality.v1 GAP_KIND_SCAN); collector kinds are GapKind values."""


class GapState(enum.StrEnum):
    OPEN = "open"
    BACKFILLING = "backfilling"
    RESOLVED = "resolved"
    UNRECOVERABLE = "unrecoverable"


CLOSED_STATES = frozenset({GapState.RESOLVED, GapState.UNRECOVERABLE})


@dataclass(frozen=True, slots=True)
class GapRecord:
    gap_id: str
    exchange: str
    symbol: str | None
    """None: the whole feed (every symbol of the exchange)."""
    data_type: DataType
    kind: str
    start_ns: int
    end_ns: int
    cause: str
    state: GapState
    backfill_job_id: str
    ts_detected_ns: int
    ts_closed_ns: int = 0

    @property
    def is_open(self) -> bool:
        return self.state not in CLOSED_STATES

    def covers(self, symbol: str) -> bool:
        return self.symbol is None or self.symbol == symbol


def gap_id(exchange: str, symbol: str | None, data_type: str, kind: str, *, start_ns: int, end_ns: int) -> str:
    """A stable id from what the gap is (not when it was seen): the same report twice is one gap."""
    text = f"{exchange}\x1f{symbol or '*'}\x1f{data_type}\x1f{kind}\x1f{start_ns}\x1f{end_ns}"
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def record_of(gap: Gap, ts_detected_ns: int) -> GapRecord:
    return GapRecord(
        gap_id=gap_id(gap.exchange, gap.symbol, gap.data_type, gap.kind, start_ns=gap.start_ns, end_ns=gap.end_ns),
        exchange=gap.exchange,
        symbol=gap.symbol,
        data_type=gap.data_type,
        kind=str(gap.kind),
        start_ns=gap.start_ns,
        end_ns=gap.end_ns,
        cause=gap.cause,
        state=GapState.OPEN,
        backfill_job_id="",
        ts_detected_ns=ts_detected_ns,
    )


def scan_record(
    exchange: str, symbol: str, data_type: DataType, *, start_ns: int, end_ns: int, ts_detected_ns: int
) -> GapRecord:
    """A hole nobody reported: minutes behind the watermark with no data (a collector killed with open windows,
    a Redis crash, a collector that was never running)."""
    return GapRecord(
        gap_id=gap_id(exchange, symbol, data_type, SCAN_KIND, start_ns=start_ns, end_ns=end_ns),
        exchange=exchange,
        symbol=symbol,
        data_type=data_type,
        kind=SCAN_KIND,
        start_ns=start_ns,
        end_ns=end_ns,
        cause="data missing from these minutes (none, or trades without their candle) and no loss reported",
        state=GapState.OPEN,
        backfill_job_id="",
        ts_detected_ns=ts_detected_ns,
    )


class GapBook:
    """Gaps by id; `changed` collects the ids to persist."""

    def __init__(self) -> None:
        self._gaps: dict[str, GapRecord] = {}
        self.changed: set[str] = set()

    def add(self, record: GapRecord) -> bool:
        """Record a gap; False when it is already known (its state is kept)."""
        if record.gap_id in self._gaps:
            return False
        self._gaps[record.gap_id] = record
        self.changed.add(record.gap_id)
        return True

    def restore(self, record: GapRecord) -> None:
        """A gap read back from the store at start-up (not changed: it is persisted already)."""
        self._gaps[record.gap_id] = record

    def get(self, gap_id_: str) -> GapRecord | None:
        return self._gaps.get(gap_id_)

    def update(self, gap_id_: str, *, state: GapState, now_ns: int, backfill_job_id: str | None = None) -> None:
        old = self._gaps[gap_id_]
        if old.state is state and (backfill_job_id is None or backfill_job_id == old.backfill_job_id):
            return
        closed_ns = now_ns if state in CLOSED_STATES else 0
        job = old.backfill_job_id if backfill_job_id is None else backfill_job_id
        self._gaps[gap_id_] = replace(old, state=state, backfill_job_id=job, ts_closed_ns=closed_ns)
        self.changed.add(gap_id_)

    def open_gaps(self, exchange: str | None = None) -> Iterator[GapRecord]:
        for record in self._gaps.values():
            if record.is_open and (exchange is None or record.exchange == exchange):
                yield record

    def feed_wide(self, exchange: str) -> Iterator[GapRecord]:
        """Gaps of every symbol of ``exchange`` (a dropped connection), open or closed."""
        for record in self._gaps.values():
            if record.symbol is None and record.exchange == exchange:
                yield record

    def matching(
        self, *, exchange: str, symbol: str, start_ns: int, end_ns: int, states: Iterable[GapState] = ()
    ) -> list[GapRecord]:
        """Gaps overlapping ``[start_ns, end_ns)``, ordered by (start, id)."""
        wanted = set(states)
        found = [
            r
            for r in self._gaps.values()
            if (not exchange or r.exchange == exchange)
            and (not symbol or r.covers(symbol))
            and r.start_ns < end_ns
            and r.end_ns > start_ns
            and (not wanted or r.state in wanted)
        ]
        return sorted(found, key=lambda r: (r.start_ns, r.gap_id))

    def take_changed(self) -> list[GapRecord]:
        rows = [self._gaps[i] for i in sorted(self.changed)]
        self.changed.clear()
        return rows

    def forget_closed_before(self, end_ns: int) -> int:
        """Drop closed gaps that ended before ``end_ns`` (persisted; the store answers for them)."""
        stale = [i for i, r in self._gaps.items() if not r.is_open and r.end_ns < end_ns and i not in self.changed]
        for i in stale:
            del self._gaps[i]
        return len(stale)

    def __len__(self) -> int:
        return len(self._gaps)
