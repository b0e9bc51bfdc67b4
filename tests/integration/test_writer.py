"""The writer against real Redis and QuestDB: exactly once, idempotent replays, poison entries, restarts, and one
trace from the collector's publish to the QuestDB write. Per-table round trips are in `test_writer_tables.py`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tickstrata.writer
from tests.integration.writer_harness import (
    TS0_NS,
    InProcessWriter,
    assert_exact,
    drained,
    make_trades,
    new_exchange,
    pending,
    publish,
    run_until,
    select,
    spans,
    text,
    tracer_provider,
    trade_rows,
    wait_until,
    wal_applied,
    writer,
)
from tickstrata.common.events import Candle, CandleSource
from tickstrata.common.streams import decode_dead_letter, encode_dead_letter, encode_entry, xadd_args
from tickstrata.common.telemetry import producer_span
from tickstrata.localstack.paths import cache_dir
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer

pytestmark = pytest.mark.integration

__all__ = ["spans", "tracer_provider", "writer"]  # fixtures, used by name


async def test_every_trade_once_replays_dedup_and_poison_is_dead_lettered(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()
    trades = make_trades(exchange, 0, 300)
    stream = xadd_args(trades[:1]).name
    publish(redis_client, trades[:100])
    poison_id = redis_client.xadd(stream, {b"v": b"1", b"d": b"\xc1 not msgpack"})
    # Well-formed but refused by the entry rules, then dead-lettered alone while the entries read with it in one
    # batch are stored.
    nan_trade = ["t", exchange, "BTC-USDT", "nan-1", "NaN", "1", "buy", TS0_NS, TS0_NS]
    nan_id = redis_client.xadd(stream, {b"v": b"1", b"d": msgspec.msgpack.encode([nan_trade])})
    publish(redis_client, trades[100:])
    candle = Candle(
        exchange=exchange, symbol="BTC-USDT", interval_secs=60, open_time_ns=TS0_NS, open=Decimal("1.5"),
        high=Decimal("2"), low=Decimal("1"), close=Decimal("1.75"), volume=Decimal("10"), quote_volume=None,
        trade_count=None, closed=True, source=CandleSource.BUILT, ts_event_ns=TS0_NS + 60, ts_recv_ns=TS0_NS + 61,
    )  # fmt: skip
    redis_client.xadd(*xadd_args([candle]))

    await run_until(writer, lambda: len(trade_rows(questdb_server, exchange)) == 300, "300 trades")
    assert_exact(questdb_server, trades)
    candles = questdb_server.exec_sql(f"SELECT close, closed, source FROM candles WHERE exchange = '{exchange}'")
    assert candles["dataset"] == [[1.75, True, "built"]]
    assert pending(redis_client, stream) == 0
    dead_letters: Any = redis_client.xrange("dlq:writer")
    dead = [decode_dead_letter(fields) for _, fields in dead_letters]
    assert [(d.source_stream, d.entry_id) for d in dead] == [(stream, text(poison_id)), (stream, text(nan_id))]
    # Garbage fails the decoder; the NaN price fails the entry rules before any column is built.
    assert [d.reason.split(":")[0] for d in dead] == ["bad_events", "number_out_of_range"]

    # The same events published again (a collector replay, a backfill) add no rows.
    publish(redis_client, trades, per_entry=70)
    await run_until(writer, lambda: drained(redis_client, stream) and wal_applied(questdb_server), "replay")
    assert_exact(questdb_server, trades)
    assert redis_client.xlen("dlq:writer") == 2


async def test_one_trace_runs_from_the_publish_through_the_consume_to_the_questdb_write(
    writer: InProcessWriter,
    redis_client: redis.Redis,
    questdb_server: QuestDBServer,
    tracer_provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    exchange = new_exchange()
    trades = make_trades(exchange, 0, 20)
    stream = xadd_args(trades[:1]).name
    carrier: dict[str, str] = {}
    with producer_span(tracer_provider.get_tracer("collector"), stream, carrier=carrier) as published:
        entry_id = redis_client.xadd(*xadd_args(trades, traceparent=carrier["traceparent"]))
    await run_until(writer, lambda: len(trade_rows(questdb_server, exchange)) == 20, "the traced trades")

    trace_id = published.get_span_context().trace_id
    in_trace = {span.name: span for span in spans.get_finished_spans() if span.context.trace_id == trace_id}
    process, write = in_trace[f"{stream} process"], in_trace["questdb.write trades"]
    assert process.parent is not None
    assert process.parent.span_id == published.get_span_context().span_id
    assert write.parent is not None
    assert write.parent.span_id == process.context.span_id
    assert process.attributes is not None
    assert write.attributes is not None
    assert process.attributes["messaging.message.id"] == text(entry_id)
    assert write.attributes["tickstrata.writer.entry_rows"] == 20


REPLAY_SCRIPT = Path(tickstrata.writer.__file__).parent / "replay_dead_letter.lua"


def _redis_cli(redis_server: RedisServer, *args: str) -> str:
    cli = cache_dir() / "bin" / "redis-cli"
    if not cli.exists():
        pytest.skip(f"{cli} is not installed (scripts/setup.sh)")
    result = subprocess.run([str(cli), "-u", redis_server.url, *args], capture_output=True, timeout=30, check=False)
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


async def test_a_dead_letter_replayed_with_redis_cli_is_written(
    writer: InProcessWriter, redis_server: RedisServer, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    exchange = new_exchange()
    trades = make_trades(exchange, 0, 5)
    stream = xadd_args(trades).name
    fields = encode_entry(trades)
    # What the writer leaves after failing to write an entry max_deliveries times (QuestDB away too long).
    dead = encode_dead_letter(
        source_stream=stream,
        entry_id=b"1-0",
        reason="max_deliveries: delivered 6 times",
        delivery_count=6,
        fields=fields,
    )
    dead_id = text(redis_client.xadd("dlq:writer", dict(dead)))  # type: ignore[arg-type]

    refused = _redis_cli(redis_server, "--eval", str(REPLAY_SCRIPT), "dlq:writer", "md:other:trades", ",", dead_id)
    assert f"came from {stream}" in refused
    assert redis_client.xlen("dlq:writer") == 1  # nothing replayed, nothing deleted

    replayed = _redis_cli(redis_server, "--eval", str(REPLAY_SCRIPT), "dlq:writer", stream, ",", dead_id)
    assert "ERR" not in replayed
    assert redis_client.xlen("dlq:writer") == 0
    await run_until(writer, lambda: len(trade_rows(questdb_server, exchange)) == 5, "the replayed trades")
    assert_exact(questdb_server, trades)


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
    exchange = new_exchange()
    trades = make_trades(exchange, 0, 2000)
    stream = xadd_args(trades[:1]).name
    publish(redis_client, trades[:1000], per_entry=10)
    process = _start_writer_process(redis_server, questdb_server)
    try:
        wait_until(lambda: len(trade_rows(questdb_server, exchange)) > 0, "the first rows")
        process.send_signal(signal.SIGKILL)  # in the middle of the backlog: entries are pending, unacked
        process.wait(10)
        publish(redis_client, trades[1000:], per_entry=10)
        process = _start_writer_process(redis_server, questdb_server)
        wait_until(lambda: len(trade_rows(questdb_server, exchange)) == 2000, "all 2000 trades")
        wait_until(lambda: pending(redis_client, stream) == 0, "an empty pending list")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    wait_until(lambda: wal_applied(questdb_server), "WAL apply")
    assert_exact(questdb_server, trades)


async def test_entries_breaking_the_rules_are_dead_lettered_with_no_row_or_partition(
    writer: InProcessWriter, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    # The cases: another venue's trade and a candle on a trades stream, a 1970 and a 2262 timestamp, a
    # negative price, a crossed quote. Each is dead-lettered with its rule; the good trade beside them is stored.
    exchange = new_exchange()
    good, kraken, early, late, negative = make_trades(exchange, 0, 5)
    stream = xadd_args([good]).name
    bad_entries = {
        "wrong_exchange": [msgspec.structs.replace(kraken, exchange="kraken")],
        "timestamp_out_of_range": [msgspec.structs.replace(early, ts_event_ns=1_000)],
        "negative_size": [msgspec.structs.replace(negative, size=Decimal("-1"))],
    }
    ids = {rule: redis_client.xadd(stream, xadd_args(events).fields) for rule, events in bad_entries.items()}
    ids["timestamp_out_of_range_2262"] = redis_client.xadd(
        stream, xadd_args([msgspec.structs.replace(late, ts_event_ns=2**63 - 1, ts_recv_ns=2**63 - 1)]).fields
    )
    candle = Candle(
        exchange=exchange, symbol="BTC-USDT", interval_secs=60, open_time_ns=TS0_NS, open=Decimal("1.5"),
        high=Decimal("2"), low=Decimal("1"), close=Decimal("1.75"), volume=Decimal("10"), quote_volume=None,
        trade_count=None, closed=True, source=CandleSource.BUILT, ts_event_ns=TS0_NS + 60, ts_recv_ns=TS0_NS + 61,
    )  # fmt: skip
    ids["wrong_data_type"] = redis_client.xadd(stream, xadd_args([candle]).fields)
    publish(redis_client, [good])

    def dead_letters() -> dict[str, str]:
        entries: Any = redis_client.xrange("dlq:writer")
        letters = [decode_dead_letter(fields) for _, fields in entries]
        return {d.entry_id: d.reason.split(":")[0] for d in letters if d.source_stream == stream}

    await run_until(writer, lambda: len(dead_letters()) == 5 and len(trade_rows(questdb_server, exchange)) == 1, "5")
    assert dead_letters() == {
        text(ids["wrong_exchange"]): "wrong_exchange",
        text(ids["timestamp_out_of_range"]): "timestamp_out_of_range",
        text(ids["negative_size"]): "negative_size",
        text(ids["timestamp_out_of_range_2262"]): "timestamp_out_of_range",
        text(ids["wrong_data_type"]): "wrong_data_type",
    }
    assert_exact(questdb_server, [good])
    assert select(questdb_server, f"SELECT count() FROM candles WHERE exchange = '{exchange}'") == [[0]]
    partitions = {row[0] for row in select(questdb_server, "SELECT name FROM table_partitions('trades')")}
    assert not {name for name in partitions if name.startswith(("1970", "2262"))}, partitions
