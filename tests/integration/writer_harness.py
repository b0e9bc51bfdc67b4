"""The writer in-process against real Redis and QuestDB, for the integration tests: publish, run, read back.

`writer` runs the real `StreamConsumer` with the app's QuestDB path (ILP write, then the suspended-table check)
and an in-memory span exporter; `run_until` runs a fresh consumer (a restart under the same name) until a
condition holds. Each test isolates its rows in the session's shared tables with a fresh exchange id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tickstrata.common.events import Event, Side, Trade
from tickstrata.common.streams import WRITER_GROUP, xadd_args
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.writer.consumer import ConsumerConfig, StreamConsumer
from tickstrata.writer.questdb_sink import QuestDBSink

TS0_NS = 1_717_000_000_000_000_000
WAIT_SECS = 60.0


def new_exchange() -> str:
    """A fresh exchange id: isolates a test's rows in the session's shared tables."""
    return "w" + uuid.uuid4().hex[:12]


def make_trades(exchange: str, first: int, count: int) -> list[Trade]:
    return [
        Trade(
            exchange=exchange,
            symbol="BTC-USDT",
            trade_id=str(i),
            price=Decimal("64123.45") + Decimal(i) / 100,
            size=Decimal("0.00120000"),
            side=Side.BUY if i % 2 else Side.SELL,
            ts_event_ns=TS0_NS + i * 1_000_000 + 7,  # odd nanoseconds: the designated timestamp keeps them
            ts_recv_ns=TS0_NS + i * 1_000_000 + 999,
        )
        for i in range(first, first + count)
    ]


def publish(client: redis.Redis, events: Sequence[Event], per_entry: int = 50) -> None:
    for start in range(0, len(events), per_entry):
        client.xadd(*xadd_args(events[start : start + per_entry]))


def trade_rows(questdb: QuestDBServer, exchange: str) -> list[list[Any]]:
    sql = (
        "SELECT trade_id, price, size, side, ts_recv_ns, backfilled, cast(ts AS LONG) "
        f"FROM trades WHERE exchange = '{exchange}' ORDER BY ts"
    )
    dataset: list[list[Any]] = questdb.exec_sql(sql)["dataset"]
    return dataset


def select(questdb: QuestDBServer, sql: str) -> list[list[Any]]:
    dataset: list[list[Any]] = questdb.exec_sql(sql)["dataset"]
    return dataset


def wal_applied(questdb: QuestDBServer, table: str = "trades") -> bool:
    rows = questdb.exec_sql(f"SELECT writerTxn, sequencerTxn, suspended FROM wal_tables() WHERE name = '{table}'")
    [[writer_txn, sequencer_txn, suspended]] = rows["dataset"]
    assert not suspended
    return bool(writer_txn == sequencer_txn)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_SECS} s waiting for {what}")
        time.sleep(0.1)


def assert_exact(questdb: QuestDBServer, trades: list[Trade]) -> None:
    expected = [
        [t.trade_id, float(t.price), float(t.size), t.side.value, t.ts_recv_ns, t.backfilled, t.ts_event_ns]
        for t in trades
    ]
    assert trade_rows(questdb, trades[0].exchange) == expected


def text(value: object) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def pending(client: redis.Redis, stream: str) -> int:
    summary: Any = client.xpending(stream, WRITER_GROUP)
    return int(summary["pending"])


def drained(client: redis.Redis, stream: str) -> bool:
    """Every entry of `stream` so far delivered to the writer group and acknowledged (not merely: none pending)."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:
        return False  # no stream yet
    info: Any = client.xinfo_stream(stream)
    for group in groups:
        if text(group["name"]) == WRITER_GROUP:
            return bool(group["last-delivered-id"] == info["last-generated-id"] and int(group["pending"]) == 0)
    return False  # the writer has not discovered the stream yet


class InProcessWriter:
    """An in-process consumer with the app's QuestDB path (`QuestDBSink`: ILP write, then the suspended check)."""

    def __init__(self, redis_url: str, questdb_url: str, tracer: trace.Tracer) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.sink = QuestDBSink(questdb_url)
        self.tracer = tracer
        self.consumer = self.new_consumer()

    def new_consumer(self, *, batch_entries: int = 3, meter: metrics.Meter | None = None) -> StreamConsumer:
        """A consumer stops for good once asked to; each run gets a new one (the same name: a restart)."""
        config = ConsumerConfig(
            consumer_name="test-writer", batch_entries=batch_entries, block_ms=100, janitor_interval_secs=0.5
        )
        return StreamConsumer(self.redis, self.sink.write, config, tracer=self.tracer, meter=meter)

    async def close(self) -> None:
        await self.sink.close()
        await self.redis.aclose()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def tracer_provider(spans: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider
    provider.shutdown()


@pytest.fixture
async def writer(
    redis_server: RedisServer, questdb_server: QuestDBServer, tracer_provider: TracerProvider
) -> AsyncIterator[InProcessWriter]:
    instance = InProcessWriter(redis_server.url, questdb_server.http_url, tracer_provider.get_tracer("writer"))
    await instance.sink.create_tables()
    try:
        yield instance
    finally:
        await instance.close()


async def run_until(
    writer: InProcessWriter,
    condition: Callable[[], bool],
    what: str,
    *,
    batch_entries: int = 3,
    meter: metrics.Meter | None = None,
) -> None:
    writer.consumer = writer.new_consumer(batch_entries=batch_entries, meter=meter)
    task = asyncio.create_task(writer.consumer.run())
    try:
        await asyncio.to_thread(wait_until, condition, what)
    finally:
        writer.consumer.request_stop()
        await asyncio.wait_for(task, 30)
