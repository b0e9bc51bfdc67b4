"""Backfill evidence: which whole minutes a fetch answered, what the venue said of each, merged into runs.

The property tests hold the run-building against a per-minute reference: expanding the runs minute by minute must
give exactly what a plain loop over the minutes says.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.collector.backfill_evidence import (
    MINUTE_NS,
    BucketFinding,
    EvidenceRun,
    answered_minutes,
    append_runs,
    candle_runs,
    count_by_minute,
    trade_runs,
    whole_minutes,
)

M0: Final = 29_453_760  # 2026-01-01T00:00:00Z as a minute index
DATA, EMPTY, NO_RECORD = BucketFinding.DATA, BucketFinding.EMPTY, BucketFinding.NO_RECORD


def minute_ns(offset: int) -> int:
    return (M0 + offset) * MINUTE_NS


def run(first: int, last_exclusive: int, finding: BucketFinding, rows: int) -> EvidenceRun:
    return EvidenceRun(minute_ns(first), minute_ns(last_exclusive), finding, rows)


def test_only_whole_minutes_inside_the_window_count() -> None:
    assert whole_minutes(minute_ns(0), minute_ns(3)) == range(M0, M0 + 3)
    assert whole_minutes(minute_ns(0) + 1, minute_ns(3)) == range(M0 + 1, M0 + 3)  # partial first minute: none
    assert whole_minutes(minute_ns(0), minute_ns(3) - 1) == range(M0, M0 + 2)  # partial last minute: none
    assert len(whole_minutes(minute_ns(0) + 1, minute_ns(1) + 5)) == 0  # no whole minute at all
    assert len(whole_minutes(minute_ns(2), minute_ns(1))) == 0


def test_answered_minutes_are_inside_the_window_and_the_fetch_and_ended_before_it() -> None:
    window = (minute_ns(0) + 30, minute_ns(10))
    assert answered_minutes(
        *window, fetched_start_ns=minute_ns(0), fetched_end_ns=minute_ns(5), ended_by_ns=minute_ns(99)
    ) == range(M0 + 1, M0 + 5)
    # The minute in progress at the fetch (ended_by inside minute 7) may still get trades: no evidence for it.
    assert answered_minutes(
        *window, fetched_start_ns=minute_ns(5), fetched_end_ns=minute_ns(10), ended_by_ns=minute_ns(7) + 1
    ) == range(M0 + 5, M0 + 7)


def test_trades_give_data_runs_with_their_counts_and_empty_runs() -> None:
    times = [minute_ns(0) + 5, minute_ns(0) + 6, minute_ns(1), minute_ns(4) + MINUTE_NS - 1]
    runs = trade_runs(range(M0, M0 + 6), count_by_minute(times))
    assert runs == [run(0, 2, DATA, 3), run(2, 4, EMPTY, 0), run(4, 5, DATA, 1), run(5, 6, EMPTY, 0)]


def test_candles_give_data_empty_and_no_record() -> None:
    candles = [(minute_ns(0), True), (minute_ns(1), False), (minute_ns(2), False), (minute_ns(4), True)]
    runs = candle_runs(range(M0, M0 + 6), candles)
    assert runs == [run(0, 1, DATA, 1), run(1, 3, EMPTY, 2), run(3, 4, NO_RECORD, 0), run(4, 5, DATA, 1),
                    run(5, 6, NO_RECORD, 0)]  # fmt: skip


def test_a_month_of_one_finding_is_one_run() -> None:
    minutes = range(M0, M0 + 31 * 24 * 60)
    assert candle_runs(minutes, []) == [EvidenceRun(minutes[0] * MINUTE_NS, minutes.stop * MINUTE_NS, NO_RECORD, 0)]


def test_append_merges_across_fetches_and_refuses_going_back() -> None:
    runs: list[EvidenceRun] = []
    append_runs(runs, [run(0, 2, EMPTY, 0)])
    append_runs(runs, [run(2, 3, EMPTY, 0), run(3, 4, DATA, 7)])
    append_runs(runs, [run(5, 6, DATA, 1)])  # a minute without evidence between: not merged
    assert runs == [run(0, 3, EMPTY, 0), run(3, 4, DATA, 7), run(5, 6, DATA, 1)]
    with pytest.raises(ValueError, match="overlaps or precedes"):
        append_runs(runs, [run(5, 6, DATA, 1)])


def test_a_run_is_whole_minutes() -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        EvidenceRun(minute_ns(0) + 1, minute_ns(1), DATA, 1)
    with pytest.raises(ValueError, match="whole minutes"):
        EvidenceRun(minute_ns(1), minute_ns(1), DATA, 1)


# ---- against a per-minute reference -------------------------------------------------------------------------------


def expand(runs: list[EvidenceRun]) -> dict[int, tuple[BucketFinding, int | None]]:
    """Minute → (finding, rows if the run is one minute long, else None: rows are only known per run)."""
    per_minute: dict[int, tuple[BucketFinding, int | None]] = {}
    for item in runs:
        first, stop = item.start_ns // MINUTE_NS, item.end_ns // MINUTE_NS
        for minute in range(first, stop):
            per_minute[minute] = (item.finding, item.rows if stop - first == 1 else None)
    return per_minute


def assert_canonical(runs: list[EvidenceRun]) -> None:
    """In time order, no overlap, and no two touching runs with one finding (they would have merged)."""
    for before, after in itertools.pairwise(runs):
        assert before.end_ns <= after.start_ns
        assert not (before.end_ns == after.start_ns and before.finding is after.finding)


OFFSET_NS = st.integers(min_value=-3 * MINUTE_NS, max_value=40 * MINUTE_NS)


@given(
    window=st.tuples(OFFSET_NS, OFFSET_NS).filter(lambda w: w[0] < w[1]),
    trade_offsets=st.lists(st.integers(min_value=-MINUTE_NS, max_value=45 * MINUTE_NS), max_size=80),
    cuts=st.lists(st.integers(min_value=0, max_value=45), max_size=6),
    ended_by=OFFSET_NS,
)
def test_trade_runs_match_a_per_minute_reference(
    window: tuple[int, int], trade_offsets: list[int], cuts: list[int], ended_by: int
) -> None:
    start_ns, end_ns = minute_ns(0) + window[0], minute_ns(0) + window[1]
    ended_by_ns = minute_ns(0) + ended_by
    # The window's trades, fetched in chunks cut at minute boundaries (as the job cuts them), appended in order.
    times = [minute_ns(0) + offset for offset in trade_offsets if start_ns <= minute_ns(0) + offset < end_ns]
    bounds = sorted({start_ns, end_ns, *(minute_ns(c) for c in cuts if start_ns < minute_ns(c) < end_ns)})
    runs: list[EvidenceRun] = []
    for chunk_start, chunk_end in itertools.pairwise(bounds):
        minutes = answered_minutes(
            start_ns, end_ns, fetched_start_ns=chunk_start, fetched_end_ns=chunk_end, ended_by_ns=ended_by_ns
        )
        append_runs(runs, trade_runs(minutes, count_by_minute(t for t in times if chunk_start <= t < chunk_end)))
    assert_canonical(runs)
    reference: dict[int, tuple[BucketFinding, int]] = {}
    counts = Counter(t // MINUTE_NS for t in times)
    for minute in range(start_ns // MINUTE_NS - 1, end_ns // MINUTE_NS + 2):
        lo, hi = minute * MINUTE_NS, (minute + 1) * MINUTE_NS
        if start_ns <= lo and hi <= end_ns and hi <= ended_by_ns:  # whole, inside, and over when fetched
            reference[minute] = (DATA, counts[minute]) if counts[minute] else (EMPTY, 0)
    expanded = expand(runs)
    assert set(expanded) == set(reference)
    for minute, (finding, rows) in expanded.items():
        assert finding is reference[minute][0]
        assert rows in (None, reference[minute][1])
    for item in runs:  # a run's rows are the sum of its minutes'
        assert item.rows == sum(reference[m][1] for m in range(item.start_ns // MINUTE_NS, item.end_ns // MINUTE_NS))


@given(
    answered=st.tuples(st.integers(0, 30), st.integers(0, 30)).filter(lambda a: a[0] <= a[1]),
    candles=st.dictionaries(st.integers(-2, 32), st.booleans(), max_size=30),
)
def test_candle_runs_match_a_per_minute_reference(answered: tuple[int, int], candles: dict[int, bool]) -> None:
    minutes = range(M0 + answered[0], M0 + answered[1])
    runs = candle_runs(minutes, [(minute_ns(offset), traded) for offset, traded in sorted(candles.items())])
    assert_canonical(runs)
    expanded = expand(runs)
    assert set(expanded) == set(minutes)
    for minute in minutes:
        traded = candles.get(minute - M0)
        expected = NO_RECORD if traded is None else DATA if traded else EMPTY
        assert expanded[minute][0] is expected
        assert expanded[minute][1] in (None, 0 if traded is None else 1)
    assert sum(item.rows for item in runs) == sum(1 for offset in candles if M0 + offset in minutes)
