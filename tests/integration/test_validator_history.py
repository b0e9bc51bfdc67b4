"""QualityService answers windows older than the in-memory horizon from the real QuestDB ledger.

The scenario of `tests/unit/validator/_history.py`: a ledger's rows are written through `QualityStore.write` (two
flushes of the same buckets, the second winning under the table's dedup keys; an earlier run's instrument the book
no longer tracks; stale rows the fresher book must win over), then the book forgets everything before its horizon
and QualityService is called in-process on a fixed clock. Every count and state must come back exactly, the same
as the Python mirror of the SQL answers, and a QuestDB that does not answer is UNAVAILABLE.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.integration.writer_harness import select, wait_until, wal_applied
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
from tickstrata.common.questdb_schema import QUALITY_BUCKETS_TABLE
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.quality.v1 import quality_service_pb2 as pb
from tickstrata.validator.servicer import HOUR_NS, QualityService
from tickstrata.validator.store import QualityStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def written(questdb_server: QuestDBServer) -> AsyncIterator[tuple[str, QualityStore]]:
    """An exchange of its own (the ledger table is shared by the session) with the scenario's rows in QuestDB."""
    exchange = f"hist{uuid.uuid4().hex[:10]}"
    store = QualityStore(questdb_server.http_url)
    try:
        await store.create_tables()
        for batch in store_rows(exchange):
            await store.write(batch, [], [], NOW)
        wait_until(lambda: wal_applied(questdb_server, QUALITY_BUCKETS_TABLE), "the bucket rows to be applied")
        yield exchange, store
    finally:
        await store.close()


def counts(message: pb.BucketCounts) -> tuple[int, int, int, int, int]:
    return message.present, message.backfilled, message.exchange_empty, message.missing, message.pending


async def completeness(service: QualityService, exchange: str, symbol: str, start: int, end: int) -> Any:
    request = pb.GetCompletenessRequest(exchange=exchange, symbol=symbol, start_ns=start, end_ns=end)
    return await service.GetCompleteness(request, FakeContext())  # type: ignore[arg-type]


async def bucket_rows(service: QualityService, page_size: int, **request: Any) -> list[pb.HourBuckets]:
    rows: list[pb.HourBuckets] = []
    token = ""
    while True:
        reply = await service.ListBuckets(
            pb.ListBucketsRequest(page_size=page_size, page_token=token, **request),
            FakeContext(),  # type: ignore[arg-type]
        )
        rows.extend(reply.rows)
        token = reply.next_page_token
        if not token:
            return rows


