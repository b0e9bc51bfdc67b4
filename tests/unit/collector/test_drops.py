"""The drop ledger: quotes and books let go under backpressure become gaps with their exact windows."""

from __future__ import annotations

from decimal import Decimal

from tickstrata.collector.drops import DropLedger, is_droppable
from tickstrata.common.events import BookSnapshot, DataType, GapKind, Quote, Side, Trade


def quote(symbol: str, ts_ns: int) -> Quote:
    one = Decimal(1)
    return Quote(
        exchange="binance", symbol=symbol, bid_price=one, bid_size=one, ask_price=Decimal(2), ask_size=one,
        ts_event_ns=ts_ns, ts_recv_ns=ts_ns + 1,
    )  # fmt: skip


def book(symbol: str, ts_ns: int) -> BookSnapshot:
    return BookSnapshot(
        exchange="binance", symbol=symbol, bids=(), asks=(), sequence=1, ts_event_ns=ts_ns, ts_recv_ns=ts_ns + 1
    )


def test_only_quotes_and_books_may_be_dropped() -> None:
    trade = Trade(
        exchange="binance", symbol="BTC-USDT", trade_id="1", price=Decimal(1), size=Decimal(1), side=Side.BUY,
        ts_event_ns=1, ts_recv_ns=2,
    )  # fmt: skip
    assert is_droppable(quote("BTC-USDT", 1))
    assert is_droppable(book("BTC-USDT", 1))
    assert not is_droppable(trade)


def test_each_data_type_and_symbol_gets_the_exact_window_of_what_was_dropped() -> None:
    # Half-open windows: [first dropped stamp, last dropped stamp + 1 ns).
    ledger = DropLedger("binance")
    for ts in (500, 100, 300):
        ledger.drop(quote("BTC-USDT", ts))
    ledger.drop(quote("ETH-USDT", 7))
    ledger.drop(book("BTC-USDT", 42))
    assert ledger.dropped_events == 5
    gaps = ledger.take_gaps(now_ns=999, reason="Redis full")
    windows = [(g.data_type, g.symbol, g.start_ns, g.end_ns, g.kind) for g in gaps]
    assert windows == [
        (DataType.BOOKS, "BTC-USDT", 42, 43, GapKind.BACKPRESSURE),
        (DataType.QUOTES, "BTC-USDT", 100, 501, GapKind.BACKPRESSURE),
        (DataType.QUOTES, "ETH-USDT", 7, 8, GapKind.BACKPRESSURE),
    ]
    assert gaps[1].cause == "3 quotes events dropped: Redis full"
    assert not ledger
    assert ledger.take_gaps(now_ns=1000, reason="x") == []
