"""The query service cannot be taken down by one bad value or one expensive call (issue 10, items 2 and 3).

Real Redis and QuestDB; `tickstrata query` as a process (its metrics go to a real OTLP receiver), except the
reader-death test, which runs the query app in-process to make its shared reader raise.

Scaling of the heavy-call tests: `ROWS` trades are stored and the row cap is `CAP`; a maximum-size call reads
`CAP` rows. The service's memory per admitted call is about 150 bytes per row of the cap (Arrow, not Python
tuples), so the defaults (2M rows, 4 calls) give ~1.2 GiB; here 8 calls of 100k rows with 2 admitted.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from questdb import Sender, TimestampNanos

from tests.integration.query_harness import QueryProcess, query_process
from tests.integration.servers.otlp_fixtures import Receiver, attributes
from tickstrata.client import MarketDataClient
from tickstrata.common.events import Side, Trade
from tickstrata.common.health import HealthServer, HealthState
from tickstrata.common.lifecycle import ServiceContext
from tickstrata.common.questdb_schema import create_table_statements
from tickstrata.common.streams import LatestPrice, encode_latest_price, latest_price_key, xadd_args
from tickstrata.common.telemetry import Telemetry
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc
from tickstrata.query.app import QueryApp
from tickstrata.query.settings import QuerySettings

pytestmark = pytest.mark.integration

MS = 1_000_000
HUGE = Decimal("1e999999999")  # finite; formatted it is a 1,000,000,001-character string
ROWS = 300_000
CAP = 100_000
T0_NS = 1_767_225_600_000_000_000 - 86_400_000_000_000  # a whole past day
ROW_STEP_NS = 1_000
LEFT_OUT = "stored value left out"


def _wait(condition: Callable[[], bool], what: str, *, timeout_secs: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _otel_env(receiver: Receiver) -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")} | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_TRACES_EXPORTER": "none",
    }


def _counter(receiver: Receiver, name: str, **want: str) -> int:
    """The newest cumulative value of counter `name`, summed over the attribute sets that match `want`."""
    newest: dict[tuple[tuple[str, Any], ...], int] = {}
    for request in list(receiver.metrics):
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.sum.data_points:
                        attrs = attributes(point.attributes)
                        if all(attrs.get(key) == value for key, value in want.items()):
                            newest[tuple(sorted(attrs.items()))] = int(point.as_int)
    return sum(newest.values())


def _left_out_lines(query: QueryProcess, key: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in query.log().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message", "").startswith(LEFT_OUT) and line.get("key") == key]


# ---- item 2: one stored value ------------------------------------------------------------------------------


def test_a_huge_cached_price_is_left_out_at_once_and_counted(
    redis_server: RedisServer, redis_client: redis.Redis, otlp_receiver: Receiver, tmp_path: Path
) -> None:
    symbol = "H" + uuid.uuid4().hex[:6].upper() + "-USDT"
    now_ns = time.time_ns()
    good = LatestPrice(Decimal("64000.5"), Decimal("0.5"), now_ns - MS, now_ns)
    redis_client.set(latest_price_key("binance", symbol), encode_latest_price(good))
    redis_client.set(latest_price_key("evil", symbol), encode_latest_price(LatestPrice(HUGE, None, now_ns, now_ns)))
    calls = 0
    with query_process(tmp_path, redis_server.url, env=_otel_env(otlp_receiver)) as query:
        with MarketDataClient(query.address) as client:
            for _ in range(3):  # from Redis or from the mirror: the first read fills it, later ones come from it
                for exchanges in ([], ["evil", "binance"]):
                    started = time.monotonic()
                    result = client.latest_prices(symbol, exchanges)
                    elapsed = time.monotonic() - started
                    calls += 1
                    assert [(row.exchange, row.price) for row in result.rows] == [("binance", Decimal("64000.5"))]
                    assert result.missing_exchanges == (("evil",) if exchanges else ())
                    assert elapsed < 1.0, f"{elapsed:.2f} s: the bad value was formatted?"
        _wait(lambda: _counter(otlp_receiver, "tickstrata.query.bad_values", source="cache") >= calls, "the count")
        assert len(_left_out_lines(query, f"evil:{symbol}")) == 1, "logged once per key, not per call"


def _trade(exchange: str, symbol: str, trade_id: int, price: Decimal) -> Trade:
    now_ns = time.time_ns()
    return Trade(
        exchange=exchange, symbol=symbol, trade_id=str(trade_id), price=price, size=Decimal("0.25"),
        side=Side.BUY, ts_event_ns=now_ns - MS, ts_recv_ns=now_ns,
    )  # fmt: skip


class _Reader(threading.Thread):
    """Drains a subscription in the background, keeping every price received and the error it ended with."""

    def __init__(self, client: MarketDataClient, symbol: str, exchange: str) -> None:
        super().__init__(daemon=True)
        self.source = client.subscribe_latest([symbol], [exchange])
        self.prices: list[Decimal] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for row in self.source:
                self.prices.append(row.price)
        except BaseException as error:  # reported by the test
            self.error = error


def test_a_foreign_stream_a_garbage_entry_and_a_huge_trade_do_not_stop_subscribe_latest(
    redis_server: RedisServer, redis_client: redis.Redis, otlp_receiver: Receiver, tmp_path: Path
) -> None:
    exchange, symbol = "f" + uuid.uuid4().hex[:8], "BTC-USDT"
    # Both streams exist before the reader's next SCAN, so it finds the foreign one no later than ours.
    redis_client.xadd("md:Evil:trades", {"v": b"2", "d": b"x"})
    first = _trade(exchange, symbol, 1, Decimal(100))
    redis_client.xadd(*xadd_args([first]))
    redis_client.set(latest_price_key(exchange, symbol), encode_latest_price(LatestPrice.from_trade(first)))
    with (
        query_process(tmp_path, redis_server.url, env=_otel_env(otlp_receiver)) as query,
        MarketDataClient(query.address) as client,
    ):
        reader = _Reader(client, symbol, exchange)
        reader.start()
        _wait(lambda: reader.prices == [Decimal(100)], "the snapshot")
        trade_id = 2
        while len(reader.prices) < 2:  # until the reader follows our stream (it finds streams every 2 s)
            redis_client.xadd(*xadd_args([_trade(exchange, symbol, trade_id, Decimal(100 + trade_id))]))
            trade_id += 1
            assert trade_id < 300, f"no live update arrived: {reader.error}"
            time.sleep(0.1)
        redis_client.xadd("md:Evil:trades", {"v": b"2", "d": b"x"})  # today: kills the shared reader
        redis_client.xadd(f"md:{exchange}:trades", {"v": b"2", "d": b"\xc1 not msgpack"})
        redis_client.xadd(*xadd_args([_trade(exchange, symbol, trade_id, HUGE)]))
        redis_client.xadd(*xadd_args([_trade(exchange, symbol, trade_id + 1, Decimal("12345.5"))]))
        _wait(
            lambda: bool(reader.prices) and reader.prices[-1] == Decimal("12345.5"), "the next trade", timeout_secs=10
        )
        assert HUGE not in reader.prices
        assert reader.error is None
        # The foreign name (once, when found), the garbage entry and the huge trade.
        _wait(lambda: _counter(otlp_receiver, "tickstrata.query.bad_values", source="stream") >= 3, "the count")
        assert len(_left_out_lines(query, "md:Evil:trades")) == 1
        assert query.readyz_status() == 200
        reader.source.close()
    reader.join(timeout=10)


def test_a_dead_live_reader_fails_readiness_and_ends_every_subscription_with_unavailable(
    redis_server: RedisServer, redis_client: redis.Redis, questdb_server: QuestDBServer
) -> None:
    symbol, exchange = "D" + uuid.uuid4().hex[:6].upper() + "-USDT", "d" + uuid.uuid4().hex[:8]
    now_ns = time.time_ns()
    seven = LatestPrice(Decimal(7), None, now_ns, now_ns)
    redis_client.set(latest_price_key(exchange, symbol), encode_latest_price(seven))
    redis_client.xadd(*xadd_args([_trade(exchange, symbol, 1, Decimal(7))]))  # a stream for the reader to follow
    asyncio.run(asyncio.wait_for(_reader_death(redis_server.url, questdb_server.pg_dsn, symbol), timeout=60))


def _readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


async def _reader_death(redis_url: str, pg_dsn: str, symbol: str) -> None:
    from opentelemetry import metrics, trace  # noqa: PLC0415 - only this in-process test needs the no-op pair

    settings = QuerySettings(redis_url=redis_url, grpc_host="127.0.0.1", grpc_port=0, questdb_pg_dsn=pg_dsn)
    state = HealthState()
    context = ServiceContext(
        health=state,
        telemetry=Telemetry(tracer=trace.NoOpTracer(), meter=metrics.NoOpMeter("test")),
        stop_event=asyncio.Event(),
    )
    app = QueryApp(settings)
    await app.start(context)
    state.accepting = True
    health = HealthServer(state, host="127.0.0.1", port=0)
    await health.start()
    try:
        status, _ = await asyncio.to_thread(_readyz, health.port)
        assert status == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            stub = pb_grpc.MarketDataServiceStub(channel)
            call = stub.SubscribeLatest(pb.SubscribeLatestRequest(symbols=[symbol]))
            first = await call.read()  # the snapshot: the subscription is registered from here on
            assert isinstance(first, pb.SubscribeLatestResponse)
            assert first.price.price == "7"

            async def broken_xread(*args: object, **kwargs: object) -> object:
                raise RuntimeError("injected reader failure")

            app.redis.xread = broken_xread  # type: ignore[method-assign,assignment]
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async with asyncio.timeout(30):
                    await call.read()
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "injected reader failure" in (ended.value.details() or "")
            status, body = await asyncio.to_thread(_readyz, health.port)
            assert status == 503
            assert body["checks"]["live-prices"]["ok"] is False
            late = stub.SubscribeLatest(pb.SubscribeLatestRequest(symbols=[symbol]))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await late.read()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await health.close()
        await app.stop_intake()
        await app.close()


# ---- item 3: bounded query cost ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_trades(questdb_server: QuestDBServer) -> str:
    """`ROWS` trades of one instrument, `ROW_STEP_NS` apart from `T0_NS`; returns the exchange."""
    exchange = "q" + uuid.uuid4().hex[:10]
    for statement in create_table_statements():
        questdb_server.exec_sql(statement)
    with Sender.from_conf(f"{questdb_server.ilp_http_conf}auto_flush_rows=50000;") as sender:
        for i in range(ROWS):
            sender.row(
                "trades",
                symbols={"exchange": exchange, "symbol": "BTC-USDT", "side": "buy" if i % 2 else "sell"},
                columns={
                    "trade_id": str(10_000_000 + i),
                    "price": 64000.0 + (i % 1000) / 100,
                    "size": 0.001 * (i % 7 + 1),
                    "ts_recv_ns": T0_NS + i * ROW_STEP_NS + 5,
                    "backfilled": False,
                },
                at=TimestampNanos(T0_NS + i * ROW_STEP_NS),
            )
    _wait(
        lambda: (
            questdb_server.exec_sql(f"SELECT count() FROM trades WHERE exchange = '{exchange}'")["dataset"] == [[ROWS]]
        ),
        "the trades to be stored",
        timeout_secs=120,
    )
    return exchange


@pytest.fixture(scope="module")
def heavy_query(
    redis_server: RedisServer,
    questdb_server: QuestDBServer,
    stored_trades: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[QueryProcess]:
    with query_process(
        tmp_path_factory.mktemp("query-heavy"), redis_server.url, questdb_pg_dsn=questdb_server.pg_dsn,
        max_rows_per_call=str(CAP), max_concurrent_history_calls="2",
    ) as query:  # fmt: skip
        yield query


def _get_trades(address: str, exchange: str, rows: int) -> tuple[grpc.StatusCode, int]:
    request = pb.GetTradesRequest(
        exchange=exchange, symbol="BTC-USDT", start_ns=T0_NS, end_ns=T0_NS + rows * ROW_STEP_NS
    )
    received = 0
    with grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        try:
            for response in pb_grpc.MarketDataServiceStub(channel).GetTrades(request, timeout=120):
                received += response.row_count
        except grpc.RpcError as error:
            return error.code(), received
    return grpc.StatusCode.OK, received


def _warmed_up(query: QueryProcess, exchange: str) -> QueryProcess:
    """After one small call: a peak measured from here is the cost of calls, not of first-use set-up."""
    assert _get_trades(query.address, exchange, 1000) == (grpc.StatusCode.OK, 1000)
    return query


def test_a_call_over_the_cap_is_refused_without_holding_the_rows(heavy_query: QueryProcess, stored_trades: str) -> None:
    _warmed_up(heavy_query, stored_trades)
    baseline_kib = heavy_query.status_kib("VmRSS")
    heavy_query.reset_peak_rss()
    code, received = _get_trades(heavy_query.address, stored_trades, ROWS)
    grew_mib = (heavy_query.status_kib("VmHWM") - baseline_kib) / 1024
    print(f"over the cap: peak RSS +{grew_mib:.1f} MiB")
    assert (code, received) == (grpc.StatusCode.OUT_OF_RANGE, 0)
    # Reading CAP + 1 rows as Python tuples (as before) costs ~500 bytes a row; as Arrow batches ~60.
    assert grew_mib < CAP * 250 / 2**20, f"peak RSS grew {grew_mib:.0f} MiB refusing {ROWS:,} rows"


def test_concurrent_maximum_calls_are_admitted_or_refused_and_latest_prices_keep_answering(
    heavy_query: QueryProcess, stored_trades: str, redis_client: redis.Redis
) -> None:
    now_ns = time.time_ns()
    redis_client.set(
        latest_price_key("binance", "ETH-USDT"), encode_latest_price(LatestPrice(Decimal(3000), None, now_ns, now_ns))
    )
    baseline_kib = heavy_query.status_kib("VmRSS")
    heavy_query.reset_peak_rss()
    outcomes: list[tuple[grpc.StatusCode, int]] = []
    latest_ok = 0
    heavy_done = threading.Event()

    def latest_loop() -> None:
        nonlocal latest_ok
        with MarketDataClient(heavy_query.address) as client:
            while not heavy_done.is_set():
                if client.latest_prices("ETH-USDT").rows:
                    latest_ok += 1
                time.sleep(0.01)

    def heavy() -> None:
        outcomes.append(_get_trades(heavy_query.address, stored_trades, CAP))

    latest = threading.Thread(target=latest_loop, daemon=True)
    latest.start()
    calls = [threading.Thread(target=heavy, daemon=True) for _ in range(8)]
    for call in calls:
        call.start()
    for call in calls:
        call.join(timeout=120)
    heavy_done.set()
    latest.join(timeout=30)
    grew_mib = (heavy_query.status_kib("VmHWM") - baseline_kib) / 1024
    print(f"8 calls: {outcomes}, {latest_ok} latest prices meanwhile, peak RSS +{grew_mib:.1f} MiB")
    assert len(outcomes) == 8
    assert all(
        outcome in {(grpc.StatusCode.OK, CAP), (grpc.StatusCode.RESOURCE_EXHAUSTED, 0)} for outcome in outcomes
    ), outcomes
    assert (grpc.StatusCode.OK, CAP) in outcomes
    assert (grpc.StatusCode.RESOURCE_EXHAUSTED, 0) in outcomes, "8 calls at once with 2 admitted"
    assert latest_ok > 0, "GetLatestPrice never answered while the heavy calls ran"
    # At most 2 answers of CAP rows exist at once (~150 bytes a row each, with encoding copies); 8 unbounded
    # reads as Python tuples (as before) need ~8 * 500 bytes a row.
    assert grew_mib < 2 * CAP * 600 / 2**20, f"peak RSS grew {grew_mib:.0f} MiB for {outcomes}"


def test_unknown_symbols_answer_not_found_with_at_most_one_instrument_scan_per_interval(
    redis_server: RedisServer,
    questdb_server: QuestDBServer,
    stored_trades: str,
    otlp_receiver: Receiver,
    tmp_path: Path,
) -> None:
    with query_process(
        tmp_path, redis_server.url, env=_otel_env(otlp_receiver), questdb_pg_dsn=questdb_server.pg_dsn
    ) as query:
        started = time.monotonic()
        codes: set[grpc.StatusCode] = set()
        with grpc.insecure_channel(query.address) as channel:
            stub = pb_grpc.MarketDataServiceStub(channel)
            for i in range(1000):
                request = pb.GetTradesRequest(
                    exchange=stored_trades, symbol=f"NOPE{i}-USDT", start_ns=T0_NS, end_ns=T0_NS + 1
                )
                try:
                    list(stub.GetTrades(request, timeout=30))
                    codes.add(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.add(error.code())
        elapsed = time.monotonic() - started
        assert codes == {grpc.StatusCode.NOT_FOUND}
        allowed = 2 + int(elapsed // QuerySettings().instruments_refresh_secs)  # the start-up read, then one/interval
        _wait(lambda: _counter(otlp_receiver, "tickstrata.query.instrument_scans") >= 1, "the scan count")
        exports = len(otlp_receiver.metrics)
        _wait(lambda: len(otlp_receiver.metrics) >= exports + 3, "three more exports (a late scan shows in them)")
        scans = _counter(otlp_receiver, "tickstrata.query.instrument_scans")
        assert 1 <= scans <= allowed, f"{scans} instrument scans for 1,000 unknown symbols in {elapsed:.1f} s"
