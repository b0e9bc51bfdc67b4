"""The ledger book: watermark, persisted rows, backfill plans, scan gaps and gap resolution (clock injected)."""

from __future__ import annotations

from decimal import Decimal

from tests.unit.common._samples import trade
from tickstrata.common.completeness import BucketState
from tickstrata.common.events import DataType, Gap, GapKind
from tickstrata.validator.book import BackfillAsk, BookConfig, LedgerBook
from tickstrata.validator.gaps import GapState
from tickstrata.validator.ledger import MINUTE_NS, Finding

T0 = 1_800_000_000 * 1_000_000_000 // MINUTE_NS * MINUTE_NS  # the same minutes as test_backfill_driver's
GRACE_NS = 5_000_000_000


def minute(i: int) -> int:
    return T0 + i * MINUTE_NS


def settle_first_minute(book: LedgerBook) -> None:
    """The first minute seen was only partly watched: the venue's word settles it (backfilled), so the tests
    below are about the minutes after it."""
    ledger = book.ledgers[("binance", "BTC-USDT")]
    ledger.observe_finding(DataType.TRADES, minute(-1), minute(0), Finding.DATA)
    ledger.observe_finding(DataType.CANDLES, minute(-1), minute(0), Finding.DATA)
    book.observe_trade(trade(ts_event_ns=minute(-1) + 2, trade_id="-2", backfilled=True))
    ledger.record(minute(-1)).backfilled_candles = 1


def book_with_trades(minutes: list[int]) -> LedgerBook:
    book = LedgerBook(BookConfig(grace_ns=GRACE_NS, max_ask_minutes=3))
    book.observe_trade(trade(ts_event_ns=minute(-1) + 1))  # first seen
    settle_first_minute(book)
    for i in minutes:
        book.observe_trade(trade(ts_event_ns=minute(i) + 7, trade_id=str(i), price=Decimal(1)))
    return book


def now_after(i: int) -> int:
    """A clock just past the watermark of minute i (it ends, then the grace passes)."""
    return minute(i + 1) + GRACE_NS


def caught_up(book: LedgerBook, now_ns: int) -> LedgerBook:
    book.caught_up_ns = now_ns
    return book


def test_the_watermark_waits_for_the_grace_and_for_the_consumer_to_catch_up() -> None:
    book = book_with_trades([0])
    assert book.watermark_ns(now_after(0)) < minute(1)  # the consumer has not caught up yet
    caught_up(book, now_after(0))
    assert book.watermark_ns(now_after(0)) == minute(1)
    assert dict(book.states("binance", "BTC-USDT", minute(0), minute(1), now_after(0))) == {
        minute(0): BucketState.PRESENT
    }


def test_flush_persists_each_state_change_once_and_advances_past_settled_minutes() -> None:
    book = caught_up(book_with_trades([0, 1, 3]), now_after(3))
    rows = book.flush_rows(now_after(3))
    assert [(r.minute_start_ns, r.state) for r in rows] == [
        (minute(-1), BucketState.BACKFILLED),
        (minute(0), BucketState.PRESENT),
        (minute(1), BucketState.PRESENT),
        (minute(2), BucketState.MISSING),
        (minute(3), BucketState.PRESENT),
    ]
    assert book.flush_rows(now_after(3)) == []  # nothing changed: nothing to write


