"""Each table through the writer against real Redis and QuestDB: candles from every source and their revisions,
backfilled trades, quotes and funding (nanoseconds, NULLs), book snapshots (levels as arrays), replays included."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
import redis

from tests.integration.writer_harness import (
    TS0_NS,
    InProcessWriter,
    drained,
    make_trades,
    new_exchange,
    publish,
    run_until,
    select,
    spans,
    tracer_provider,
    trade_rows,
    wal_applied,
    writer,
)
from tickstrata.common.events import BookLevel, BookSnapshot, Candle, CandleSource, Funding, InstrumentSpec, Quote
from tickstrata.common.streams import xadd_args
from tickstrata.localstack.questdb import QuestDBServer

pytestmark = pytest.mark.integration

__all__ = ["spans", "tracer_provider", "writer"]  # fixtures, used by name


def _candle(exchange: str, minute: int, close: str, *, closed: bool, source: CandleSource, **extra: Any) -> Candle:
    fields: dict[str, Any] = {
        "exchange": exchange, "symbol": "BTC-USDT", "interval_secs": 60, "open_time_ns": TS0_NS + minute * 60 * 10**9,
        "open": Decimal("100.5"), "high": Decimal("101.25"), "low": Decimal("99.75"), "close": Decimal(close),
        "volume": Decimal("12.5"), "quote_volume": Decimal("1250.25"), "trade_count": 17, "closed": closed,
        "source": source, "ts_event_ns": TS0_NS + minute * 60 * 10**9 + 59_999_999_999, "ts_recv_ns": TS0_NS,
    }  # fmt: skip
    fields.update(extra)
    return Candle(**fields)


async def test_candles_from_every_source_and_their_revisions_land_once_and_replays_change_nothing(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()
    history = [
        # minute 0: built from trades while open, then the venue's own candle, then a REST revision of it
        _candle(exchange, 0, "100.9", closed=False, source=CandleSource.BUILT),
        _candle(exchange, 0, "101.0", closed=True, source=CandleSource.WS),
        _candle(exchange, 0, "101.1", closed=True, source=CandleSource.REST, trade_count=18),
        # minute 1: a venue without candles: only built ones, the open one superseded by the closed one
        _candle(exchange, 1, "100.7", closed=False, source=CandleSource.BUILT, quote_volume=None, trade_count=None),
        _candle(exchange, 1, "100.8", closed=True, source=CandleSource.BUILT, quote_volume=None, trade_count=None),
        # minute 2: the venue's stream, open then closed in the same entry
        _candle(exchange, 2, "100.1", closed=False, source=CandleSource.WS),
        _candle(exchange, 2, "100.2", closed=True, source=CandleSource.WS),
    ]
    stream = xadd_args(history[:1]).name
    sql = (
        "SELECT cast(ts AS LONG), close, closed, source, quote_volume, trade_count "
        f"FROM candles WHERE exchange = '{exchange}' ORDER BY ts"
    )
    expected = [
        [TS0_NS, 101.1, True, "rest", 1250.25, 18],
        [TS0_NS + 60 * 10**9, 100.8, True, "built", None, None],  # NULLs, not zeros
        [TS0_NS + 120 * 10**9, 100.2, True, "ws", 1250.25, 17],
    ]
    for entry_sizes in ((1, 1, 1, 1, 1, 2), (7,), (3, 4)):  # the first pass, then two replays cut differently
        start = 0
        for size in entry_sizes:
            redis_client.xadd(*xadd_args(history[start : start + size]))
            start += size
        await run_until(
            writer,
            lambda: drained(redis_client, stream) and wal_applied(questdb_server, "candles"),
            "candles written",
        )
        assert select(questdb_server, sql) == expected


async def test_backfilled_trades_fill_the_gap_without_duplicating_the_live_ones(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()
    trades = make_trades(exchange, 0, 100)
    live = trades[:40] + trades[60:]  # trades 40-59 were lost in a disconnect
    # The backfill fetches the gap's inclusive window, so it overlaps the live trades on both sides.
    backfill = [msgspec.structs.replace(trade, backfilled=True) for trade in trades[35:65]]
    stream = xadd_args(live[:1]).name
    publish(redis_client, live, per_entry=25)
    await run_until(writer, lambda: len(trade_rows(questdb_server, exchange)) == 80, "the live trades")
    publish(redis_client, backfill, per_entry=7)
    publish(redis_client, backfill, per_entry=30)  # and a second backfill of the same window
    await run_until(writer, lambda: drained(redis_client, stream) and wal_applied(questdb_server), "backfill")
    rows = trade_rows(questdb_server, exchange)
    assert [row[0] for row in rows] == [trade.trade_id for trade in trades]  # each trade once, in time order
    assert [row[1] for row in rows] == [float(trade.price) for trade in trades]
    # A row written last by the backfill says so, overlaps included (same trade, same values).
    assert [row[5] for row in rows] == [35 <= i < 65 for i in range(100)]


async def test_quotes_and_funding_keep_nanoseconds_and_nulls(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()
    quotes = [
        Quote(
            exchange=exchange, symbol="ETH-USDT", bid_price=Decimal("3456.78"), bid_size=Decimal("1.50000000"),
            ask_price=Decimal("3456.79"), ask_size=Decimal("0.25"), ts_event_ns=TS0_NS + i, ts_recv_ns=TS0_NS + 999,
        )
        for i in range(1, 4)  # one nanosecond apart: three rows
    ]  # fmt: skip
    funding = Funding(
        exchange=exchange, symbol="ETH-USDT-PERP", rate=Decimal("-0.00012500"), mark_price=None,
        index_price=Decimal("3456.5"), next_funding_time_ns=TS0_NS + 8 * 3600 * 10**9, ts_event_ns=TS0_NS + 5,
        ts_recv_ns=TS0_NS + 6,
    )  # fmt: skip
    publish(redis_client, quotes, per_entry=2)
    redis_client.xadd(*xadd_args([funding]))
    where = f"WHERE exchange = '{exchange}'"

    def written() -> bool:
        return len(select(questdb_server, f"SELECT ts FROM quotes {where}")) == 3 and bool(
            select(questdb_server, f"SELECT ts FROM funding {where}")
        )

    await run_until(writer, written, "quotes and funding")
    assert select(questdb_server, f"SELECT cast(ts AS LONG), bid_price, ask_size FROM quotes {where} ORDER BY ts") == [
        [TS0_NS + i, 3456.78, 0.25] for i in range(1, 4)
    ]
    assert select(
        questdb_server,
        f"SELECT cast(ts AS LONG), rate, mark_price, index_price, next_funding_time_ns FROM funding {where}",
    ) == [[TS0_NS + 5, -0.000125, None, 3456.5, TS0_NS + 8 * 3600 * 10**9]]


async def test_instrument_specs_keep_the_venue_precision_and_a_reload_adds_a_row_valid_from_then(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()

    def spec(symbol: str, loaded_ns: int, price_decimals: int, tick: str) -> InstrumentSpec:
        return InstrumentSpec(
            exchange=exchange, symbol=symbol, price_decimals=price_decimals, size_decimals=3,
            tick_size=Decimal(tick), lot_size=Decimal("0.001"), ts_event_ns=loaded_ns, ts_recv_ns=loaded_ns,
        )  # fmt: skip

    first = [spec("BTC-USDT-PERP", TS0_NS, 2, "0.10"), spec("ETH-USDT-PERP", TS0_NS, 2, "0.01")]
    # A later load: the venue refined BTC's tick. Replaying the first load (a re-delivery) changes nothing.
    later = [spec("BTC-USDT-PERP", TS0_NS + 60 * 10**9, 3, "0.005")]
    publish(redis_client, first, per_entry=2)
    publish(redis_client, later + first, per_entry=1)
    stream = f"md:{exchange}:instruments"
    await run_until(writer, lambda: drained(redis_client, stream) and wal_applied(questdb_server), "instruments")
    assert select(
        questdb_server,
        "SELECT cast(ts AS LONG), symbol, price_decimals, size_decimals, tick_size, lot_size FROM instruments "
        f"WHERE exchange = '{exchange}' ORDER BY symbol, ts",
    ) == [
        [TS0_NS, "BTC-USDT-PERP", 2, 3, "0.10", "0.001"],  # the venue's text, trailing zero kept
        [TS0_NS + 60 * 10**9, "BTC-USDT-PERP", 3, 3, "0.005", "0.001"],
        [TS0_NS, "ETH-USDT-PERP", 2, 3, "0.01", "0.001"],
    ]


def _book(exchange: str, index: int, depth: int, sequence: int | None) -> BookSnapshot:
    def levels(first: Decimal, step: Decimal) -> tuple[BookLevel, ...]:
        return tuple(BookLevel(first + step * i, Decimal("0.00100000") * (i + 1)) for i in range(depth))

    return BookSnapshot(
        exchange=exchange,
        symbol="BTC-USDT",
        bids=levels(Decimal("64000.10") - index, Decimal("-0.1")),
        asks=levels(Decimal("64000.20") - index, Decimal("0.1")) if index % 5 else (),  # an empty side now and then
        sequence=sequence,
        ts_event_ns=TS0_NS + index * 100_000_000 + 3,
        ts_recv_ns=TS0_NS + index * 100_000_000 + 900,
    )


def _levels(levels: tuple[BookLevel, ...]) -> list[list[float]]:
    # QuestDB prints an array with no elements as [] whatever its shape.
    return [[float(level.price) for level in levels], [float(level.size) for level in levels]] if levels else []


async def test_book_snapshots_land_once_with_identical_levels(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()
    books = [_book(exchange, i, depth=10, sequence=None if i % 7 == 0 else 5_000_000 + i) for i in range(30)]
    stream = xadd_args(books[:1]).name
    sql = (
        "SELECT cast(ts AS LONG), bids, asks, sequence, ts_recv_ns "
        f"FROM books WHERE exchange = '{exchange}' ORDER BY ts"
    )
    expected = [
        [book.ts_event_ns, _levels(book.bids), _levels(book.asks), book.sequence, book.ts_recv_ns] for book in books
    ]
    publish(redis_client, books, per_entry=4)
    await run_until(writer, lambda: len(select(questdb_server, sql)) == 30, "30 snapshots")
    publish(redis_client, books, per_entry=9)  # replayed: no new rows
    await run_until(
        writer, lambda: drained(redis_client, stream) and wal_applied(questdb_server, "books"), "the replay"
    )
    assert select(questdb_server, sql) == expected
