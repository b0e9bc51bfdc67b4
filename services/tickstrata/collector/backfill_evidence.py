"""Per-minute evidence of a backfill: what the venue's REST history said about each whole minute. Pure.

The validator must prove a minute `exchange_empty`, not infer it from missing rows, so a backfill job reports, for
every whole minute `[m, m + 60 s)` inside its window, what the venue answered:

- ``DATA``: the venue returned data in the minute (trades, or a candle with at least one trade);
- ``EMPTY``: the venue answered for the minute and nothing traded (no trade in a fully fetched minute, or a candle
  with zero trades);
- ``NO_RECORD`` (candles only): the venue returned no candle at all for a minute inside the range it answered (it
  was down, or the instrument was not listed yet).

A minute counts as answered only when one fetch covered all of it and it had ended at the venue before the fetch
(``ended_by_ns``: the fetch's time less a margin for the clocks): a minute in progress may still get trades. A
partial minute at either edge of the window gets no evidence, so callers align windows to minutes.

Consecutive minutes with the same finding merge into one ``EvidenceRun``: a 31-day window of one finding is one
run, not 44,640. The job appends runs fetch by fetch, in time order (``append_runs``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

NS_PER_SEC: Final = 1_000_000_000
MINUTE_NS: Final = 60 * NS_PER_SEC


class BucketFinding(enum.IntEnum):
    """What the venue answered for one minute; the values are `backfill.v1.BucketFinding`'s."""

    DATA = 1
    EMPTY = 2
    NO_RECORD = 3


@dataclass(frozen=True, slots=True)
class EvidenceRun:
    """Consecutive whole minutes ``[start_ns, end_ns)`` with one finding; ``rows`` the venue returned in them."""

    start_ns: int
    end_ns: int
    finding: BucketFinding
    rows: int

    def __post_init__(self) -> None:
        if self.start_ns % MINUTE_NS or self.end_ns % MINUTE_NS or self.end_ns <= self.start_ns or self.rows < 0:
            raise ValueError(f"not a run of whole minutes: {self}")


def whole_minutes(start_ns: int, end_ns: int) -> range:
    """The minutes (index ``m`` is ``[m * MINUTE_NS, (m + 1) * MINUTE_NS)``) lying wholly inside ``[start_ns,
    end_ns)``; empty if there are none."""
    first = -(-start_ns // MINUTE_NS)
    return range(first, max(first, end_ns // MINUTE_NS))


def answered_minutes(
    window_start_ns: int, window_end_ns: int, *, fetched_start_ns: int, fetched_end_ns: int, ended_by_ns: int
) -> range:
    """Whole minutes of the window that one fetch of ``[fetched_start_ns, fetched_end_ns)`` answered completely:
    inside the window and the fetch, and ended by ``ended_by_ns``."""
    return whole_minutes(max(window_start_ns, fetched_start_ns), min(window_end_ns, fetched_end_ns, ended_by_ns))


def count_by_minute(times_ns: Iterable[int]) -> Counter[int]:
    """How many of ``times_ns`` fall in each minute index."""
    return Counter(time_ns // MINUTE_NS for time_ns in times_ns)


def trade_runs(minutes: range, trades_by_minute: Mapping[int, int]) -> list[EvidenceRun]:
    """Runs for fully fetched ``minutes`` given the trades the venue returned per minute index."""

    def finding(minute: int) -> tuple[BucketFinding, int]:
        count = trades_by_minute.get(minute, 0)
        return (BucketFinding.DATA, count) if count else (BucketFinding.EMPTY, 0)

    return _runs(minutes, finding)


def candle_runs(minutes: range, candles: Iterable[tuple[int, bool]]) -> list[EvidenceRun]:
    """Runs for answered ``minutes`` given the venue's 1-minute candles as (open time ns, anything traded)."""
    traded_by_minute = {open_ns // MINUTE_NS: traded for open_ns, traded in candles if open_ns % MINUTE_NS == 0}

    def finding(minute: int) -> tuple[BucketFinding, int]:
        traded = traded_by_minute.get(minute)
        if traded is None:
            return BucketFinding.NO_RECORD, 0
        return (BucketFinding.DATA, 1) if traded else (BucketFinding.EMPTY, 1)

    return _runs(minutes, finding)


def append_runs(runs: list[EvidenceRun], new: Iterable[EvidenceRun]) -> None:
    """Append ``new`` (in time order, after every run in ``runs``), merging a run that continues the last one with
    the same finding. Raise ``ValueError`` for a run that overlaps or precedes what ``runs`` holds."""
    for run in new:
        if runs:
            last = runs[-1]
            if run.start_ns < last.end_ns:
                raise ValueError(f"evidence run {run} overlaps or precedes {last}")
            if run.start_ns == last.end_ns and run.finding is last.finding:
                runs[-1] = EvidenceRun(last.start_ns, run.end_ns, last.finding, last.rows + run.rows)
                continue
        runs.append(run)


def _runs(minutes: range, finding_of: Callable[[int], tuple[BucketFinding, int]]) -> list[EvidenceRun]:
    runs: list[EvidenceRun] = []
    append_runs(
        runs,
        (
            EvidenceRun(minute * MINUTE_NS, (minute + 1) * MINUTE_NS, finding, rows)
            for minute in minutes
            for finding, rows in (finding_of(minute),)
        ),
    )
    return runs
