"""SeriesChecker: monotonic time, duplicates, candle revisions and trade-id continuity, in bounded memory."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.common.events import CandleSource, DataType, Quote, Trade
from tickstrata.validator.rules import Violation, ViolationKind
from tickstrata.validator.rules_series import DEFAULT_MEMORY_LIMIT, SeriesChecker

from ._samples import MINUTE_NS, OPEN_TIME_NS, candle, trade

T0_NS = OPEN_TIME_NS
MS_NS = 1_000_000


def trades_checker(
    *, sequential: bool = True, time_tolerance_ns: int = 0, memory_limit: int = DEFAULT_MEMORY_LIMIT
) -> SeriesChecker:
    return SeriesChecker(
        exchange="binance",
        symbol="BTC-USDT",
        data_type=DataType.TRADES,
        trade_ids_sequential=sequential,
        time_tolerance_ns=time_tolerance_ns,
        memory_limit=memory_limit,
    )


def candles_checker(*, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> SeriesChecker:
    return SeriesChecker(exchange="binance", symbol="BTC-USDT", data_type=DataType.CANDLES, memory_limit=memory_limit)


def feed(checker: SeriesChecker, events: list[Trade]) -> list[Violation]:
    return [violation for event in events for violation in checker.check(event)]


def trade_at(trade_id: int | str, ts_ns: int, **overrides: object) -> Trade:
    return trade(trade_id=str(trade_id), ts_event_ns=ts_ns, **overrides)


def kinds(violations: list[Violation]) -> list[ViolationKind]:
    return [violation.kind for violation in violations]


# --- monotonic time ----------------------------------------------------------------------------------------------


def test_events_in_time_order_and_at_equal_times_pass() -> None:
    checker = trades_checker(sequential=False)
    assert feed(checker, [trade_at(1, T0_NS), trade_at(2, T0_NS), trade_at(3, T0_NS + 1)]) == []


def test_an_event_one_nanosecond_older_than_the_newest_is_reported() -> None:
    checker = trades_checker(sequential=False)
    checker.check(trade_at(1, T0_NS + 1))
    assert checker.check(trade_at(2, T0_NS)) == [
        Violation(
            exchange="binance",
            symbol="BTC-USDT",
            kind=ViolationKind.NON_MONOTONIC_TIME,
            start_ns=T0_NS,
            end_ns=T0_NS + 1,
            detail=f"trade id 2: ts_event_ns={T0_NS} is 1 ns older than the newest seen ({T0_NS + 1})",
        )
    ]


def test_an_event_within_the_tolerance_passes_and_one_beyond_it_does_not() -> None:
    checker = trades_checker(sequential=False, time_tolerance_ns=5)
    checker.check(trade_at(1, T0_NS + 10))
    assert checker.check(trade_at(2, T0_NS + 5)) == []
    assert kinds(checker.check(trade_at(3, T0_NS + 4))) == [ViolationKind.NON_MONOTONIC_TIME]


def test_a_late_event_does_not_lower_the_newest_time() -> None:
    checker = trades_checker(sequential=False)
    checker.check(trade_at(1, T0_NS + 10))
    checker.check(trade_at(2, T0_NS + 5))
    (violation,) = checker.check(trade_at(3, T0_NS + 7))
    assert "3 ns older than the newest seen" in violation.detail


def test_quotes_are_checked_for_time_order_only() -> None:
    checker = SeriesChecker(exchange="binance", symbol="BTC-USDT", data_type=DataType.QUOTES)

    def quote(ts_ns: int) -> Quote:
        price, size = Decimal("64010.5"), Decimal(1)
        return Quote("binance", "BTC-USDT", price, size, price, size, ts_event_ns=ts_ns, ts_recv_ns=ts_ns)

    assert checker.check(quote(T0_NS + 2)) == []
    assert checker.check(quote(T0_NS + 2)) == []  # an unchanged quote repeated is normal
    (violation,) = checker.check(quote(T0_NS))
    assert (violation.kind, violation.start_ns, violation.end_ns) == (
        ViolationKind.NON_MONOTONIC_TIME,
        T0_NS,
        T0_NS + 1,
    )
    assert violation.detail == f"ts_event_ns={T0_NS} is 2 ns older than the newest seen ({T0_NS + 2})"


# --- duplicates and trade-id continuity --------------------------------------------------------------------------


@pytest.mark.parametrize("sequential", [True, False])
def test_a_trade_id_seen_twice_is_one_duplicate_and_nothing_else(sequential: bool) -> None:
    checker = trades_checker(sequential=sequential)
    checker.check(trade_at(1000, T0_NS))
    checker.check(trade_at(1001, T0_NS + MS_NS))
    assert checker.check(trade_at(1000, T0_NS)) == [
        Violation(
            exchange="binance",
            symbol="BTC-USDT",
            kind=ViolationKind.DUPLICATE,
            start_ns=T0_NS,
            end_ns=T0_NS + 1,
            detail="trade id 1000 seen again (price=64010.5 size=0.012)",
        )
    ]


def test_a_jump_in_sequential_ids_is_a_gap_from_the_trade_before_to_the_trade_after() -> None:
    checker = trades_checker()
    checker.check(trade_at(1004, T0_NS))
    assert checker.check(trade_at(1010, T0_NS + 7 * MS_NS)) == [
        Violation(
            exchange="binance",
            symbol="BTC-USDT",
            kind=ViolationKind.TRADE_ID_GAP,
            start_ns=T0_NS,
            end_ns=T0_NS + 7 * MS_NS + 1,
            detail="ids 1005..1009 missing (5)",
        )
    ]


def test_a_single_missing_id_is_named_alone() -> None:
    checker = trades_checker()
    assert feed(checker, [trade_at(1000, T0_NS), trade_at(1002, T0_NS)])[0].detail == "id 1001 missing (1)"


def test_the_gap_window_covers_both_trades_when_the_later_id_has_the_older_time() -> None:
    checker = trades_checker()
    checker.check(trade_at(1000, T0_NS + 5))
    violations = checker.check(trade_at(1003, T0_NS))
    assert [(v.kind, v.start_ns, v.end_ns) for v in violations] == [
        (ViolationKind.NON_MONOTONIC_TIME, T0_NS, T0_NS + 1),
        (ViolationKind.TRADE_ID_GAP, T0_NS, T0_NS + 6),
    ]


def test_an_id_below_the_highest_is_out_of_order_not_a_gap() -> None:
    checker = trades_checker()
    checker.check(trade_at(1000, T0_NS))
    checker.check(trade_at(1002, T0_NS + 1))
    (violation,) = checker.check(trade_at(1001, T0_NS + 2))
    assert violation.kind is ViolationKind.NON_MONOTONIC_TIME
    assert violation.detail == "trade id 1001: id 1001 arrived after id 1002"
    # The late id does not move the cursor back: the next id continues from 1002.
    assert checker.check(trade_at(1003, T0_NS + 3)) == []


def test_an_id_both_out_of_order_and_late_is_one_violation_with_both_reasons() -> None:
    checker = trades_checker()
    checker.check(trade_at(1000, T0_NS))
    checker.check(trade_at(1002, T0_NS + 10))
    (violation,) = checker.check(trade_at(1001, T0_NS + 4))
    assert violation.detail == (
        f"trade id 1001: ts_event_ns={T0_NS + 4} is 6 ns older than the newest seen ({T0_NS + 10}); "
        "id 1001 arrived after id 1002"
    )


@pytest.mark.parametrize("bad_id", ["abc", "12a", "-5", "١٢"])
def test_an_id_that_is_not_a_decimal_integer_breaks_continuity_and_is_skipped(bad_id: str) -> None:
    checker = trades_checker()
    checker.check(trade_at(1000, T0_NS))
    (violation,) = checker.check(trade_at(bad_id, T0_NS + 1))
    assert violation.kind is ViolationKind.TRADE_ID_GAP
    assert violation.detail == f"trade id {bad_id!r} is not a decimal integer: continuity is unknown here"
    assert checker.check(trade_at(1001, T0_NS + 2)) == []


def test_ids_of_a_venue_without_sequential_ids_are_not_checked_for_gaps_or_order() -> None:
    checker = trades_checker(sequential=False)
    assert feed(checker, [trade_at(t, T0_NS) for t in (1000, 1010, 1003, 99)]) == []


def test_backfilled_trades_arriving_late_are_not_out_of_order_but_are_deduplicated() -> None:
    checker = trades_checker()
    live = [trade_at(1000, T0_NS), trade_at(1005, T0_NS + 5 * MS_NS)]
    backfill = [trade_at(i, T0_NS + (i - 1000) * MS_NS, backfilled=True) for i in range(1001, 1006)]
    violations = feed(checker, live + backfill)
    assert [(v.kind, v.detail) for v in violations] == [
        (ViolationKind.TRADE_ID_GAP, "ids 1001..1004 missing (4)"),
        (ViolationKind.DUPLICATE, "trade id 1005 seen again (price=64010.5 size=0.012)"),
    ]


def test_backfilled_trades_ahead_of_the_stream_extend_it() -> None:
    checker = trades_checker()
    events = [
        trade_at(1000, T0_NS),
        *(trade_at(i, T0_NS + i, backfilled=True) for i in (1001, 1002)),
        trade_at(1003, T0_NS + 1003),
    ]
    assert feed(checker, events) == []


# --- candles -----------------------------------------------------------------------------------------------------

CANDLE_WINDOW = (OPEN_TIME_NS, OPEN_TIME_NS + MINUTE_NS)


def test_open_candle_updates_are_neither_duplicates_nor_revisions() -> None:
    checker = candles_checker()
    updates = [candle(closed=False), candle(closed=False), candle(closed=False, close=Decimal("64012.0"))]
    assert [checker.check(update) for update in updates] == [[], [], []]


def test_a_closed_candle_seen_again_from_the_same_source_is_a_duplicate() -> None:
    checker = candles_checker()
    assert checker.check(candle()) == []
    assert checker.check(candle()) == [
        Violation(
            "binance",
            "BTC-USDT",
            ViolationKind.DUPLICATE,
            *CANDLE_WINDOW,
            "closed ws candle seen again with the same values",
        )
    ]


def test_the_venue_confirming_a_candle_from_another_source_is_no_violation() -> None:
    checker = candles_checker()
    checker.check(candle(source=CandleSource.BUILT))
    assert checker.check(candle(source=CandleSource.REST, ts_event_ns=OPEN_TIME_NS)) == []


@pytest.mark.parametrize(
    ("first", "second", "kind"),
    [
        (CandleSource.BUILT, CandleSource.REST, ViolationKind.CANDLE_MISMATCH),
        (CandleSource.WS, CandleSource.BUILT, ViolationKind.CANDLE_MISMATCH),
        (CandleSource.WS, CandleSource.WS, ViolationKind.CANDLE_REVISION),
        (CandleSource.WS, CandleSource.REST, ViolationKind.CANDLE_REVISION),
        (CandleSource.REST, CandleSource.REST, ViolationKind.CANDLE_REVISION),
    ],
)
def test_a_closed_candle_with_other_values_is_a_mismatch_against_a_built_one_else_a_revision(
    first: CandleSource, second: CandleSource, kind: ViolationKind
) -> None:
    checker = candles_checker()
    checker.check(candle(source=first))
    (violation,) = checker.check(candle(source=second, close=Decimal("64011.5")))
    assert (violation.kind, violation.start_ns, violation.end_ns) == (kind, *CANDLE_WINDOW)
    assert violation.detail == f"close 64011.0 → 64011.5 ({first} → {second})"


def test_the_revised_values_become_the_reference_for_the_next_copy() -> None:
    checker = candles_checker()
    revised = candle(close=Decimal("64011.5"))
    assert kinds(feed(checker, [candle(), revised, revised])) == [  # type: ignore[list-item]
        ViolationKind.CANDLE_REVISION,
        ViolationKind.DUPLICATE,
    ]


def test_a_late_stream_candle_is_out_of_order_and_a_late_rest_candle_is_not() -> None:
    checker = candles_checker()
    later = candle(open_time_ns=OPEN_TIME_NS + MINUTE_NS, ts_event_ns=OPEN_TIME_NS + 2 * MINUTE_NS - 1)
    assert checker.check(later) == []
    assert checker.check(candle(source=CandleSource.REST, ts_event_ns=OPEN_TIME_NS)) == []
    (violation,) = checker.check(candle(interval_secs=300, open_time_ns=OPEN_TIME_NS, ts_event_ns=OPEN_TIME_NS))
    assert violation.kind is ViolationKind.NON_MONOTONIC_TIME
    assert (violation.start_ns, violation.end_ns) == (OPEN_TIME_NS, OPEN_TIME_NS + 5 * MINUTE_NS)


# --- misuse ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [trade(symbol="ETH-USDT"), trade(exchange="okx"), candle()],
    ids=["other symbol", "other exchange", "other data type"],
)
def test_an_event_of_another_series_is_a_routing_error(event: Trade) -> None:
    with pytest.raises(ValueError, match="does not belong to the series"):
        trades_checker().check(event)


def test_bad_options_are_configuration_errors() -> None:
    with pytest.raises(ValueError, match="time_tolerance_ns"):
        trades_checker(time_tolerance_ns=-1)
    with pytest.raises(ValueError, match="memory_limit"):
        trades_checker(memory_limit=0)


# --- memory ------------------------------------------------------------------------------------------------------


def test_memory_stays_bounded_over_100k_trades() -> None:
    checker = trades_checker(memory_limit=1000)
    for trade_id in range(100_000):
        assert checker.check(trade_at(trade_id, T0_NS + trade_id)) == []
        assert checker.remembered_count <= 1000
    assert checker.remembered_count == 1000
    # A copy older than the memory is no longer known as a copy: with sequential ids it is out of order.
    assert kinds(checker.check(trade_at(5, T0_NS + 100_000))) == [ViolationKind.NON_MONOTONIC_TIME]
    assert kinds(checker.check(trade_at(99_999, T0_NS + 100_000))) == [ViolationKind.DUPLICATE]


def test_memory_stays_bounded_over_many_closed_candles() -> None:
    checker = candles_checker(memory_limit=100)
    for minute in range(10_000):
        open_time_ns = OPEN_TIME_NS + minute * MINUTE_NS
        assert checker.check(candle(open_time_ns=open_time_ns, ts_event_ns=open_time_ns + MINUTE_NS - 1)) == []
        assert checker.remembered_count <= 100
    assert checker.remembered_count == 100


# --- properties against reference models -------------------------------------------------------------------------


def deleted_runs(ids: list[int], kept: list[int]) -> list[tuple[int, int]]:
    """The maximal runs of ``ids`` missing from ``kept`` that lie between two kept ids: what a stream can see."""
    kept_set, runs = set(kept), list[tuple[int, int]]()
    run_start: int | None = None
    for trade_id in ids:
        if trade_id in kept_set:
            if run_start is not None and trade_id != kept[0]:
                runs.append((run_start, trade_id - 1))
            run_start = None
        elif run_start is None and kept and kept[0] < trade_id < kept[-1]:
            run_start = trade_id
    return runs


@given(data=st.data(), count=st.integers(1, 300), first_id=st.integers(0, 10**12))
def test_deleting_ids_from_a_sequential_stream_reports_exactly_the_deleted_runs(
    data: st.DataObject, count: int, first_id: int
) -> None:
    ids = list(range(first_id, first_id + count))
    deleted = data.draw(st.sets(st.sampled_from(ids), max_size=count))
    kept = [trade_id for trade_id in ids if trade_id not in deleted]
    ts_by_id = {trade_id: T0_NS + (trade_id - first_id) * MS_NS for trade_id in ids}
    violations = feed(trades_checker(), [trade_at(trade_id, ts_by_id[trade_id]) for trade_id in kept])
    expected = [
        (f"id {first}" if first == last else f"ids {first}..{last}") + f" missing ({last - first + 1})"
        for first, last in deleted_runs(ids, kept)
    ]
    assert [v.detail for v in violations] == expected
    assert all(v.kind is ViolationKind.TRADE_ID_GAP for v in violations)
    for violation, (first, last) in zip(violations, deleted_runs(ids, kept), strict=True):
        assert (violation.start_ns, violation.end_ns) == (ts_by_id[first - 1], ts_by_id[last + 1] + 1)


def reference_id_checks(ids: list[int]) -> list[tuple[ViolationKind, str]]:
    """What a sequential-id stream in this arrival order should report, with unlimited memory."""
    seen: set[int] = set()
    highest: int | None = None
    expected = []
    for trade_id in ids:
        if trade_id in seen:
            expected.append((ViolationKind.DUPLICATE, str(trade_id)))
            continue
        seen.add(trade_id)
        if highest is not None and trade_id < highest:
            expected.append((ViolationKind.NON_MONOTONIC_TIME, str(trade_id)))
            continue
        if highest is not None and trade_id > highest + 1:
            expected.append((ViolationKind.TRADE_ID_GAP, f"{highest + 1}..{trade_id - 1}"))
        highest = trade_id
    return expected


def observed(violation: Violation) -> tuple[ViolationKind, str]:
    if violation.kind is ViolationKind.TRADE_ID_GAP:
        first, _, last = violation.detail.split(" ")[1].partition("..")
        return violation.kind, f"{first}..{last or first}"
    return violation.kind, violation.detail.split(" ")[2].rstrip(":")


arrival_orders = st.one_of(
    st.lists(st.integers(0, 60), max_size=80),  # any order, with repeats and holes
    st.permutations(list(range(40))).flatmap(lambda order: st.lists(st.sampled_from(order), max_size=50)),
    st.permutations(list(range(40))),
)


@given(ids=arrival_orders)
def test_any_arrival_order_matches_the_reference_model(ids: list[int]) -> None:
    # Times follow arrival, so only the ids can be out of order.
    checker = trades_checker(memory_limit=1000)
    violations = feed(checker, [trade_at(trade_id, T0_NS + index) for index, trade_id in enumerate(ids)])
    assert [observed(violation) for violation in violations] == reference_id_checks(ids)


@given(
    offsets_ns=st.lists(st.integers(0, 1000), max_size=60),
    tolerance_ns=st.integers(0, 200),
)
def test_late_events_match_the_reference_model(offsets_ns: list[int], tolerance_ns: int) -> None:
    checker = trades_checker(sequential=False, time_tolerance_ns=tolerance_ns)
    late_indexes, newest_ns = [], None
    for index, offset_ns in enumerate(offsets_ns):
        if newest_ns is not None and offset_ns < newest_ns - tolerance_ns:
            late_indexes.append(index)
        newest_ns = offset_ns if newest_ns is None else max(newest_ns, offset_ns)
    reported = [
        index
        for index, offset_ns in enumerate(offsets_ns)
        for violation in checker.check(trade_at(index, T0_NS + offset_ns))
        if violation.kind is ViolationKind.NON_MONOTONIC_TIME
    ]
    assert reported == late_indexes
