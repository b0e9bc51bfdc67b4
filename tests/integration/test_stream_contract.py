"""The stream contract against real Redis and QuestDB: nothing unconsumed is deleted, a full Redis slows producers
instead of dropping history, and any loss that happens anyway is visible (ERROR log, counter, gap event)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from tests.integration.writer_harness import (
    InProcessWriter,
    new_exchange,
    run_until,
    select,
    spans,
    tracer_provider,
    wait_until,
    writer,
)
from tickstrata.collector.publisher import Publisher
from tickstrata.common.events import Event, Gap, GapKind, Quote, Side, Trade
from tickstrata.common.streams import GAP_STREAM, WRITER_GROUP, decode_entry, xadd_args
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer

pytestmark = pytest.mark.integration

__all__ = ["spans", "tracer_provider", "writer"]  # fixtures, used by name

SYMBOLS = ("BTC-USDT", "ETH-USDT")


def live_trades(exchange: str, count: int, *, first: int = 0) -> list[Trade]:
    """Trades stamped now, one microsecond apart: a lost entry's gap window (from its stream id) holds them."""
    ts0_ns = time.time_ns()
    return [
        Trade(
            exchange=exchange,
            symbol=SYMBOLS[i % 2],
            trade_id=str(i),
            price=Decimal("64000.5") + i,
            size=Decimal("0.001"),
            side=Side.BUY,
            ts_event_ns=ts0_ns + i * 1000,
            ts_recv_ns=ts0_ns + i * 1000 + 500,
        )
        for i in range(first, first + count)
    ]


def live_quotes(exchange: str, count: int) -> list[Quote]:
    ts0_ns = time.time_ns()
    return [
        Quote(
            exchange=exchange,
            symbol=SYMBOLS[i % 2],
            bid_price=Decimal("100.5"),
            bid_size=Decimal(1),
            ask_price=Decimal("100.6"),
            ask_size=Decimal(2),
            ts_event_ns=ts0_ns + i * 1000,
            ts_recv_ns=ts0_ns + i * 1000 + 500,
        )
        for i in range(count)
    ]


def stored_trade_ids(questdb: QuestDBServer, exchange: str) -> list[int]:
    rows = select(questdb, f"SELECT trade_id FROM trades WHERE exchange = '{exchange}'")
    return sorted(int(row[0]) for row in rows)


def gaps(client: redis.Redis, exchange: str, kind: GapKind) -> list[Gap]:
    entries: Any = client.xrange(GAP_STREAM)
    found = [event for _, fields in entries for event in decode_entry(fields).events]
    return [g for g in found if isinstance(g, Gap) and g.exchange == exchange and g.kind is kind]


@pytest.fixture
def metric_reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    yield reader
    reader.shutdown()


def metric_points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


async def publish_all(publisher: Publisher, events: list[Event]) -> None:
    """Run the collector's publisher until every event is in Redis."""
    task = asyncio.create_task(publisher.run())
    try:
        await publisher.put_many(events)
        deadline = time.monotonic() + 60
        while publisher.published_events < len(events):
            assert time.monotonic() < deadline, f"published {publisher.published_events} of {len(events)}"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()


def new_publisher(client: aioredis.Redis, exchange: str, *, batch_events: int, queue_events: int = 10_000) -> Publisher:
    provider = TracerProvider()
    return Publisher(
        client,
        exchange=exchange,
        queue_events=queue_events,
        batch_events=batch_events,
        tracer=provider.get_tracer("collector"),
        meter=MeterProvider().get_meter("collector"),
    )


