"""One trace per event across processes, seen by a real OTLP receiver.

- collector `md:binance:trades publish` (PRODUCER) → writer `md:binance:trades process` (CONSUMER, its child) →
  `questdb.write trades` (CLIENT, child of the process span): real simulator, collector, Redis, writer, QuestDB.
- a caller's `traceparent` on a GetCandles call → the query service's SERVER span (its child) → `questdb.read
  candles` (CLIENT, child of the server span).
Every process is configured only by `OTEL_*` variables, exactly as the chart configures the pods.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.integration.collector_harness import running_collector
from tests.integration.query_harness import running_query
from tests.integration.servers.otlp_fixtures import Receiver, Span
from tests.integration.servers.simulator_fixtures import SimulatorEndpoints
from tests.integration.test_writer_kill import _WriterProcess
from tickstrata.common.questdb_schema import create_table_statements
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

STREAM = "md:binance:trades"
WAIT_SECS = 90.0


@pytest.fixture
def otel_env(otlp_receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{otlp_receiver.port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    return otlp_receiver


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def _spans(receiver: Receiver) -> list[tuple[str, Span]]:
    return [(resource.get("service.name", ""), span) for resource, span in receiver.spans()]


def _find_chain(receiver: Receiver) -> tuple[Span, Span, Span] | None:
    """A publish span, the writer's process span under it, and the QuestDB write under that."""
    spans = _spans(receiver)
    publishes = {
        span.span_id: span for service, span in spans if service == "collector" and span.name == f"{STREAM} publish"
    }
    for service, process in spans:
        if service != "writer" or process.name != f"{STREAM} process" or process.parent_span_id not in publishes:
            continue
        for other_service, write in spans:
            if (
                other_service == "writer"
                and write.name == "questdb.write trades"
                and write.parent_span_id == process.span_id
            ):
                return publishes[process.parent_span_id], process, write
    return None


def test_one_trace_from_the_collector_through_the_writer_to_questdb(
    tmp_path: Path, otel_env: Receiver, simulator: SimulatorEndpoints, own_redis: RedisServer,
    questdb_server: QuestDBServer,
) -> None:  # fmt: skip
    writers = _WriterProcess(tmp_path, own_redis.url, questdb_server.http_url)
    writer = writers.start("writer-traced")
    try:
        with running_collector(
            tmp_path, simulator, own_redis.url, exchange="binance", symbols=["BTC-USDT"], channels=["trades"]
        ):
            deadline = time.monotonic() + WAIT_SECS
            chain = None
            while chain is None:
                assert time.monotonic() < deadline, (
                    f"no complete trace; span names: {sorted({s.name for _, s in _spans(otel_env)})}"
                )
                assert not writer.exited(), writer.log_path.read_text()[-3000:]
                time.sleep(0.5)
                chain = _find_chain(otel_env)
    finally:
        assert writer.stop(timeout_secs=30) == 0
    publish, process, write = chain
    assert publish.trace_id == process.trace_id == write.trace_id
    assert publish.kind == Span.SpanKind.SPAN_KIND_PRODUCER
    assert process.kind == Span.SpanKind.SPAN_KIND_CONSUMER
    assert write.kind == Span.SpanKind.SPAN_KIND_CLIENT
    # The write happens after the publish; the process span covers it.
    assert publish.start_time_unix_nano <= process.start_time_unix_nano <= write.start_time_unix_nano
    assert write.end_time_unix_nano <= process.end_time_unix_nano


def test_a_get_candles_call_continues_the_callers_trace_into_the_questdb_read(
    tmp_path: Path, otel_env: Receiver, own_redis: RedisServer, questdb_server: QuestDBServer
) -> None:
    for statement in create_table_statements():  # the writer's own DDL
        questdb_server.exec_sql(statement)
    exchange = "t" + secrets.token_hex(5)
    questdb_server.exec_sql(
        "INSERT INTO candles (ts, exchange, symbol, interval_secs, open, high, low, close, volume, closed, source) "
        f"VALUES (1767225600000000000::timestamp_ns, '{exchange}', 'BTC-USDT', 60, 1.5, 2, 1, 1.75, 3, true, 'ws')"
    )
    while not questdb_server.exec_sql(f"SELECT count() FROM candles WHERE exchange = '{exchange}'")["dataset"][0][0]:
        time.sleep(0.1)  # the WAL apply makes the row, and so the instrument, visible
    with running_query(tmp_path, own_redis.url, questdb_pg_dsn=questdb_server.pg_dsn) as address:
        trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
        with grpc.insecure_channel(address) as channel:
            request = pb.GetCandlesRequest(
                exchange=exchange, symbol="BTC-USDT", start_ns=1767225600000000000, end_ns=1767225660000000000
            )
            responses = list(
                pb_grpc.MarketDataServiceStub(channel).GetCandles(
                    request, timeout=30, metadata=(("traceparent", f"00-{trace_id}-{parent_id}-01"),)
                )
            )
        assert sum(r.row_count for r in responses) == 1
        server = read = None
        deadline = time.monotonic() + WAIT_SECS
        while server is None or read is None:
            assert time.monotonic() < deadline, "spans not received"
            time.sleep(0.2)
            ours = [
                span for service, span in _spans(otel_env) if service == "query" and span.trace_id.hex() == trace_id
            ]
            server = next(
                (s for s in ours if s.name.endswith("/GetCandles") and s.parent_span_id.hex() == parent_id), None
            )
            read = next(
                (s for s in ours if s.name == "questdb.read candles" and server and s.parent_span_id == server.span_id),
                None,
            )
        assert server.kind == Span.SpanKind.SPAN_KIND_SERVER
        assert read.kind == Span.SpanKind.SPAN_KIND_CLIENT