async def test_windows_before_the_horizon_come_back_exactly_from_questdb(
    questdb_server: QuestDBServer, written: tuple[str, QualityStore]
) -> None:
    exchange, store = written
    book, _ = ledger_book(exchange, forget=True)
    assert book.ledgers[(exchange, "BTC-USDT")].first_minute_ns == minute(HORIZON_MINUTE)
    qs = QualityService(book, store, clock_ns=lambda: NOW)
    mirror = QualityService(ledger_book(exchange, forget=True)[0], FakeStore(store_rows(exchange)),  # type: ignore[arg-type]
                            clock_ns=lambda: NOW)  # fmt: skip

    # One row per bucket: the second flush replaced the first (pending minutes became final), not added to it.
    [[rows, buckets]] = select(
        questdb_server,
        f"SELECT count(), count_distinct(concat(symbol, cast(ts AS LONG))) FROM {QUALITY_BUCKETS_TABLE} "
        f"WHERE exchange = '{exchange}'",
    )
    assert rows == buckets == 191 + 40 + 10 + 10  # BTC -1..189, ETH 150..189 and 140..149, SOL 10..19

    cases = [
        ("BTC-USDT", T0, minute(60), (59, 0, 0, 1, 0), T0),  # before the horizon: QuestDB alone
        ("BTC-USDT", T0 - HOUR_NS, minute(180), (176, 0, 2, 3, 0), minute(-1)),  # straddling
        ("BTC-USDT", minute(HORIZON_MINUTE), minute(180), (59, 0, 0, 1, 0), minute(HORIZON_MINUTE)),  # the book
        ("ETH-USDT", T0, minute(180), (39, 0, 0, 1, 0), minute(140)),  # QuestDB before its own first minute
        ("SOL-USDT", T0, minute(180), (9, 0, 0, 1, 0), minute(10)),  # no longer tracked: QuestDB only
    ]
    for symbol, start, end, expected, counted_start in cases:
        reply = await completeness(qs, exchange, symbol, start, end)
        assert (counts(reply.counts), reply.start_ns, reply.end_ns) == (expected, counted_start, end), symbol
        assert reply == await completeness(mirror, exchange, symbol, start, end)
    with pytest.raises(AbortedError) as unknown:
        await completeness(qs, exchange, "XRP-USDT", T0, minute(180))
    assert unknown.value.code is grpc.StatusCode.NOT_FOUND

    feed_request = pb.GetFeedCompletenessRequest(exchanges=[exchange], start_ns=T0, end_ns=minute(180))
    feed = await qs.GetFeedCompleteness(feed_request, FakeContext())  # type: ignore[arg-type]
    [entry] = feed.feeds
    assert list(entry.symbols) == ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    assert counts(entry.counts) == (176 + 39 + 9, 0, 2, 2 + 1 + 1, 0)
    assert feed == await mirror.GetFeedCompleteness(feed_request, FakeContext())  # type: ignore[arg-type]

    window = {"exchange": exchange, "start_ns": T0 - HOUR_NS, "end_ns": minute(180)}
    listed = await bucket_rows(qs, 1000, **window)
    assert [(r.symbol, r.hour_start_ns) for r in listed] == [
        (symbol, T0 + h * HOUR_NS) for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT") for h in range(-1, 3)
    ]
    assert listed == await bucket_rows(mirror, 1000, **window)
    assert listed == await bucket_rows(qs, 5, **window)
    btc_first_hour = listed[1].states
    assert btc_first_hour[30] == pb.BUCKET_STATE_MISSING
    assert {btc_first_hour[m] for m in range(60) if m != 30} == {pb.BUCKET_STATE_PRESENT}
    assert listed[2].states[35] == listed[2].states[40] == pb.BUCKET_STATE_EXCHANGE_EMPTY
    assert listed[0].states == bytes(59 * [0] + [pb.BUCKET_STATE_MISSING])  # minute -1, partly watched
    eth_last_hour = listed[7].states
    assert eth_last_hour[:30] == bytes(20 * [0]) + bytes(10 * [pb.BUCKET_STATE_PRESENT])
    assert eth_last_hour[ETH_FIRST - 120] == pb.BUCKET_STATE_MISSING
    assert eth_last_hour[40] == pb.BUCKET_STATE_PRESENT  # the book wins over the stale row
    assert listed[9].states == bytes(10 * [0] + [pb.BUCKET_STATE_MISSING] + 9 * [pb.BUCKET_STATE_PRESENT] + 40 * [0])


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_questdb_that_does_not_answer_is_unavailable_for_older_windows_only() -> None:
    book, _ = ledger_book("binance", forget=True)
    store = QualityStore(f"http://127.0.0.1:{_closed_port()}")
    qs = QualityService(book, store, clock_ns=lambda: NOW)
    try:
        inside = await completeness(qs, "binance", "BTC-USDT", minute(HORIZON_MINUTE), minute(180))
        assert counts(inside.counts) == (59, 0, 0, 1, 0)
        with pytest.raises(AbortedError) as failed:
            await completeness(qs, "binance", "BTC-USDT", T0, minute(180))
        assert failed.value.code is grpc.StatusCode.UNAVAILABLE
        assert "QuestDB" in str(failed.value)
        with pytest.raises(AbortedError) as listing:
            await bucket_rows(qs, 100, exchange="binance", symbols=["BTC-USDT"], start_ns=T0, end_ns=minute(180))
        assert listing.value.code is grpc.StatusCode.UNAVAILABLE
    finally:
        await store.close()