def test_missing_minutes_are_planned_per_data_type_in_bounded_runs_and_recorded_as_scan_gaps() -> None:
    book = caught_up(book_with_trades([0, 5]), now_after(5))
    asks = book.plan_backfills(now_after(5), busy=set())
    windows = sorted((a.data_type, (a.start_ns - T0) // MINUTE_NS, (a.end_ns - T0) // MINUTE_NS) for a in asks)
    # Minutes 1-4 are missing; runs are at most 3 minutes long.
    assert windows == [
        (DataType.CANDLES, 1, 4),
        (DataType.CANDLES, 4, 5),
        (DataType.TRADES, 1, 4),
        (DataType.TRADES, 4, 5),
    ]
    scans = [g for g in book.gaps.open_gaps() if g.kind == "scan"]
    assert len(scans) == 4
    # Asks already running are not asked again.
    assert book.plan_backfills(now_after(5), busy={a.key for a in asks}) == []


def test_a_reported_gap_makes_its_minutes_suspect_then_the_backfill_resolves_it() -> None:
    book = caught_up(book_with_trades([0, 1, 2]), now_after(2))
    gap = Gap(
        exchange="binance",
        data_type=DataType.TRADES,
        symbol=None,  # the whole feed: every tracked symbol
        kind=GapKind.DISCONNECT,
        start_ns=minute(1) + 5,
        end_ns=minute(1) + 9,
        cause="close code 1006",
        ts_recv_ns=minute(1) + 10,
    )
    record = book.observe_gap(gap, now_after(2))
    assert record is not None
    assert book.observe_gap(gap, now_after(2)) is None  # delivered twice: one gap
    book.flush_rows(now_after(2))
    [ask] = book.plan_backfills(now_after(2), busy=set())
    assert ask == BackfillAsk("binance", "BTC-USDT", DataType.TRADES, minute(1), minute(2))
    ledger = book.ledgers[("binance", "BTC-USDT")]
    ledger.observe_asked(ask.data_type, ask.start_ns, ask.end_ns)
    book.flush_rows(now_after(2))
    assert book.gaps.get(record.gap_id).state is GapState.BACKFILLING  # type: ignore[union-attr]
    ledger.observe_finding(DataType.TRADES, minute(1), minute(2), Finding.DATA)
    book.observe_trade(trade(ts_event_ns=minute(1) + 6, trade_id="99", backfilled=True))
    rows = book.flush_rows(now_after(2))
    assert [(r.minute_start_ns, r.state) for r in rows] == [(minute(1), BucketState.BACKFILLED)]
    assert book.gaps.get(record.gap_id).state is GapState.RESOLVED  # type: ignore[union-attr]


def test_a_late_gap_reopens_minutes_already_settled() -> None:
    book = caught_up(book_with_trades([0, 1, 2, 3]), now_after(3))
    book.flush_rows(now_after(3))
    late = Gap(
        exchange="binance",
        data_type=DataType.CANDLES,
        symbol="BTC-USDT",
        kind=GapKind.RESTART,
        start_ns=minute(0) + 1,
        end_ns=minute(0) + 2,
        cause="restart",
        ts_recv_ns=now_after(3),
    )
    book.observe_gap(late, now_after(3))
    rows = book.flush_rows(now_after(3))
    assert [(r.minute_start_ns, r.state) for r in rows] == [(minute(0), BucketState.MISSING)]
    [ask] = book.plan_backfills(now_after(3), busy=set())
    assert (ask.data_type, ask.start_ns, ask.end_ns) == (DataType.CANDLES, minute(0), minute(1))


def test_an_ask_the_venue_cannot_serve_leaves_its_minutes_missing_and_closes_the_gap_unrecoverable() -> None:
    book = caught_up(book_with_trades([0, 2]), now_after(2))
    book.flush_rows(now_after(2))
    asks = book.plan_backfills(now_after(2), busy=set())
    for ask in asks:
        book.give_up(ask)
    rows = book.flush_rows(now_after(2))
    assert {(r.minute_start_ns, r.state) for r in rows} == {(minute(1), BucketState.MISSING)}
    assert book.plan_backfills(now_after(2), busy=set()) == []
    assert {g.state for g in book.gaps.take_changed()} == {GapState.UNRECOVERABLE}


def test_a_feed_wide_gap_read_before_a_symbols_first_event_still_covers_it() -> None:
    book = LedgerBook(BookConfig(grace_ns=GRACE_NS))
    gap = Gap(
        exchange="binance",
        data_type=DataType.TRADES,
        symbol=None,
        kind=GapKind.DISCONNECT,
        start_ns=minute(2) + 5,
        end_ns=minute(2) + 9,
        cause="close code 1006",
        ts_recv_ns=minute(2) + 10,
    )
    book.observe_gap(gap, now_after(3))  # no symbol known yet: the gap consumer ran first
    for i in range(-1, 4):
        book.observe_trade(trade(ts_event_ns=minute(i) + 7, trade_id=str(i)))
    caught_up(book, now_after(3))
    states = dict(book.states("binance", "BTC-USDT", minute(0), minute(4), now_after(3)))
    assert states[minute(2)] is BucketState.MISSING  # suspect: its live trades may be incomplete
    assert states[minute(1)] is BucketState.PRESENT


def test_the_first_minute_seen_was_partly_watched_so_the_venue_is_asked_for_it() -> None:
    book = LedgerBook(BookConfig(grace_ns=GRACE_NS))
    book.observe_trade(trade(ts_event_ns=minute(0) + 30 * 1_000_000_000))  # the collector started mid-minute
    book.observe_trade(trade(ts_event_ns=minute(1) + 5, trade_id="2"))
    caught_up(book, now_after(1))
    states = dict(book.states("binance", "BTC-USDT", minute(0), minute(2), now_after(1)))
    assert states == {minute(0): BucketState.MISSING, minute(1): BucketState.PRESENT}
    asks = book.plan_backfills(now_after(1), busy=set())
    assert {(a.data_type, a.start_ns, a.end_ns) for a in asks} == {
        (DataType.TRADES, minute(0), minute(1)),
        (DataType.CANDLES, minute(0), minute(1)),
    }


def test_gaps_of_types_without_rest_history_are_recorded_as_unrecoverable() -> None:
    book = book_with_trades([0, 1])
    caught_up(book, now_after(1))
    quotes = Gap(
        exchange="binance",
        data_type=DataType.QUOTES,
        symbol="BTC-USDT",
        kind=GapKind.BACKPRESSURE,
        start_ns=minute(0) + 1,
        end_ns=minute(0) + 2,
        cause="dropped while Redis was full",
        ts_recv_ns=minute(0) + 3,
    )
    record = book.observe_gap(quotes, now_after(1))
    assert record is not None
    book.flush_rows(now_after(1))
    assert book.gaps.get(record.gap_id).state is GapState.UNRECOVERABLE  # type: ignore[union-attr]
    assert dict(book.states("binance", "BTC-USDT", minute(0), minute(1), now_after(1))) == {
        minute(0): BucketState.PRESENT  # a quote loss says nothing about the minute's trades and candle
    }


def test_gap_resolution_scans_on_from_where_it_stopped() -> None:
    book = caught_up(book_with_trades([0, 1, 2, 3]), now_after(3))
    book.observe_gap(
        Gap(
            exchange="binance",
            data_type=DataType.TRADES,
            symbol="BTC-USDT",
            kind=GapKind.TRADE_ID,
            start_ns=minute(1) + 5,
            end_ns=minute(3) + 5,
            cause="trade ids 10..20 missing (11)",
            ts_recv_ns=minute(3) + 6,
        ),
        now_after(3),
    )
    book.flush_rows(now_after(3))
    (gap,) = [g for g in book.gaps.open_gaps() if g.kind == "trade_id"]
    ledger = book.ledgers[("binance", "BTC-USDT")]
    # Minute 1 is repaired, 2 and 3 are not yet: the gap stays open (it goes on from minute 2 next time).
    ledger.observe_finding(DataType.TRADES, minute(1), minute(2), Finding.EMPTY)
    book.flush_rows(now_after(3))
    assert state_of(book, gap.gap_id) is GapState.OPEN
    ledger.observe_finding(DataType.TRADES, minute(2), minute(4), Finding.EMPTY)
    book.flush_rows(now_after(3))
    assert state_of(book, gap.gap_id) is GapState.RESOLVED


def state_of(book: LedgerBook, gap_id: str) -> GapState:
    record = book.gaps.get(gap_id)
    assert record is not None
    return record.state


def test_instruments_take_turns_in_the_plan_so_none_is_starved() -> None:
    """The driver submits a few jobs per collector at a time, first come first: with one instrument's backlog
    listed before another's, the last instruments would wait for all of the first's holes."""
    book = book_with_trades([0, 9])  # BTC-USDT: minutes 1-8 missing, three runs per data type
    for symbol in ("ETH-USDT", "SOL-USDT"):
        book.observe_trade(trade(symbol=symbol, ts_event_ns=minute(-1) + 1))
        book.ledgers[("binance", symbol)].observe_finding(DataType.TRADES, minute(-1), minute(0), Finding.DATA)
        book.ledgers[("binance", symbol)].observe_finding(DataType.CANDLES, minute(-1), minute(0), Finding.DATA)
        book.observe_trade(trade(symbol=symbol, ts_event_ns=minute(-1) + 2, trade_id="-2", backfilled=True))
        book.ledgers[("binance", symbol)].record(minute(-1)).backfilled_candles = 1
        book.observe_trade(trade(symbol=symbol, ts_event_ns=minute(9) + 7, trade_id="9"))
    caught_up(book, now_after(9))
    asks = book.plan_backfills(now_after(9), busy=set())
    first_turn = [a.symbol for a in asks[:3]]
    assert sorted(first_turn) == ["BTC-USDT", "ETH-USDT", "SOL-USDT"]  # every instrument in the first turn
    for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
        own = [(a.start_ns, a.data_type) for a in asks if a.symbol == symbol]
        assert own == sorted(own)  # each instrument's own asks oldest first
        assert len(own) == 6  # minutes 1-8: runs of 3, 3 and 2, for trades and candles
