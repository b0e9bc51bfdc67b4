"""GetLatestPrice end to end: real Redis, `tickstrata query` as a process, the Python client and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import redis

from tests.integration.query_harness import running_query
from tickstrata.client import (
    InvalidQueryError,
    LatestPriceRow,
    LatestSubscription,
    MarketDataClient,
    QueryServiceUnavailableError,
)
from tickstrata.common.events import Side, Trade
from tickstrata.common.streams import LatestPrice, encode_latest_price, latest_price_key, xadd_args
from tickstrata.localstack.process import free_port
from tickstrata.localstack.redis import RedisServer
from tickstrata.marketdata.v1 import market_data_service_pb2, market_data_service_pb2_grpc

pytestmark = pytest.mark.integration

READY_TIMEOUT_SECS = 60.0
MS = 1_000_000


MIRROR_LIVE = "latest-price mirror live"


@pytest.fixture(scope="module")
def query_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("query")


@pytest.fixture(scope="module")
def query_address(redis_server: RedisServer, query_dir: Path) -> Iterator[str]:
    """`python -m tickstrata query` on free loopback ports, ready; SIGTERM'd (and must exit 0) afterwards."""
    with running_query(query_dir, redis_server.url) as address:
        yield address


def wait_for_mirror(log_dir: Path, *, times: int = 1) -> None:
    """Until the query process logged that its in-process mirror of the cache went live (`times` times)."""
    _wait(lambda: (log_dir / "query.log").read_text().count(MIRROR_LIVE) >= times, "the mirror to go live")


def put(client: redis.Redis, exchange: str, symbol: str, price: str, *, recv_ago_ms: int = 0) -> LatestPrice:
    recv_ns = time.time_ns() - recv_ago_ms * MS
    value = LatestPrice(Decimal(price), Decimal("0.5"), recv_ns - 3 * MS, recv_ns)
    client.set(latest_price_key(exchange, symbol), encode_latest_price(value))
    return value


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickstrata", "latest", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_named_exchanges_in_request_order_with_missing_and_stale(query_address: str, redis_client: redis.Redis) -> None:
    binance = put(redis_client, "binance", "BTC-USDT", "64321.50")
    kraken = put(redis_client, "kraken", "BTC-USDT", "64320.1", recv_ago_ms=60_000)
    put(redis_client, "okx", "ETH-USDT", "3000")  # another symbol on a named venue: still missing
    with MarketDataClient(query_address) as client:
        result = client.latest_prices("BTC-USDT", ["kraken", "okx", "binance", "coinbase"])
    assert [(row.exchange, row.symbol, row.price, row.stale) for row in result.rows] == [
        ("kraken", "BTC-USDT", Decimal("64320.1"), True),
        ("binance", "BTC-USDT", Decimal("64321.50"), False),
    ]
    assert str(result.rows[1].price) == "64321.50"  # trailing zero kept: exact, not float
    assert (result.rows[0].ts_event_ns, result.rows[0].ts_recv_ns) == (kraken.ts_event_ns, kraken.ts_recv_ns)
    assert (result.rows[1].ts_event_ns, result.rows[1].ts_recv_ns) == (binance.ts_event_ns, binance.ts_recv_ns)
    assert result.rows[0].age_ms >= 60_000
    assert result.missing_exchanges == ("okx", "coinbase")


