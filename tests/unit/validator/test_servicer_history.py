"""QualityService over windows older than the in-memory horizon: the book answers what it holds, the store the rest.

The store is a fake holding rows the way `quality_buckets` does (the last write of a bucket wins) and answering
through `HistoryWindow.covers` and the page spans (`_history.FakeStore`), so these tests pin the split: which
minutes are asked of the store, which the book answers, and how the two add up. The SQL itself runs against
QuestDB in `tests/integration/test_validator_history.py`. The reference for BTC-USDT is the same ledger that
never forgot anything (answered from memory alone).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from tests.unit.validator._grpc_fakes import AbortedError, FakeContext
from tests.unit.validator._history import (
    ETH_FIRST,
    HORIZON_MINUTE,
    NOW,
    T0,
    FakeStore,
    ledger_book,
    minute,
    store_rows,
)
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.validator.book import LedgerBook
from tickstrata.validator.history import (
    HistoryCut,
    HistoryWindow,
)
from tickstrata.validator.servicer import HOUR_NS, QualityService

EXCHANGE = "binance"


def services() -> tuple[QualityService, FakeStore, QualityService]:
    """(the service under test, its store, the reference: the book that never forgot, with an empty store)."""
    book, _ = ledger_book(EXCHANGE, forget=True)
    store = FakeStore(store_rows(EXCHANGE))
    reference, _ = ledger_book(EXCHANGE, forget=False)
    return (
        QualityService(book, store, clock_ns=lambda: NOW),  # type: ignore[arg-type]  # the fake reads like the store
        store,
        QualityService(reference, FakeStore([]), clock_ns=lambda: NOW),  # type: ignore[arg-type]  # nothing older
    )


def call(method: Any, request: Any) -> Any:
    return asyncio.run(method(request, FakeContext()))


def counts(message: pb.BucketCounts) -> tuple[int, int, int, int, int]:
    return message.present, message.backfilled, message.exchange_empty, message.missing, message.pending


def completeness(service: QualityService, symbol: str, start: int, end: int) -> pb.GetCompletenessResponse:
    request = pb.GetCompletenessRequest(exchange=EXCHANGE, symbol=symbol, start_ns=start, end_ns=end)
    reply: pb.GetCompletenessResponse = call(service.GetCompleteness, request)
    return reply


def test_the_book_really_holds_only_the_minutes_from_the_horizon_on() -> None:
    book, _ = ledger_book(EXCHANGE, forget=True)
    assert book.ledgers[(EXCHANGE, "BTC-USDT")].first_minute_ns == minute(HORIZON_MINUTE)
    assert HistoryCut.of_book(book) == HistoryCut(
        minute(HORIZON_MINUTE),
        {(EXCHANGE, "BTC-USDT"): minute(HORIZON_MINUTE), (EXCHANGE, "ETH-USDT"): minute(ETH_FIRST)},
    )


def test_a_window_inside_the_horizon_is_answered_by_the_book_alone() -> None:
    qs, store, reference = services()
    reply = completeness(qs, "BTC-USDT", minute(HORIZON_MINUTE), minute(180))
    assert store.calls == []
    # Minute 150 is missing in the book, whatever the stale row in the store says.
    assert counts(reply.counts) == (59, 0, 0, 1, 0)
    assert reply == completeness(reference, "BTC-USDT", minute(HORIZON_MINUTE), minute(180))


def test_a_window_before_the_horizon_is_counted_by_the_store_alone() -> None:
    qs, store, reference = services()
    reply = completeness(qs, "BTC-USDT", T0, minute(60))
    assert store.calls == ["counts"]
    assert counts(reply.counts) == (59, 0, 0, 1, 0)  # minute 30: missing, given up
    assert (reply.start_ns, reply.end_ns) == (T0, minute(60))
    assert reply == completeness(reference, "BTC-USDT", T0, minute(60))


def test_a_window_straddling_the_horizon_adds_the_store_and_the_book() -> None:
    qs, store, reference = services()
    reply = completeness(qs, "BTC-USDT", T0 - HOUR_NS, minute(180))
    assert store.calls == ["counts"]
    # Minutes -1..179: -1, 30 and 150 missing; 95 and 100 exchange_empty. Counting starts at the first minute seen.
    assert counts(reply.counts) == (176, 0, 2, 3, 0)
    assert reply.start_ns == minute(-1)
    assert reply.completeness_percent == "98.342541"
    assert reply == completeness(reference, "BTC-USDT", T0 - HOUR_NS, minute(180))


def test_an_instrument_first_seen_after_the_horizon_reads_the_store_up_to_its_own_first_minute() -> None:
    qs, store, _ = services()
    reply = completeness(qs, "ETH-USDT", minute(HORIZON_MINUTE), minute(180))
    assert store.calls == ["counts"]
    # 140..149 from the store; 150 (partly watched: missing) to 179 from the book, not the store's stale 160.
    assert counts(reply.counts) == (10 + 29, 0, 0, 1, 0)
    assert reply.start_ns == minute(140)


def test_an_instrument_the_book_no_longer_tracks_is_answered_from_the_store_or_not_found() -> None:
    qs, store, _ = services()
    reply = completeness(qs, "SOL-USDT", T0, minute(180))
    assert (counts(reply.counts), reply.start_ns) == ((9, 0, 0, 1, 0), minute(10))
    with pytest.raises(AbortedError) as unknown:
        completeness(qs, "XRP-USDT", T0, minute(180))
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND
    store.calls.clear()
    with pytest.raises(AbortedError) as recent:  # nothing untracked can be in the store after the book's horizon
        completeness(qs, "XRP-USDT", minute(HORIZON_MINUTE), minute(180))
    assert recent.value.code is grpc.StatusCode.NOT_FOUND
    assert store.calls == []


def test_feed_completeness_sums_the_book_and_the_store_per_exchange() -> None:
    qs, store, _ = services()
    reply = call(qs.GetFeedCompleteness, pb.GetFeedCompletenessRequest(start_ns=T0, end_ns=minute(180)))
    [feed] = reply.feeds
    assert list(feed.symbols) == ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    # BTC 176 present + 2 empty + 2 missing (30, 150); ETH 39 + 1 missing; SOL 9 + 1 missing.
    assert counts(feed.counts) == (176 + 39 + 9, 0, 2, 2 + 1 + 1, 0)
    assert store.calls == ["counts"]
    store.calls.clear()
    inside = call(qs.GetFeedCompleteness, pb.GetFeedCompletenessRequest(start_ns=minute(ETH_FIRST), end_ns=minute(180)))
    assert store.calls == []
    assert counts(inside.feeds[0].counts) == (29 + 29, 0, 0, 2, 0)


def bucket_rows(service: QualityService, page_size: int, **request: Any) -> list[pb.HourBuckets]:
    rows: list[pb.HourBuckets] = []
    token = ""
    while True:
        reply = call(service.ListBuckets, pb.ListBucketsRequest(page_size=page_size, page_token=token, **request))
        rows.extend(reply.rows)
        token = reply.next_page_token
        if not token:
            return rows


def test_bucket_rows_take_older_minutes_from_the_store_and_page_the_same() -> None:
    qs, store, reference = services()
    window = {"exchange": EXCHANGE, "start_ns": T0 - HOUR_NS, "end_ns": minute(180)}
    rows = bucket_rows(qs, 1000, **window)
    assert [(r.symbol, r.hour_start_ns) for r in rows] == [
        (symbol, T0 + h * HOUR_NS) for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT") for h in range(-1, 3)
    ]
    assert rows[:4] == bucket_rows(reference, 1000, symbols=["BTC-USDT"], **window)
    eth_last = rows[7].states
    assert set(eth_last[:20]) == {0}  # 120..139: not in the book, no row in the store
    assert set(eth_last[20:30]) == {pb.BUCKET_STATE_PRESENT}  # the store
    assert eth_last[30] == pb.BUCKET_STATE_MISSING  # the book (first minute, partly watched)
    assert eth_last[40] == pb.BUCKET_STATE_PRESENT  # the book, not the stale row
    sol_first = rows[9]
    assert sol_first.states == bytes(10 * [0] + [pb.BUCKET_STATE_MISSING] + 9 * [pb.BUCKET_STATE_PRESENT] + 40 * [0])
    assert counts(sol_first.counts) == (9, 0, 0, 1, 0)
    assert bucket_rows(qs, 5, **window) == rows
    store.calls.clear()
    assert bucket_rows(qs, 1000, exchange=EXCHANGE, symbols=["BTC-USDT"], start_ns=minute(HORIZON_MINUTE),
                       end_ns=minute(180)) == rows[3:4]  # fmt: skip
    assert store.calls == []


def test_a_store_that_cannot_answer_fails_an_older_window_with_unavailable() -> None:
    qs, store, _ = services()
    store.down = True
    assert counts(completeness(qs, "BTC-USDT", minute(HORIZON_MINUTE), minute(180)).counts) == (59, 0, 0, 1, 0)
    requests: list[tuple[Any, Any]] = [
        (qs.GetCompleteness, pb.GetCompletenessRequest(exchange=EXCHANGE, symbol="BTC-USDT", start_ns=T0)),
        (qs.GetFeedCompleteness, pb.GetFeedCompletenessRequest(start_ns=T0)),
        (qs.ListBuckets, pb.ListBucketsRequest(exchange=EXCHANGE, start_ns=T0)),
        (qs.ListBuckets, pb.ListBucketsRequest(exchange=EXCHANGE, symbols=["BTC-USDT"], start_ns=T0)),
    ]
    for method, request in requests:
        with pytest.raises(AbortedError) as failed:
            call(method, request)
        assert failed.value.code is grpc.StatusCode.UNAVAILABLE
        assert "QuestDB" in str(failed.value)
    assert store.calls == ["counts", "counts", "instruments", "states"]


def test_an_empty_book_reads_every_minute_from_the_store() -> None:
    _, batches = ledger_book(EXCHANGE, forget=False)
    store = FakeStore(batches)
    qs = QualityService(LedgerBook(), store, clock_ns=lambda: NOW)  # type: ignore[arg-type]
    reply = call(qs.GetFeedCompleteness, pb.GetFeedCompletenessRequest(start_ns=T0, end_ns=minute(180)))
    assert [(f.exchange, list(f.symbols), counts(f.counts)) for f in reply.feeds] == [
        (EXCHANGE, ["BTC-USDT", "ETH-USDT"], (176 + 29, 0, 2, 3, 0))
    ]


def test_the_store_is_asked_with_text_quoted() -> None:
    cut = HistoryCut(minute(10), {("a'b", "X-Y"): minute(20)})
    window = HistoryWindow(cut, T0, minute(30), frozenset({"a'b"}))
    where = window.where()
    assert "'a''b'" in where
    assert "a'b'" not in where.replace("'a''b'", "")