async def test_a_stopped_writer_loses_nothing_however_far_behind_it_falls(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    # The case that lost 3,978 of 5,000 trades: the writer stops after 10 entries, the collector publishes on.
    # One entry per trade: 6,000 entries, three times the 2,000-entry bound a MAXLEN used to enforce.
    exchange = new_exchange()
    trades = live_trades(exchange, 6000)
    stream = xadd_args(trades[:1]).name
    publisher = new_publisher(writer.redis, exchange, batch_events=1)
    await publish_all(publisher, list(trades[:10]))
    await run_until(writer, lambda: len(stored_trade_ids(questdb_server, exchange)) == 10, "the first 10 trades")

    await publish_all(publisher, list(trades[10:]))
    assert redis_client.xlen(stream) >= 5990  # all still there (the 10 stored ones may have been trimmed)
    info: Any = redis_client.xinfo_stream(stream)
    assert int(info["entries-added"]) == 6000
    assert info["max-deleted-entry-id"] <= info["first-entry"][0]  # nothing unconsumed was deleted

    def all_stored_and_trimmed() -> bool:
        return stored_trade_ids(questdb_server, exchange) == list(range(6000)) and redis_client.xlen(stream) < 1000

    await run_until(writer, all_stored_and_trimmed, "every trade once, then the trim", batch_entries=500)
    assert gaps(redis_client, exchange, GapKind.STREAM_LOSS) == []


async def test_entries_deleted_before_the_writer_acknowledged_them_are_logged_counted_and_published_as_gaps(
    writer: InProcessWriter,
    redis_client: redis.Redis,
    questdb_server: QuestDBServer,
    metric_reader: InMemoryMetricReader,
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = new_exchange()
    trades = live_trades(exchange, 20)
    stream = xadd_args(trades[:1]).name
    ids = [redis_client.xadd(*xadd_args([trade])) for trade in trades]
    # A writer read 5 entries and died before storing them; then someone forced a trim of the whole stream.
    redis_client.xgroup_create(stream, WRITER_GROUP, id="0")
    redis_client.xreadgroup(WRITER_GROUP, "test-writer", {stream: ">"}, count=5)
    redis_client.xtrim(stream, maxlen=0, approximate=False)

    meter = MeterProvider(metric_readers=[metric_reader]).get_meter("writer")
    with caplog.at_level(logging.ERROR, logger="tickstrata.common.consumer_group"):
        await run_until(
            writer,
            lambda: len(gaps(redis_client, exchange, GapKind.STREAM_LOSS)) == 2,
            "two stream_loss gaps",
            meter=meter,
        )
    lost = gaps(redis_client, exchange, GapKind.STREAM_LOSS)
    for trade in trades:  # every lost trade lies inside a published window
        assert any(g.start_ns <= trade.ts_event_ns < g.end_ns for g in lost), trade
    assert all(g.data_type == "trades" and g.symbol is None for g in lost)
    causes = sorted(g.cause.split(" (")[0] for g in lost)
    assert causes == ["deleted before delivery", "deleted while pending"]
    counted = {p.attributes["cause"]: p.value for p in metric_points(metric_reader, "tickstrata.stream.lost_entries")}
    assert counted == {"deleted while pending": 5, "deleted before delivery": 15}
    errors = [r for r in caplog.records if r.message == "stream entries lost before they were acknowledged"]
    assert sorted(r.__dict__["entries"] for r in errors) == [5, 15]
    assert int(redis_client.xpending(stream, WRITER_GROUP)["pending"]) == 0  # never a silent XACK: acked once logged
    assert ids  # the entries existed

    # The group moved past the deleted range: new entries are stored, and no loss is reported twice.
    more = live_trades(exchange, 3, first=100)
    for trade in more:
        redis_client.xadd(*xadd_args([trade]))
    await run_until(writer, lambda: stored_trade_ids(questdb_server, exchange) == [100, 101, 102], "the next trades")
    assert len(gaps(redis_client, exchange, GapKind.STREAM_LOSS)) == 2


async def test_lag_gauges_rise_while_the_writer_is_behind_and_fall_to_zero(
    writer: InProcessWriter,
    redis_client: redis.Redis,
    questdb_server: QuestDBServer,
    metric_reader: InMemoryMetricReader,
) -> None:
    exchange = new_exchange()
    trades = live_trades(exchange, 30)
    stream = xadd_args(trades[:1]).name
    redis_client.xgroup_create(stream, WRITER_GROUP, id="0", mkstream=True)
    for trade in trades:
        redis_client.xadd(*xadd_args([trade]))
    redis_client.xreadgroup(WRITER_GROUP, "test-writer", {stream: ">"}, count=10)  # 10 pending, 20 behind

    meter = MeterProvider(metric_readers=[metric_reader]).get_meter("writer")
    consumer = writer.new_consumer(meter=meter)
    await consumer.group.run_janitor()  # one sample, before anything is processed

    def gauge(reader: InMemoryMetricReader, name: str) -> float:
        [point] = [p for p in metric_points(reader, name) if p.attributes["stream"] == stream]
        assert point.attributes["group"] == WRITER_GROUP
        return float(point.value)

    assert gauge(metric_reader, "tickstrata.stream.pending_entries") == 10
    assert gauge(metric_reader, "tickstrata.stream.behind_entries") == 20
    assert gauge(metric_reader, "tickstrata.stream.oldest_pending_age_seconds") >= 0
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.to_thread(wait_until, lambda: len(stored_trade_ids(questdb_server, exchange)) == 30, "30 trades")
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 30)
    after = InMemoryMetricReader()  # a fresh consumer's sample: the lag is gone
    await writer.new_consumer(meter=MeterProvider(metric_readers=[after]).get_meter("writer")).group.run_janitor()
    assert gauge(after, "tickstrata.stream.pending_entries") == 0
    assert gauge(after, "tickstrata.stream.behind_entries") == 0
    assert gauge(after, "tickstrata.stream.oldest_pending_age_seconds") == 0
    after.shutdown()


async def test_a_full_redis_slows_producers_keeps_every_trade_and_publishes_each_dropped_quote_window(
    tmp_path: Path, questdb_server: QuestDBServer, tracer_provider: TracerProvider
) -> None:
    exchange = new_exchange()
    trades = live_trades(exchange, 20_000)
    quotes = live_quotes(exchange, 20_000)
    interleaved: list[Event] = [event for pair in zip(trades, quotes, strict=True) for event in pair]
    with RedisServer(tmp_path / "redis", maxmemory_bytes=2 * 1024 * 1024) as server:
        client = redis.Redis.from_url(server.url)
        trade_stream, quote_stream = xadd_args(trades[:1]).name, xadd_args(quotes[:1]).name
        for stream in (trade_stream, quote_stream):  # the writer's group exists: the streams are owed to it
            client.xgroup_create(stream, WRITER_GROUP, id="0", mkstream=True)
        instance = InProcessWriter(server.url, questdb_server.http_url, tracer_provider.get_tracer("writer"))
        await instance.sink.create_tables()
        publisher = new_publisher(instance.redis, exchange, batch_events=100, queue_events=2000)
        task = asyncio.create_task(publisher.run())
        producer = asyncio.create_task(publisher.put_many(interleaved))
        try:
            # No consumer yet: Redis fills up, refuses writes, the publisher backs off and quotes give way.
            await asyncio.to_thread(wait_until, lambda: publisher.dropped_events > 0, "quotes dropped")
            assert not producer.done()  # trades wait: the producer is held back, not dropping them
            used: Any = client.info("memory")
            assert int(used["used_memory"]) <= int(used["maxmemory"]) * 1.1

            def every_trade_stored() -> bool:
                return producer.done() and len(stored_trade_ids(questdb_server, exchange)) == len(trades)

            await run_until(instance, every_trade_stored, "every trade", batch_entries=100)
            await producer
            await asyncio.to_thread(wait_until, lambda: publisher.queued_events == 0, "the queue drained")
            await run_until(
                instance,
                lambda: (
                    int(client.xinfo_groups(quote_stream)[0]["pending"]) == 0
                    and int(client.xinfo_groups(quote_stream)[0]["lag"] or 0) == 0
                ),
                "the quotes drained",
                batch_entries=100,
            )
            assert stored_trade_ids(questdb_server, exchange) == list(range(len(trades)))
            stored = {
                (row[0], row[1])
                for row in select(
                    questdb_server, f"SELECT symbol, cast(ts AS LONG) FROM quotes WHERE exchange = '{exchange}'"
                )
            }
            dropped = [q for q in quotes if (q.symbol, q.ts_event_ns) not in stored]
            windows = gaps(client, exchange, GapKind.BACKPRESSURE)
            # A pipeline refused half-way has stored part of what is then shed, so the gaps may also cover some
            # stored quotes (conservative), never the other way round.
            assert 0 < len(dropped) <= publisher.dropped_events
            for quote in dropped:
                assert any(g.symbol == quote.symbol and g.start_ns <= quote.ts_event_ns < g.end_ns for g in windows), (
                    quote
                )
            sent_ts = {(q.symbol, q.ts_event_ns) for q in quotes}
            dropped_ts = sorted(q.ts_event_ns for q in dropped)
            for gap in windows:  # exact half-open windows: from a quote it let go to 1 ns after one, holding a lost one
                assert gap.data_type == "quotes"
                assert (gap.symbol, gap.start_ns) in sent_ts
                assert (gap.symbol, gap.end_ns - 1) in sent_ts
                assert any(gap.start_ns <= ts < gap.end_ns for ts in dropped_ts)
        finally:
            producer.cancel()
            task.cancel()
            await asyncio.gather(producer, task, return_exceptions=True)
            await instance.close()
            client.close()
