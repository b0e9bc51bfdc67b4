"""The writer against real Redis and QuestDB: exactly once, idempotent replays, poison entries, restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from tickstrata.common.events import Candle, CandleSource, Side, Trade
from tickstrata.common.streams import WRITER_GROUP, decode_dead_letter, xadd_args
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.writer.consumer import ConsumerConfig, StreamConsumer
from tickstrata.writer.questdb_sink import IlpWriter, QuestDBRest
from tickstrata.writer.tables import TableColumns

pytestmark = pytest.mark.integration

TS0_NS = 1_717_000_000_000_000_000
WAIT_SECS = 60.0


def _exchange() -> str:
    # A fresh exchange id per test isolates its rows in the session's shared tables.
    return "w" + uuid.uuid4().hex[:12]


def _trades(exchange: str, first: int, count: int) -> list[Trade]:
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


def _publish(client: redis.Redis, trades: list[Trade], per_entry: int = 50) -> None:
    for start in range(0, len(trades), per_entry):
        client.xadd(*xadd_args(trades[start : start + per_entry]))


def _rows(questdb: QuestDBServer, exchange: str) -> list[list[Any]]:
    sql = (
        "SELECT trade_id, price, size, side, ts_recv_ns, backfilled, cast(ts AS LONG) "
        f"FROM trades WHERE exchange = '{exchange}' ORDER BY ts"
    )
    dataset: list[list[Any]] = questdb.exec_sql(sql)["dataset"]
    return dataset


def _wal_applied(questdb: QuestDBServer) -> bool:
    rows = questdb.exec_sql("SELECT writerTxn, sequencerTxn, suspended FROM wal_tables() WHERE name = 'trades'")
    [[writer_txn, sequencer_txn, suspended]] = rows["dataset"]
    assert not suspended
    return bool(writer_txn == sequencer_txn)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_SECS} s waiting for {what}")
        time.sleep(0.1)


def _assert_exact(questdb: QuestDBServer, trades: list[Trade]) -> None:
    expected = [
        [t.trade_id, float(t.price), float(t.size), t.side.value, t.ts_recv_ns, t.backfilled, t.ts_event_ns]
        for t in trades
    ]
    assert _rows(questdb, trades[0].exchange) == expected


def _text(value: object) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def _pending(client: redis.Redis, stream: str) -> int:
    summary: Any = client.xpending(stream, WRITER_GROUP)
    return int(summary["pending"])


class _Writer:
    """An in-process consumer with the app's QuestDB path (ILP write, then the suspended-table check)."""

    def __init__(self, redis_url: str, questdb_url: str) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        self.rest = QuestDBRest(questdb_url)
        self.ilp = IlpWriter(questdb_url)
        config = ConsumerConfig(consumer_name="test-writer", batch_entries=3, block_ms=100, janitor_interval_secs=0.5)
        self.consumer = StreamConsumer(self.redis, self._write, config)

    async def _write(self, batches: Sequence[TableColumns]) -> None:
        await asyncio.to_thread(self.ilp.write, batches)
        assert not await self.rest.suspended_tables([b.table for b in batches])

    async def close(self) -> None:
        self.ilp.close()
        await self.rest.close()
        await self.redis.aclose()


@pytest.fixture
async def writer(redis_server: RedisServer, questdb_server: QuestDBServer) -> AsyncIterator[_Writer]:
    instance = _Writer(redis_server.url, questdb_server.http_url)
    await instance.rest.create_tables()
    try:
        yield instance
    finally:
        await instance.close()


async def _run_until(writer: _Writer, condition: Callable[[], bool], what: str) -> None:
    task = asyncio.create_task(writer.consumer.run())
    try:
        await asyncio.to_thread(_wait_until, condition, what)
    finally:
        writer.consumer.request_stop()
        await asyncio.wait_for(task, 30)


async def test_every_trade_once_replays_dedup_and_poison_is_dead_lettered(
    writer: _Writer, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = _exchange()
    trades = _trades(exchange, 0, 300)
    stream = xadd_args(trades[:1]).name
    _publish(redis_client, trades[:100])
    poison_id = redis_client.xadd(stream, {b"v": b"1", b"d": b"\xc1 not msgpack"})
    _publish(redis_client, trades[100:])
    candle = Candle(
        exchange=exchange, symbol="BTC-USDT", interval_secs=60, open_time_ns=TS0_NS, open=Decimal("1.5"),
        high=Decimal("2"), low=Decimal("1"), close=Decimal("1.75"), volume=Decimal("10"), quote_volume=None,
        trade_count=None, closed=True, source=CandleSource.BUILT, ts_event_ns=TS0_NS + 60, ts_recv_ns=TS0_NS + 61,
    )  # fmt: skip
    redis_client.xadd(*xadd_args([candle]))

    await _run_until(writer, lambda: len(_rows(questdb_server, exchange)) == 300, "300 trades")
    _assert_exact(questdb_server, trades)
    candles = questdb_server.exec_sql(f"SELECT close, closed, source FROM candles WHERE exchange = '{exchange}'")
    assert candles["dataset"] == [[1.75, True, "built"]]
    assert _pending(redis_client, stream) == 0
    dead_letters: Any = redis_client.xrange("dlq:writer")
    [(_, fields)] = dead_letters
    dead = decode_dead_letter(fields)
    assert (dead.source_stream, dead.entry_id) == (stream, _text(poison_id))
    assert dead.reason.startswith("bad_events")

    # The same events published again (a collector replay, a backfill) add no rows.
    _publish(redis_client, trades, per_entry=70)
    await _run_until(writer, lambda: _pending(redis_client, stream) == 0 and _wal_applied(questdb_server), "replay")
    _assert_exact(questdb_server, trades)
    assert redis_client.xlen("dlq:writer") == 1


def _start_writer_process(redis_server: RedisServer, questdb_server: QuestDBServer) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WRITER_REDIS_URL": redis_server.url,
        "WRITER_QUESTDB_HTTP_URL": questdb_server.http_url,
        "WRITER_HEALTH_PORT": "0",
        "WRITER_CONSUMER_NAME": "writer-0",
        "WRITER_BATCH_ENTRIES": "2",
        "WRITER_BLOCK_MS": "100",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tickstrata", "writer"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def test_writer_killed_mid_way_loses_nothing(
    redis_server: RedisServer, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = _exchange()
    trades = _trades(exchange, 0, 2000)
    stream = xadd_args(trades[:1]).name
    _publish(redis_client, trades[:1000], per_entry=10)
    process = _start_writer_process(redis_server, questdb_server)
    try:
        _wait_until(lambda: len(_rows(questdb_server, exchange)) > 0, "the first rows")
        process.send_signal(signal.SIGKILL)  # in the middle of the backlog: entries are pending, unacked
        process.wait(10)
        _publish(redis_client, trades[1000:], per_entry=10)
        process = _start_writer_process(redis_server, questdb_server)
        _wait_until(lambda: len(_rows(questdb_server, exchange)) == 2000, "all 2000 trades")
        _wait_until(lambda: _pending(redis_client, stream) == 0, "an empty pending list")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    _wait_until(lambda: _wal_applied(questdb_server), "WAL apply")
    _assert_exact(questdb_server, trades)
