from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickstrata.collector.continuity import (
    DisconnectTracker,
    Duplicate,
    TradeIdTracker,
    book_sequence_gap,
)
from tickstrata.common.events import DataType, Gap, GapKind

EXCHANGE = "binance"
MS = 1_000_000


def test_consecutive_trade_ids_produce_no_gap() -> None:
    tracker = TradeIdTracker(EXCHANGE, "BTC-USDT")
    assert [tracker.observe(i, i * MS, i * MS) for i in range(100, 110)] == [None] * 10
    assert tracker.last_trade_id == 109


def test_skipped_trade_ids_give_the_exact_window_and_id_range() -> None:
    tracker = TradeIdTracker(EXCHANGE, "BTC-USDT")
    tracker.observe(100, 1_000 * MS, 1)
    tracker.observe(101, 1_005 * MS, 2)

    gap = tracker.observe(105, 1_020 * MS, 777)

    assert gap == Gap(
        exchange=EXCHANGE,
        data_type=DataType.TRADES,
        symbol="BTC-USDT",
        kind=GapKind.TRADE_ID,
        start_ns=1_005 * MS,  # the last trade received before the hole
        end_ns=1_020 * MS + 1,  # the first one after it, included: the window is half-open
        cause="trade ids 102..104 missing (3)",
        ts_recv_ns=777,
    )
    assert tracker.observe(106, 1_021 * MS, 3) is None  # the chain continues from the new trade


def test_a_gap_within_one_millisecond_has_a_one_nanosecond_window() -> None:
    tracker = TradeIdTracker(EXCHANGE, "BTC-USDT")
    tracker.observe(1, 5 * MS, 0)
    gap = tracker.observe(3, 5 * MS, 0)
    assert isinstance(gap, Gap)
    # Half-open [5 ms, 5 ms + 1 ns): exactly the trades stamped 5 ms may be missing.
    assert (gap.start_ns, gap.end_ns) == (5 * MS, 5 * MS + 1)


def test_duplicates_and_replays_are_flagged_not_gaps() -> None:
    tracker = TradeIdTracker(EXCHANGE, "BTC-USDT")
    tracker.observe(10, 1, 1)
    tracker.observe(11, 2, 2)
    assert tracker.observe(11, 2, 3) == Duplicate(trade_id=11, last_trade_id=11)
    assert tracker.observe(7, 1, 3) == Duplicate(trade_id=7, last_trade_id=11)
    assert tracker.last_trade_id == 11  # a replay never moves the chain back
    assert tracker.observe(12, 3, 4) is None


def test_a_venue_clock_stepping_back_still_gives_a_valid_window() -> None:
    tracker = TradeIdTracker(EXCHANGE, "BTC-USDT")
    tracker.observe(1, 10 * MS, 0)
    gap = tracker.observe(5, 8 * MS, 0)
    assert isinstance(gap, Gap)
    assert (gap.start_ns, gap.end_ns) == (8 * MS, 10 * MS + 1)


@given(ids=st.lists(st.integers(0, 200), min_size=1, max_size=60))
def test_gaps_name_exactly_the_ids_never_received(ids: list[int]) -> None:
    tracker = TradeIdTracker(EXCHANGE, "ETH-USDT")
    reported: set[int] = set()
    for trade_id in ids:
        result = tracker.observe(trade_id, trade_id * MS, 0)
        if isinstance(result, Gap):
            first, last = result.cause.split()[2].split("..")
            assert (result.start_ns, result.end_ns) == ((int(first) - 1) * MS, (int(last) + 1) * MS + 1)
            reported.update(range(int(first), int(last) + 1))
    accepted: list[int] = []
    for trade_id in ids:  # the ids the tracker accepted: a strictly increasing run
        if not accepted or trade_id > accepted[-1]:
            accepted.append(trade_id)
    missing = set(range(accepted[0], accepted[-1] + 1)) - set(accepted)
    assert reported == missing