def test_every_venue_holding_the_symbol_sorted_by_exchange(query_address: str, redis_client: redis.Redis) -> None:
    put(redis_client, "okx", "BTC-USDT", "64322")
    put(redis_client, "binance", "BTC-USDT", "64321.5")
    put(redis_client, "coinbase", "BTC-USDT", "0.000000012345")
    put(redis_client, "bybit", "BTC-USDT-PERP", "64400")  # the perpetual is another symbol
    put(redis_client, "kraken", "ETH-USDT", "3000")
    redis_client.set("px:broken:BTC-USDT:extra", b"x")  # not a well-formed key: ignored
    with MarketDataClient(query_address) as client:
        result = client.latest_prices("BTC-USDT")
        perp = client.latest("BTC-USDT-PERP")
        nothing = client.latest_prices("SOL-USDT")
    assert [(row.exchange, row.price) for row in result.rows] == [
        ("binance", Decimal("64321.5")),
        ("coinbase", Decimal("0.000000012345")),
        ("okx", Decimal("64322")),
    ]
    assert result.missing_exchanges == ()
    assert [(row.exchange, row.price) for row in perp] == [("bybit", Decimal("64400"))]
    assert nothing.rows == ()
    assert nothing.missing_exchanges == ()


def test_an_undecodable_cache_value_is_reported_missing(query_address: str, redis_client: redis.Redis) -> None:
    redis_client.set(latest_price_key("binance", "BTC-USDT"), b"\xc1not msgpack")
    put(redis_client, "okx", "BTC-USDT", "1")
    with MarketDataClient(query_address) as client:
        named = client.latest_prices("BTC-USDT", ["binance", "okx"])
        every = client.latest_prices("BTC-USDT")
    assert [row.exchange for row in named.rows] == ["okx"]
    assert named.missing_exchanges == ("binance",)
    assert [row.exchange for row in every.rows] == ["okx"]


@pytest.mark.parametrize(
    ("symbol", "exchanges", "field"),
    [("", [], "symbol"), ("btc-usdt", [], "symbol"), ("BTC-USDT", ["Binance"], "exchanges[0]")],
)
def test_malformed_request_is_invalid_argument_naming_the_field(
    query_address: str, symbol: str, exchanges: list[str], field: str
) -> None:
    with grpc.insecure_channel(query_address) as channel:
        stub = market_data_service_pb2_grpc.MarketDataServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetLatestPrice(market_data_service_pb2.GetLatestPriceRequest(symbol=symbol, exchanges=exchanges))
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(field)
    with MarketDataClient(query_address) as client, pytest.raises(InvalidQueryError, match=field.replace("[", r"\[")):
        client.latest(symbol, exchanges)


def test_client_names_the_address_when_the_service_is_unreachable() -> None:
    address = f"127.0.0.1:{free_port()}"
    with MarketDataClient(address) as client, pytest.raises(QueryServiceUnavailableError, match=address):
        client.latest("BTC-USDT")


def test_cli_table_and_json(query_address: str, redis_client: redis.Redis) -> None:
    put(redis_client, "binance", "BTC-USDT", "64321.50")
    put(redis_client, "kraken", "BTC-USDT", "0.000000012345", recv_ago_ms=60_000)
    # A 30 s staleness bound: a CLI start on a loaded 2-core machine takes seconds, and the fresh price must stay
    # fresh through both calls while the 60 s old one is stale.
    fresh = ("--stale-after-ms", "30000")
    table = run_cli("BTC-USDT", "-e", "binance", "-e", "kraken", "-e", "okx", "--address", query_address, *fresh)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["exchange", "price", "age", "ms", "stale"]
    assert lines[1].split()[:2] == ["binance", "64321.50"]
    assert len(lines[1].split()) == 3
    assert lines[2].split()[:2] == ["kraken", "0.000000012345"]
    assert lines[2].split()[3] == "STALE"
    assert lines[3] == "missing: okx"

    put(redis_client, "binance", "BTC-USDT", "64321.50")  # received now again: the first call took its time
    as_json = run_cli("BTC-USDT", "--address", query_address, "--json", *fresh)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [(p["exchange"], p["price"], p["stale"]) for p in data["prices"]] == [
        ("binance", "64321.50", False),
        ("kraken", "0.000000012345", True),
    ]
    assert data["missing_exchanges"] == []


