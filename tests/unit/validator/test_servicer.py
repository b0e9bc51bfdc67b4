"""QualityService over an in-memory ledger: windows, status codes, paging and the heatmap rows."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from tests.unit.common._samples import trade
from tests.unit.validator._grpc_fakes import AbortedError, FakeContext
from tickstrata.common.events import DataType, Gap, GapKind
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.validator.book import BookConfig, LedgerBook
from tickstrata.validator.ledger import MINUTE_NS
from tickstrata.validator.servicer import HOUR_NS, QualityService

SEC = 1_000_000_000
T0 = 1_800_000_000 * SEC // HOUR_NS * HOUR_NS  # a whole hour
NOW = T0 + 10 * MINUTE_NS + 30 * SEC


def service() -> QualityService:
    """BTC-USDT traded in minutes 0-9 except 4; a feed-wide disconnect touched minute 6."""
    book = LedgerBook(BookConfig(grace_ns=SEC))
    book.observe_trade(trade(ts_event_ns=T0 - MINUTE_NS + 1, trade_id="0"))
    for i in (0, 1, 2, 3, 5, 6, 7, 8, 9):
        book.observe_trade(trade(ts_event_ns=T0 + i * MINUTE_NS + 5, trade_id=str(i + 1)))
    gap = Gap("binance", DataType.TRADES, None, GapKind.DISCONNECT, T0 + 6 * MINUTE_NS + 1, T0 + 6 * MINUTE_NS + 9,
              "close code 1006", NOW)  # fmt: skip
    book.observe_gap(gap, NOW)
    book.caught_up_ns = NOW
    return QualityService(book, store=None, clock_ns=lambda: NOW)  # type: ignore[arg-type]  # no violations read


def call(method: Any, request: Any) -> Any:
    return asyncio.run(method(request, FakeContext()))


def test_completeness_counts_every_judged_minute_and_names_the_watermark() -> None:
    reply = call(service().GetCompleteness, pb.GetCompletenessRequest(exchange="binance", symbol="BTC-USDT",
                                                                        start_ns=T0, end_ns=T0 + HOUR_NS))  # fmt: skip
    counts = reply.counts
    # Minutes 0-9 are judged (the watermark is 10:29): 4 and 6 are missing; 10 onwards pending.
    assert (counts.present, counts.missing, counts.pending) == (8, 2, 50)
    assert reply.completeness_percent == "80.000000"
    assert reply.watermark_ns == NOW - SEC


def test_errors_carry_the_status_the_proto_promises() -> None:
    qs = service()
    with pytest.raises(AbortedError) as unknown:
        call(qs.GetCompleteness, pb.GetCompletenessRequest(exchange="binance", symbol="ETH-USDT", start_ns=T0))
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(AbortedError) as inverted:
        call(qs.GetCompleteness, pb.GetCompletenessRequest(exchange="binance", symbol="BTC-USDT", start_ns=NOW,
                                                            end_ns=T0))  # fmt: skip
    assert inverted.value.code is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(AbortedError) as bad_token:
        call(qs.ListGaps, pb.ListGapsRequest(start_ns=T0, page_token="garbage"))
    assert bad_token.value.code is grpc.StatusCode.INVALID_ARGUMENT


def test_bucket_rows_list_each_minute_up_to_the_window_end_and_nothing_after() -> None:
    reply = call(service().ListBuckets, pb.ListBucketsRequest(exchange="binance", start_ns=T0, end_ns=NOW))
    [row] = reply.rows
    assert row.hour_start_ns == T0
    assert len(row.states) == 60
    assert row.states[4] == pb.BUCKET_STATE_MISSING
    assert row.states[6] == pb.BUCKET_STATE_MISSING
    assert row.states[5] == pb.BUCKET_STATE_PRESENT
    assert row.states[10] == pb.BUCKET_STATE_PENDING  # the minute in progress at the window's end
    assert set(row.states[11:]) == {0}  # after the window: not listed, not "pending"
    assert (row.counts.present, row.counts.missing, row.counts.pending) == (8, 2, 1)


def test_gaps_page_through_in_start_order_and_feed_wide_gaps_match_any_symbol() -> None:
    qs = service()
    first = call(qs.ListGaps, pb.ListGapsRequest(exchange="binance", symbol="BTC-USDT", start_ns=T0, page_size=1))
    assert [g.kind for g in first.gaps] == [pb.GAP_KIND_DISCONNECT]
    assert first.gaps[0].symbol == ""  # the whole feed
    assert first.next_page_token == ""
    feed = call(qs.GetFeedCompleteness, pb.GetFeedCompletenessRequest(start_ns=T0, end_ns=T0 + HOUR_NS))
    [binance] = feed.feeds
    assert (binance.exchange, list(binance.symbols), binance.open_gaps) == ("binance", ["BTC-USDT"], 1)
