"""GetCandles and GetTrades end to end: rows in a real QuestDB, `tickstrata query` as a process, Arrow back.

Candles at 1m/5m/1h/1d are checked against an independent computation from the inserted minutes (with missing
minutes and minutes without a quote volume), trades against what was inserted, decimals for exactness, and each
error code the contract names. Reflection must list the service.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from questdb import Sender, TimestampNanos

from tests.integration.query_harness import running_query
from tickstrata.client import InvalidQueryError, MarketDataClient, NotFoundError
from tickstrata.common.questdb_schema import TIER_CATALOG_SPEC, create_table_statements
from tickstrata.localstack.questdb import QuestDBServer
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_pb2 as md
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.marketdata.v1 import market_data_service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

MINUTE_NS = 60_000_000_000
DAY_NS = 1440 * MINUTE_NS
T0_NS = 1_767_225_600_000_000_000 - DAY_NS  # 2025-12-31T00:00Z: whole past days
MINUTES = 2 * 1440 + 125
READY_TIMEOUT_SECS = 60.0


@dataclass(frozen=True)
class Minute:
    open_ns: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    trade_count: int


def _minutes() -> list[Minute]:
    out = []
    for i in range(MINUTES):
        if i % 97 == 13:
            continue  # a missing minute: buckets aggregate what exists
        base = Decimal(64000) + Decimal(i % 311) / 4
        out.append(
            Minute(
                open_ns=T0_NS + i * MINUTE_NS,
                open=base,
                high=base + Decimal("12.5"),
                low=base - Decimal("7.25"),
                close=base + Decimal(i % 7) / 100,
                volume=Decimal(i % 13 + 1) / 1000,
                quote_volume=None if i % 50 == 0 else Decimal(i % 13 + 1) * 64,
                trade_count=i % 17 + 1,
            )
        )
    return out


def _expected(minutes: list[Minute], interval_secs: int) -> list[tuple[Any, ...]]:
    interval_ns = interval_secs * 1_000_000_000
    buckets: dict[int, list[Minute]] = defaultdict(list)
    for minute in minutes:
        buckets[minute.open_ns // interval_ns * interval_ns].append(minute)
    rows: list[tuple[Any, ...]] = []
    for start in sorted(buckets):
        group = buckets[start]
        quote = None if any(m.quote_volume is None for m in group) else sum(m.quote_volume or 0 for m in group)
        rows.append(
            (
                start,
                group[0].open,
                max(m.high for m in group),
                min(m.low for m in group),
                group[-1].close,
                sum(m.volume for m in group),
                quote,
                sum(m.trade_count for m in group),
            )
        )
    return rows


@pytest.fixture(scope="module")
def stored(questdb_server: QuestDBServer) -> tuple[str, list[Minute]]:
    exchange = "h" + uuid.uuid4().hex[:10]
    for statement in create_table_statements():
        questdb_server.exec_sql(statement)
    minutes = _minutes()
    with Sender.from_conf(f"{questdb_server.ilp_http_conf}auto_flush=off;") as sender:
        for m in minutes:
            columns: dict[str, object] = {
                "interval_secs": 60, "open": float(m.open), "high": float(m.high), "low": float(m.low),
                "close": float(m.close), "volume": float(m.volume), "trade_count": m.trade_count, "closed": True,
                "ts_event_ns": m.open_ns + MINUTE_NS - 1, "ts_recv_ns": m.open_ns + MINUTE_NS,
            }  # fmt: skip
            if m.quote_volume is not None:
                columns["quote_volume"] = float(m.quote_volume)
            sender.row(
                "candles",
                symbols={"exchange": exchange, "symbol": "BTC-USDT", "source": "ws"},
                columns=columns,  # type: ignore[arg-type]
                at=TimestampNanos(m.open_ns),
            )
        for i in range(600):
            sender.row(
                "trades",
                symbols={"exchange": exchange, "symbol": "BTC-USDT", "side": "buy" if i % 2 else "sell"},
                columns={
                    "trade_id": str(1000 + i),
                    "price": float(Decimal("64123.45") + Decimal(i) / 100),
                    "size": float(Decimal("0.00012000") * (i % 5 + 1)),
                    "ts_recv_ns": T0_NS + i * 1_000_000 + 5,
                    "backfilled": False,
                },
                at=TimestampNanos(T0_NS + (i // 3) * 1_000_000 + 7),  # three trades per timestamp: ties
            )
        sender.flush()
    deadline = time.monotonic() + 60
    while True:
        [[candles]] = questdb_server.exec_sql(f"SELECT count() FROM candles WHERE exchange = '{exchange}'")["dataset"]
        [[trades]] = questdb_server.exec_sql(f"SELECT count() FROM trades WHERE exchange = '{exchange}'")["dataset"]
        if (candles, trades) == (len(minutes), 600):
            break
        assert time.monotonic() < deadline, (candles, trades)
        time.sleep(0.2)
    return exchange, minutes


@pytest.fixture(scope="module")
def query_address(
    redis_server: RedisServer, questdb_server: QuestDBServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with running_query(
        tmp_path_factory.mktemp("query"), redis_server.url,
        questdb_pg_dsn=questdb_server.pg_dsn, max_candle_buckets="100000",
    ) as address:  # fmt: skip
        yield address


@pytest.fixture
def stub(query_address: str) -> Iterator[pb_grpc.MarketDataServiceStub]:
    with grpc.insecure_channel(query_address) as channel:
        yield pb_grpc.MarketDataServiceStub(channel)


def _read(responses: Iterable[pb.GetCandlesResponse | pb.GetTradesResponse]) -> tuple[pa.Table, int]:
    tables, batches = [], 0
    for response in responses:
        table = pa.ipc.open_stream(response.arrow_ipc).read_all()
        assert table.num_rows == response.row_count
        tables.append(table)
        batches += 1
    return pa.concat_tables(tables), batches


@pytest.mark.parametrize("interval_secs", [60, 300, 3600, 86400])
def test_candles_at_any_interval_equal_an_independent_resampling(
    stub: pb_grpc.MarketDataServiceStub, stored: tuple[str, list[Minute]], interval_secs: int
) -> None:
    exchange, minutes = stored
    request = pb.GetCandlesRequest(
        exchange=exchange, symbol="BTC-USDT", interval_secs=interval_secs,
        start_ns=T0_NS, end_ns=T0_NS + MINUTES * MINUTE_NS, max_rows_per_batch=1000,
    )  # fmt: skip
    table, batches = _read(stub.GetCandles(request, timeout=30))
    expected = _expected(minutes, interval_secs)
    got = [
        (
            row["open_time_ns"].value if hasattr(row["open_time_ns"], "value") else row["open_time_ns"],
            row["open"],
            row["high"],
            row["low"],
            row["close"],
            row["volume"],
            row["quote_volume"],
            row["trade_count"],
        )
        for row in table.to_pylist()
    ]
    # The last (partial) bucket of the 1-day and 1-hour cases ended long ago too: everything is closed.
    assert [row[0] for row in got] == [row[0] for row in expected]
    assert got == expected
    assert table.column("closed").to_pylist() == [True] * len(expected)
    assert set(table.column("source").to_pylist()) == {"ws" if interval_secs == 60 else "resampled"}
    assert table.schema.field("open").type == pa.decimal128(38, 2)
    assert table.schema.field("open_time_ns").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(table.schema.field("exchange").type)
    assert batches == -(-len(expected) // 1000)


def test_candles_as_float64_and_string_and_rounded_start(
    stub: pb_grpc.MarketDataServiceStub, stored: tuple[str, list[Minute]]
) -> None:
    exchange, minutes = stored
    base = pb.GetCandlesRequest(
        exchange=exchange, symbol="BTC-USDT", interval_secs=3600, start_ns=T0_NS + 17 * MINUTE_NS,
        end_ns=T0_NS + 3 * 3600 * 1_000_000_000,
    )  # fmt: skip
    expected = _expected(minutes, 3600)[:3]
    request = pb.GetCandlesRequest()
    request.CopyFrom(base)
    request.numeric_encoding = md.NUMERIC_ENCODING_FLOAT64
    as_float, _ = _read(stub.GetCandles(request))
    assert as_float.column("high").to_pylist() == [float(row[2]) for row in expected]  # start rounded down
    assert as_float.schema.field("high").type == pa.float64()
    request.numeric_encoding = md.NUMERIC_ENCODING_STRING
    as_text, _ = _read(stub.GetCandles(request))
    assert as_text.column("volume").to_pylist() == [str(row[5]) for row in expected]


def test_trades_come_back_exact_and_in_venue_order(
    stub: pb_grpc.MarketDataServiceStub, stored: tuple[str, list[Minute]]
) -> None:
    exchange, _ = stored
    request = pb.GetTradesRequest(exchange=exchange, symbol="BTC-USDT", start_ns=T0_NS, end_ns=T0_NS + DAY_NS)
    table, _ = _read(stub.GetTrades(request, timeout=30))
    assert table.column("trade_id").to_pylist() == [str(1000 + i) for i in range(600)]
    assert table.column("price").to_pylist() == [Decimal("64123.45") + Decimal(i) / 100 for i in range(600)]
    assert table.column("size").to_pylist() == [Decimal("0.00012") * (i % 5 + 1) for i in range(600)]
    assert table.schema.field("size").type == pa.decimal128(38, 5)
    assert table.column("side").to_pylist() == ["buy" if i % 2 else "sell" for i in range(600)]
    expected_ts = [T0_NS + (i // 3) * 1_000_000 + 7 for i in range(600)]
    assert [t.value for t in table.column("ts_event_ns").to_pylist()] == expected_ts


@pytest.mark.parametrize(
    ("request_fields", "code", "words"),
    [
        ({"symbol": "BTC-USDT"}, grpc.StatusCode.INVALID_ARGUMENT, "exchange is required"),
        ({"exchange": "binance"}, grpc.StatusCode.INVALID_ARGUMENT, "symbol is required"),
        ({"start_ns": 2 * T0_NS, "end_ns": T0_NS}, grpc.StatusCode.INVALID_ARGUMENT, "must be before"),
        ({"interval_secs": 90}, grpc.StatusCode.INVALID_ARGUMENT, "multiple of 60"),
        ({"start_ns": 1}, grpc.StatusCode.INVALID_ARGUMENT, "split it"),  # 100k-bucket limit in this fixture
        ({"exchange": "nosuchvenue"}, grpc.StatusCode.NOT_FOUND, "exchange 'nosuchvenue'"),
        ({"symbol": "DOGE-USDT"}, grpc.StatusCode.NOT_FOUND, "symbol 'DOGE-USDT'"),
    ],
)
def test_bad_requests_get_the_contract_status_codes(
    stub: pb_grpc.MarketDataServiceStub,
    stored: tuple[str, list[Minute]],
    request_fields: dict[str, object],
    code: grpc.StatusCode,
    words: str,
) -> None:
    exchange, _ = stored
    fields: dict[str, object] = {
        "exchange": exchange,
        "symbol": "BTC-USDT",
        "start_ns": T0_NS,
        "end_ns": T0_NS + DAY_NS,
    }
    fields.update(request_fields)
    if "exchange" not in request_fields and "symbol" in request_fields and request_fields["symbol"] == "BTC-USDT":
        fields.pop("exchange")
    if request_fields == {"exchange": "binance"}:
        fields.pop("symbol")
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GetCandles(pb.GetCandlesRequest(**fields), timeout=30))  # type: ignore[arg-type]
    error: grpc.Call = caught.value  # type: ignore[assignment]
    assert error.code() == code, error.details()
    assert words in (error.details() or "")


def test_reflection_lists_the_service(query_address: str) -> None:
    with grpc.insecure_channel(query_address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        [response] = list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
    names = {service.name for service in response.list_services_response.service}
    assert {"tickstrata.marketdata.v1.MarketDataService", "grpc.health.v1.Health"} <= names


def test_the_python_client_returns_arrow_and_pandas(query_address: str, stored: tuple[str, list[Minute]]) -> None:
    exchange, minutes = stored
    start = datetime.fromtimestamp(T0_NS / 1e9, tz=UTC)
    with MarketDataClient(query_address) as client:
        table = client.candles(exchange, "BTC-USDT", "1d", start=start, end=T0_NS + MINUTES * MINUTE_NS)
        frame = client.trades_df(exchange, "BTC-USDT", start="2025-12-31", end="2026-01-01T00:00Z", numeric="float")
        with pytest.raises(NotFoundError, match="nosuchvenue"):
            client.candles("nosuchvenue", "BTC-USDT", start=T0_NS, end=T0_NS + DAY_NS)
        with pytest.raises(InvalidQueryError, match="before"):
            client.trades(exchange, "BTC-USDT", start=T0_NS + DAY_NS, end=T0_NS)
    assert table.column("close").to_pylist() == [row[4] for row in _expected(minutes, 86400)]
    assert len(frame) == 600
    assert frame.index.name == "ts_event_ns"
    assert frame["price"].iloc[0] == 64123.45


def test_the_cli_prints_a_table_and_writes_exact_csv_and_parquet(
    query_address: str, stored: tuple[str, list[Minute]], tmp_path: Path
) -> None:
    exchange, minutes = stored
    common = ["--from", "2025-12-31T00:00Z", "--to", "2026-01-01T00:00Z", "--address", query_address]
    shown = subprocess.run(
        [sys.executable, "-m", "tickstrata", "candles", exchange, "BTC-USDT", "4h", *common, "--limit", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "… 4 earlier rows" in shown.stdout
    assert f"6 candles of {exchange} BTC-USDT 4h, 2025-12-31T00:00:00Z → 2026-01-01T00:00:00Z" in shown.stdout
    csv = subprocess.run(
        [sys.executable, "-m", "tickstrata", "candles", exchange, "BTC-USDT", "4h", *common, "--csv", "-"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert csv.returncode == 0, csv.stderr
    header, *lines = csv.stdout.strip().splitlines()
    volumes = [line.split(",")[header.split(",").index('"volume"')] for line in lines]
    assert volumes == [f'"{row[5]}"' for row in _expected(minutes, 4 * 3600)[:6]]
    target = tmp_path / "trades.parquet"
    written = subprocess.run(
        [sys.executable, "-m", "tickstrata", "trades", exchange, "BTC-USDT", *common, "--parquet", str(target)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    table = pq.read_table(target)
    assert table.num_rows == 600
    assert table.schema.field("price").type == pa.decimal128(38, 2)
    bad = subprocess.run(
        [sys.executable, "-m", "tickstrata", "trades", exchange, "BTC-USDT", "--from", "yesterday-ish"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "cannot read the time 'yesterday-ish'" in bad.stderr


def test_a_range_reaching_into_days_moved_to_warm_is_refused_not_answered_with_a_hole(
    stub: pb_grpc.MarketDataServiceStub, stored: tuple[str, list[Minute]], questdb_server: QuestDBServer
) -> None:
    exchange, _ = stored
    moved_day_ns = T0_NS - T0_NS % DAY_NS - 3 * DAY_NS  # a day before the stored data, as the tierer records it
    questdb_server.exec_sql(TIER_CATALOG_SPEC.create_sql())
    questdb_server.exec_sql(
        f"INSERT INTO {TIER_CATALOG_SPEC.name} VALUES ({moved_day_ns}::timestamp_ns, 'trades', '{exchange}', "
        "'BTC-USDT', 'warm', 42, 'digest', 1.5, 2, 8, false, 0)"
    )
    request = pb.GetTradesRequest(exchange=exchange, symbol="BTC-USDT", start_ns=moved_day_ns, end_ns=T0_NS + DAY_NS)
    deadline = time.monotonic() + 30
    catalogued = f"SELECT count() FROM {TIER_CATALOG_SPEC.name} WHERE exchange = '{exchange}'"
    while int(questdb_server.exec_sql(catalogued)["dataset"][0][0]) < 1:  # applied asynchronously (WAL)
        assert time.monotonic() < deadline, "QuestDB never applied the catalog row"
        time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.GetTrades(request, timeout=30))
    error: grpc.Call = caught.value  # type: ignore[assignment]
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, error.details()
    moved = datetime.fromtimestamp(moved_day_ns // 10**9, UTC).date()
    assert f"1 day(s) of trades for {exchange} BTC-USDT in this range ({moved} to {moved}) moved to the warm tier" in (
        error.details() or ""
    )
    # Candles of the same days did not move, and a trade range after the moved day is answered as before.
    candles = pb.GetCandlesRequest(exchange=exchange, symbol="BTC-USDT", start_ns=moved_day_ns, end_ns=T0_NS + DAY_NS)
    assert _read(stub.GetCandles(candles, timeout=30))[0].num_rows > 0
    after = pb.GetTradesRequest(exchange=exchange, symbol="BTC-USDT", start_ns=T0_NS, end_ns=T0_NS + DAY_NS)
    assert _read(stub.GetTrades(after, timeout=30))[0].num_rows == 600
