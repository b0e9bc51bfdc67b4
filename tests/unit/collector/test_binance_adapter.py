"""The declarative side of the Binance adapters: limits, connection plans, subscribe messages, REST requests."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from tests.unit.collector.test_binance_replay import RECV_NS, adapter, body
from tickstrata.collector.instruments import Instrument, InstrumentKind, InstrumentRegistry
from tickstrata.collector.validation import InvalidPayloadError, Reason
from tickstrata.collector.venues import (
    ADAPTERS,
    BinanceAdapter,
    BinanceSpotAdapter,
    BinanceUsdmAdapter,
    Channel,
    ConnectionSpec,
    RestRequest,
)

ALL_SPOT = [Channel.TRADES, Channel.CANDLES, Channel.QUOTES, Channel.BOOKS]


def _many(exchange: str, count: int) -> BinanceAdapter:
    """An adapter knowing ``count`` synthetic instruments (SYM0-USDT …)."""
    cls = ADAPTERS[exchange]
    suffix = "-PERP" if exchange == "binance-usdm" else ""
    kind = InstrumentKind.PERPETUAL if suffix else InstrumentKind.SPOT
    tick, step = Decimal("0.01"), Decimal("0.001")
    instruments = [
        Instrument(
            exchange, f"SYM{i}-USDT{suffix}", f"SYM{i}USDT", f"SYM{i}", "USDT", kind, tick, step, 2, 3, "TRADING"
        )
        for i in range(count)
    ]
    return cls(InstrumentRegistry(exchange, instruments))


def test_declared_limits() -> None:
    spot, usdm = BinanceSpotAdapter, BinanceUsdmAdapter
    assert (spot.exchange, usdm.exchange) == ("binance", "binance-usdm")
    assert (spot.max_streams_per_connection, usdm.max_streams_per_connection) == (1024, 1024)
    assert (spot.max_incoming_messages_per_sec, usdm.max_incoming_messages_per_sec) == (5, 10)
    assert (spot.rest_weight_limit_per_min, usdm.rest_weight_limit_per_min) == (6000, 2400)
    assert (spot.kline_page_limit, usdm.kline_page_limit) == (1000, 1500)
    assert (spot.agg_trades_page_limit, usdm.agg_trades_page_limit) == (1000, 1000)
    assert spot.default_ws_url == "wss://stream.binance.com:9443"
    assert usdm.default_rest_url == "https://fapi.binance.com"
    assert Channel.FUNDING not in adapter("binance").channels
    assert adapter("binance-usdm").channels == frozenset(Channel)
    assert adapter("binance").subscribe_interval_secs == 0.25  # 4/s, one message a second left for pongs


def test_adapter_refuses_a_registry_of_another_exchange() -> None:
    with pytest.raises(ValueError, match="binance-usdm registry"):
        BinanceUsdmAdapter(InstrumentRegistry("binance"))


def test_spot_plan_is_one_combined_connection() -> None:
    plan = adapter("binance").connection_plan(["BTC-USDT", "ETH-USDT"], ALL_SPOT)
    streams = (
        "btcusdt@aggTrade",
        "btcusdt@kline_1m",
        "btcusdt@bookTicker",
        "btcusdt@depth@100ms",
        "ethusdt@aggTrade",
        "ethusdt@kline_1m",
        "ethusdt@bookTicker",
        "ethusdt@depth@100ms",
    )
    assert plan == [ConnectionSpec("/stream?streams=" + "/".join(streams), streams)]


def test_usdm_plan_routes_public_and_market() -> None:
    plan = adapter("binance-usdm").connection_plan(["BTC-USDT-PERP"], list(Channel))
    assert plan == [
        ConnectionSpec(
            "/market/stream?streams=btcusdt@aggTrade/btcusdt@kline_1m/btcusdt@markPrice@1s",
            ("btcusdt@aggTrade", "btcusdt@kline_1m", "btcusdt@markPrice@1s"),
        ),
        ConnectionSpec(
            "/public/stream?streams=btcusdt@bookTicker/btcusdt@depth@100ms",
            ("btcusdt@bookTicker", "btcusdt@depth@100ms"),
        ),
    ]


@pytest.mark.parametrize("exchange", ["binance", "binance-usdm"])
def test_plans_split_within_stream_cap_and_url_budget(exchange: str) -> None:
    venue = _many(exchange, 600)
    symbols = [instrument.symbol for instrument in venue.registry]
    plan = venue.connection_plan(symbols, [Channel.TRADES, Channel.BOOKS, Channel.CANDLES])
    planned = [stream for spec in plan for stream in spec.streams]
    assert len(planned) == len(set(planned)) == 1800  # every stream exactly once
    for spec in plan:
        assert len(spec.streams) <= venue.max_streams_per_connection
        assert len(spec.path) <= venue.max_url_path_bytes
        prefix, _, joined = spec.path.partition("?streams=")
        assert joined.split("/") == list(spec.streams)
        assert prefix in {"/stream", "/public/stream", "/market/stream"}


def test_plan_respects_a_smaller_stream_cap() -> None:
    class Capped(BinanceSpotAdapter):
        max_streams_per_connection = 3

    venue = Capped(_many("binance", 4).registry)
    plan = venue.connection_plan([f"SYM{i}-USDT" for i in range(4)], [Channel.TRADES, Channel.QUOTES])
    assert [len(spec.streams) for spec in plan] == [3, 3, 2]


def test_plan_rejects_configuration_errors() -> None:
    with pytest.raises(ValueError, match="no channel funding"):
        adapter("binance").connection_plan(["BTC-USDT"], [Channel.FUNDING])
    with pytest.raises(KeyError, match="DOGE-USDT"):
        adapter("binance").connection_plan(["DOGE-USDT"], [Channel.TRADES])


def test_subscribe_messages() -> None:
    venue = adapter("binance")
    assert msgspec.json.decode(venue.subscribe_message(["btcusdt@aggTrade", "btcusdt@depth@100ms"], 1)) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@aggTrade", "btcusdt@depth@100ms"],
        "id": 1,
    }
    assert msgspec.json.decode(venue.unsubscribe_message(["btcusdt@aggTrade"], 2))["method"] == "UNSUBSCRIBE"
    assert msgspec.json.decode(venue.list_subscriptions_message(3)) == {"method": "LIST_SUBSCRIPTIONS", "id": 3}
    with pytest.raises(ValueError, match=r"1\.\.1024"):
        venue.subscribe_message([f"s{i}@aggTrade" for i in range(1025)], 4)


# ---- REST requests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "weight"), [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50), (1001, 250), (5000, 250)]
)
def test_spot_depth_weights(limit: int, weight: int) -> None:
    assert adapter("binance").depth_request("BTC-USDT", limit) == RestRequest(
        "/api/v3/depth", {"symbol": "BTCUSDT", "limit": str(limit)}, weight
    )


@pytest.mark.parametrize(("limit", "weight"), [(5, 2), (10, 2), (20, 2), (50, 2), (100, 5), (500, 10), (1000, 20)])
def test_usdm_depth_weights(limit: int, weight: int) -> None:
    request = adapter("binance-usdm").depth_request("BTC-USDT-PERP", limit)
    assert (request.path, request.params["symbol"], request.weight) == ("/fapi/v1/depth", "BTCUSDT", weight)


@pytest.mark.parametrize(
    ("exchange", "symbol", "limit"),
    [("binance", "BTC-USDT", 5001), ("binance", "BTC-USDT", 0), ("binance-usdm", "BTC-USDT-PERP", 200)],
)
def test_depth_limits_the_venue_refuses(exchange: str, symbol: str, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        adapter(exchange).depth_request(symbol, limit)


def test_spot_klines_request() -> None:
    request = adapter("binance").klines_request("BTC-USDT", 1_767_225_600_000, 1_767_285_540_000, 1000)
    assert request == RestRequest(
        "/api/v3/klines",
        {
            "symbol": "BTCUSDT",
            "interval": "1m",
            "startTime": "1767225600000",
            "endTime": "1767285540000",
            "limit": "1000",
        },
        2,
    )
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        adapter("binance").klines_request("BTC-USDT", 0, 1, 1001)


@pytest.mark.parametrize(
    ("limit", "weight"), [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10)]
)
def test_usdm_kline_weights(limit: int, weight: int) -> None:
    request = adapter("binance-usdm").klines_request("BTC-USDT-PERP", 0, 1, limit)
    assert (request.path, request.weight) == ("/fapi/v1/klines", weight)


def test_agg_trades_requests() -> None:
    spot = adapter("binance").agg_trades_request("BTC-USDT", 1_767_225_600_000, 1_767_229_199_999, 1000)
    assert spot == RestRequest(
        "/api/v3/aggTrades",
        {"symbol": "BTCUSDT", "startTime": "1767225600000", "endTime": "1767229199999", "limit": "1000"},
        4,
    )
    usdm = adapter("binance-usdm").agg_trades_from_id_request("BTC-USDT-PERP", 2891234501, 500)
    assert usdm == RestRequest("/fapi/v1/aggTrades", {"symbol": "BTCUSDT", "fromId": "2891234501", "limit": "500"}, 20)
    with pytest.raises(ValueError, match="shorter than 1 h"):
        adapter("binance").agg_trades_request("BTC-USDT", 0, 3_600_000, 1000)
    with pytest.raises(ValueError, match=r"1\.\.1000"):
        adapter("binance").agg_trades_request("BTC-USDT", 0, 1, 1001)


def test_exchange_info_and_premium_index_requests() -> None:
    assert adapter("binance").exchange_info_request() == RestRequest("/api/v3/exchangeInfo", {}, 20)
    assert adapter("binance-usdm").exchange_info_request() == RestRequest("/fapi/v1/exchangeInfo", {}, 1)
    usdm = adapter("binance-usdm")
    assert isinstance(usdm, BinanceUsdmAdapter)
    assert usdm.premium_index_request("BTC-USDT-PERP") == RestRequest("/fapi/v1/premiumIndex", {"symbol": "BTCUSDT"}, 1)


# ---- REST bodies that must be refused -----------------------------------------------------------------------


def _reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(InvalidPayloadError) as caught:
        call()
    return caught.value.reason.value


def test_rest_bodies_refused_with_reasons() -> None:
    spot = adapter("binance")
    now_ms = 1_767_226_020_000
    assert (
        _reason(
            lambda: spot.parse_klines(b'{"code":-1121,"msg":"Invalid symbol."}', "BTC-USDT", RECV_NS, now_ms=now_ms)
        )
        == Reason.VENUE_ERROR
    )
    assert _reason(lambda: spot.parse_klines(b"[[1,2", "BTC-USDT", RECV_NS, now_ms=now_ms)) == Reason.MALFORMED_JSON
    rows = msgspec.json.decode(body("binance", "klines"))
    swapped = msgspec.json.encode([rows[1], rows[0]])
    assert _reason(lambda: spot.parse_klines(swapped, "BTC-USDT", RECV_NS, now_ms=now_ms)) == "sequence_invariant"
    rows[0][2] = "1.00000000"  # high below open
    broken = msgspec.json.encode(rows)
    assert _reason(lambda: spot.parse_klines(broken, "BTC-USDT", RECV_NS, now_ms=now_ms)) == "candle_invariant"
    trades = msgspec.json.decode(body("binance", "agg_trades"))
    trades[1]["p"] = "NaN"
    bad_trades = msgspec.json.encode(trades)
    assert _reason(lambda: spot.parse_agg_trades(bad_trades, "BTC-USDT", RECV_NS)) == "non_finite"
    crossed = b'{"lastUpdateId":1,"bids":[["2.0","1"]],"asks":[["1.0","1"]]}'
    assert _reason(lambda: spot.parse_depth_snapshot(crossed, "BTC-USDT", RECV_NS)) == "crossed_quote"
    assert _reason(lambda: spot.parse_exchange_info(b'{"symbols":5}')) == "wrong_type"


def test_premium_index_for_another_symbol_is_refused() -> None:
    usdm = adapter("binance-usdm")
    assert isinstance(usdm, BinanceUsdmAdapter)
    other = body("binance-usdm", "premium_index").replace(b'"BTCUSDT"', b'"ETHUSDT"')
    assert _reason(lambda: usdm.parse_premium_index(other, "BTC-USDT-PERP", RECV_NS)) == "unknown_symbol"