def test_cli_errors(query_address: str) -> None:
    bad = run_cli("btc-usdt", "--address", query_address)
    assert bad.returncode == 2
    assert "invalid request: symbol: invalid symbol 'btc-usdt'" in bad.stderr
    address = f"127.0.0.1:{free_port()}"
    down = run_cli("BTC-USDT", "--address", address)
    assert down.returncode == 1
    assert f"query service at {address} unavailable" in down.stderr
    assert down.stdout == ""


def _publish_trade(client: redis.Redis, exchange: str, symbol: str, trade_id: int, price: str) -> None:
    now_ns = time.time_ns()
    trade = Trade(
        exchange=exchange, symbol=symbol, trade_id=str(trade_id), price=Decimal(price), size=Decimal("0.25"),
        side=Side.BUY, ts_event_ns=now_ns - MS, ts_recv_ns=now_ns,
    )  # fmt: skip
    client.xadd(*xadd_args([trade]))
    client.set(latest_price_key(exchange, symbol), encode_latest_price(LatestPrice.from_trade(trade)))


class _Reader(threading.Thread):
    """Drains a subscription in the background, keeping every row received."""

    def __init__(self, rows: LatestSubscription) -> None:
        super().__init__(daemon=True)
        self.source = rows
        self.rows: list[LatestPriceRow] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for row in self.source:
                self.rows.append(row)
        except BaseException as error:  # reported by the test
            self.error = error


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_subscribe_latest_sends_the_snapshot_then_every_change_to_every_subscriber(
    query_address: str, redis_client: redis.Redis
) -> None:
    exchange = "s" + uuid.uuid4().hex[:8]
    _publish_trade(redis_client, exchange, "BTC-USDT", 1, "100.5")
    _publish_trade(redis_client, exchange, "ETH-USDT", 1, "10")  # another symbol: not asked for
    with MarketDataClient(query_address) as first, MarketDataClient(query_address) as second:
        readers = [_Reader(c.subscribe_latest(["BTC-USDT"], [exchange])) for c in (first, second)]
        for reader in readers:
            reader.start()
        _wait(lambda: all(r.rows for r in readers), "the snapshot")
        assert [(r.rows[0].exchange, r.rows[0].price) for r in readers] == [(exchange, Decimal("100.5"))] * 2
        # The reader finds a new stream within a couple of seconds: publish until updates flow, then a sequence.
        trade_id = 2
        while not all(len(r.rows) > 1 for r in readers):
            _publish_trade(redis_client, exchange, "BTC-USDT", trade_id, f"{100 + trade_id}")
            trade_id += 1
            time.sleep(0.1)
            assert trade_id < 300, "no live update arrived"
        for step in range(5):
            _publish_trade(redis_client, exchange, "BTC-USDT", trade_id + step, f"{200 + step}.25")
            time.sleep(0.05)
        _wait(lambda: all(r.rows[-1].price == Decimal("204.25") for r in readers), "the last price")
        for reader in readers:
            prices = [row.price for row in reader.rows]
            assert prices == sorted(prices), "updates arrive in order"
            assert {row.symbol for row in reader.rows} == {"BTC-USDT"}
            assert reader.rows[-1].size == Decimal("0.25")
        # Closing one subscription leaves the other running.
        readers[0].source.close()
        _publish_trade(redis_client, exchange, "BTC-USDT", trade_id + 10, "300")
        _wait(lambda: readers[1].rows[-1].price == Decimal(300), "the other subscriber's update")
        readers[1].source.close()
    for reader in readers:
        reader.join(timeout=10)
        assert reader.error is None, reader.error