def test_disconnect_yields_one_gap_per_key_with_the_exact_window() -> None:
    tracker = DisconnectTracker(EXCHANGE)
    tracker.observe("BTC-USDT", DataType.TRADES, 100, 1)
    tracker.observe("BTC-USDT", DataType.TRADES, 120, 1)
    tracker.observe("ETH-USDT", DataType.TRADES, 110, 1)
    tracker.observe("BTC-USDT", DataType.CANDLES, 90, 1)

    assert tracker.lost("connection closed: 1006") == 3

    gap = tracker.observe("BTC-USDT", DataType.TRADES, 500, 999)
    assert gap == Gap(
        exchange=EXCHANGE,
        data_type=DataType.TRADES,
        symbol="BTC-USDT",
        kind=GapKind.DISCONNECT,
        start_ns=120,
        end_ns=501,
        cause="connection closed: 1006",
        ts_recv_ns=999,
    )
    assert tracker.observe("BTC-USDT", DataType.TRADES, 501, 1) is None  # closed once
    assert tracker.open_windows() == {("ETH-USDT", DataType.TRADES): 110, ("BTC-USDT", DataType.CANDLES): 90}
    candle_gap = tracker.observe("BTC-USDT", DataType.CANDLES, 600, 1)
    assert candle_gap is not None
    assert (candle_gap.data_type, candle_gap.start_ns, candle_gap.end_ns) == (DataType.CANDLES, 90, 601)


def test_a_second_loss_before_recovery_keeps_the_original_start() -> None:
    tracker = DisconnectTracker(EXCHANGE)
    tracker.observe("BTC-USDT", DataType.TRADES, 100, 1)
    tracker.lost("watchdog: silent for 30 s", kind=GapKind.STALE)
    assert tracker.lost("connection refused") == 0
    gap = tracker.observe("BTC-USDT", DataType.TRADES, 900, 1)
    assert gap is not None
    assert (gap.kind, gap.start_ns, gap.end_ns, gap.cause) == (GapKind.STALE, 100, 901, "watchdog: silent for 30 s")


def test_keys_without_events_have_no_known_start_and_flush_closes_quiet_keys() -> None:
    tracker = DisconnectTracker(EXCHANGE)
    assert tracker.lost("closed") == 0
    tracker.observe("BTC-USDT", DataType.TRADES, 100, 1)
    tracker.observe(None, DataType.FUNDING, 50, 1)
    tracker.lost("closed")
    gaps = tracker.flush(last_ns=1_000, ts_recv_ns=2)
    assert sorted((g.symbol or "", g.data_type, g.start_ns, g.end_ns) for g in gaps) == [
        ("", DataType.FUNDING, 50, 1_001),
        ("BTC-USDT", DataType.TRADES, 100, 1_001),
    ]
    assert tracker.open_windows() == {}


def test_loss_kind_must_be_a_connection_kind() -> None:
    with pytest.raises(ValueError, match="DISCONNECT, STALE or RESTART"):
        DisconnectTracker(EXCHANGE).lost("x", kind=GapKind.TRADE_ID)


def test_book_sequence_gap_window() -> None:
    gap = book_sequence_gap(
        EXCHANGE,
        "BTC-USDT",
        last_applied_ts_event_ns=5_000,
        revealed_ts_event_ns=7_000,
        cause="sequence_gap: local id 11, next diff U=13",
        ts_recv_ns=8_000,
    )
    assert gap is not None
    assert (gap.kind, gap.data_type, gap.start_ns, gap.end_ns) == (GapKind.SEQUENCE, DataType.BOOKS, 5_000, 7_001)
    never_published = book_sequence_gap(
        EXCHANGE, "BTC-USDT", last_applied_ts_event_ns=None, revealed_ts_event_ns=7_000, cause="x", ts_recv_ns=1
    )
    assert never_published is None
    crossed_snapshot = book_sequence_gap(
        EXCHANGE, "BTC-USDT", last_applied_ts_event_ns=5_000, revealed_ts_event_ns=None, cause="x", ts_recv_ns=1
    )
    assert crossed_snapshot is not None
    assert (crossed_snapshot.start_ns, crossed_snapshot.end_ns) == (5_000, 5_001)