def test_subscribe_latest_conflates_for_a_slow_reader(query_address: str, redis_client: redis.Redis) -> None:
    exchange = "c" + uuid.uuid4().hex[:8]
    _publish_trade(redis_client, exchange, "SOL-USDT", 1, "1")
    with MarketDataClient(query_address) as client:
        reader = _Reader(client.subscribe_latest(["SOL-USDT"], [exchange], min_interval_ms=1000))
        reader.start()
        _wait(lambda: bool(reader.rows), "the snapshot")
        started = time.monotonic()
        trade_id = 2
        while time.monotonic() - started < 4:
            _publish_trade(redis_client, exchange, "SOL-USDT", trade_id, str(trade_id))
            trade_id += 1
            time.sleep(0.02)
        _wait(lambda: reader.rows[-1].price == Decimal(trade_id - 1), "the newest value")
        # About 150 trades in 4 s, at most one update per second: the newest values, not the backlog.
        assert 2 <= len(reader.rows) <= 7, [row.price for row in reader.rows]
        reader.source.close()
    reader.join(timeout=10)


def test_subscribe_latest_without_symbols_is_invalid(query_address: str) -> None:
    with MarketDataClient(query_address) as client, pytest.raises(InvalidQueryError, match="symbols"):
        next(client.subscribe_latest([]))


def _latest_price(client: MarketDataClient, exchange: str) -> Decimal | None:
    rows = client.latest("BTC-USDT", [exchange])
    return rows[0].price if rows else None


def test_the_mirror_follows_every_write_delete_and_new_venue(
    query_address: str, query_dir: Path, redis_client: redis.Redis
) -> None:
    wait_for_mirror(query_dir)
    put(redis_client, "binance", "BTC-USDT", "1")
    with MarketDataClient(query_address) as client:
        _wait(lambda: _latest_price(client, "binance") == Decimal(1), "the first value")
        for price in range(2, 30):
            put(redis_client, "binance", "BTC-USDT", str(price))
            # An answer may lag a write by the invalidation's trip, never go back: poll until the new value.
            seen = [_latest_price(client, "binance")]
            deadline = time.monotonic() + 30
            while seen[-1] != price:
                assert time.monotonic() < deadline, f"price {price} never served: {seen[-20:]}"
                seen.append(_latest_price(client, "binance"))
            assert set(seen) <= {price - 1, price}, seen
        put(redis_client, "okx", "BTC-USDT", "7")  # a venue the mirror has never read: found without SCAN
        _wait(lambda: [r.exchange for r in client.latest("BTC-USDT")] == ["binance", "okx"], "the new venue")
        redis_client.delete(latest_price_key("binance", "BTC-USDT"))
        _wait(lambda: _latest_price(client, "binance") is None, "the deletion")
        assert [row.exchange for row in client.latest("BTC-USDT")] == ["okx"]
        redis_client.flushall()  # a flush empties the copy and its venue index
        _wait(lambda: client.latest("BTC-USDT") == [], "the flush")


def test_redis_down_is_unavailable_never_a_remembered_price(tmp_path: Path) -> None:
    port = free_port()
    server = RedisServer(tmp_path / "redis", port=port).start()
    try:
        with running_query(tmp_path, server.url) as address, MarketDataClient(address) as client:
            wait_for_mirror(tmp_path)
            writer = redis.Redis.from_url(server.url)
            put(writer, "binance", "BTC-USDT", "100")
            writer.close()
            _wait(lambda: _latest_price(client, "binance") == Decimal(100), "the price in the mirror")
            server.stop()

            def unavailable() -> bool:
                try:
                    client.latest("BTC-USDT", ["binance"])
                except QueryServiceUnavailableError:
                    return True
                return False

            _wait(unavailable, "UNAVAILABLE once Redis is down")
            for _ in range(20):  # and it stays so: the copy is not served without its invalidation connection
                with pytest.raises(QueryServiceUnavailableError, match="latest-price cache unreachable"):
                    client.latest("BTC-USDT", ["binance"])
            server = RedisServer(tmp_path / "redis", port=port).start()  # empty: --save ""
            wait_for_mirror(tmp_path, times=2)
            writer = redis.Redis.from_url(server.url)
            put(writer, "binance", "BTC-USDT", "200")
            writer.close()
            _wait(lambda: _latest_price(client, "binance") == Decimal(200), "the new Redis's price")
    finally:
        server.stop()
