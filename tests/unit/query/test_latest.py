"""GetLatestPrice's pure part: validation naming the field, key names, response building."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tickstrata.common.streams import LatestPrice, encode_latest_price
from tickstrata.marketdata.v1 import market_data_service_pb2 as pb
from tickstrata.query.latest import (
    MAX_EXCHANGES,
    InvalidLatestPriceRequestError,
    LatestPriceQuery,
    build_response,
    cache_keys,
    decimal_text,
    exchanges_from_keys,
    parse_request,
    venue_scan_pattern,
)

VALUE = LatestPrice(Decimal("64321.50"), Decimal("0.012"), 1_700_000_000_000_000_000, 1_700_000_000_001_000_000)
NOW_NS = VALUE.ts_recv_ns + 2_500_000  # 2.5 ms after tickstrata received the trade


def request(symbol: str = "BTC-USDT", exchanges: tuple[str, ...] = ()) -> pb.GetLatestPriceRequest:
    return pb.GetLatestPriceRequest(symbol=symbol, exchanges=list(exchanges))


def test_parse_request_keeps_request_order_and_drops_duplicates() -> None:
    query = parse_request(request("BTC-USDT-PERP", ("okx", "binance", "okx")))
    assert query == LatestPriceQuery("BTC-USDT-PERP", ("okx", "binance"))
    assert not query.all_venues


def test_parse_request_without_exchanges_means_every_venue() -> None:
    assert parse_request(request()).all_venues


@pytest.mark.parametrize(
    ("symbol", "exchanges", "message"),
    [
        ("", (), "symbol is required"),
        ("btc-usdt", (), "symbol: invalid symbol 'btc-usdt'"),
        ("BTCUSDT", (), "symbol: invalid symbol"),
        ("BTC-USDT:x", (), "symbol: invalid symbol"),
        ("BTC-*", (), "symbol: invalid symbol"),
        ("BTC-USDT", ("binance", ""), "exchanges[1] is empty"),
        ("BTC-USDT", ("Binance",), "exchanges[0]: invalid exchange id 'Binance'"),
        ("BTC-USDT", ("px:*",), "exchanges[0]: invalid exchange id"),
        ("BTC-USDT", ("x",) * (MAX_EXCHANGES + 1), f"exchanges: at most {MAX_EXCHANGES}"),
    ],
)
def test_parse_request_refuses_malformed_fields_naming_them(
    symbol: str, exchanges: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidLatestPriceRequestError) as caught:
        parse_request(request(symbol, exchanges))
    assert str(caught.value).startswith(message)


def test_cache_keys_and_scan_pattern() -> None:
    assert cache_keys("BTC-USDT", ["binance", "kraken"]) == ["px:binance:BTC-USDT", "px:kraken:BTC-USDT"]
    assert venue_scan_pattern("BTC-USDT") == "px:*:BTC-USDT"


def test_exchanges_from_keys_sorted_distinct_and_exact_symbol_only() -> None:
    keys: list[bytes | str] = [
        b"px:okx:BTC-USDT",
        "px:binance:BTC-USDT",
        b"px:okx:BTC-USDT",
        b"px:a:b:BTC-USDT",
        b"px:bybit:ETH-USDT",
    ]
    assert exchanges_from_keys(keys, "BTC-USDT") == ["binance", "okx"]


@pytest.mark.parametrize(
    ("value", "text"),
    [("64321.50", "64321.50"), ("1E+2", "100"), ("1E-8", "0.00000001"), ("0.000012", "0.000012")],
)
def test_decimal_text_is_exact_without_exponent(value: str, text: str) -> None:
    assert decimal_text(Decimal(value)) == text
    assert Decimal(text) == Decimal(value)


def test_build_response_named_exchanges_in_request_order_with_missing() -> None:
    query = LatestPriceQuery("BTC-USDT", ("kraken", "binance", "okx", "bybit"))
    raw = [encode_latest_price(VALUE), None, b"\xc1garbage", encode_latest_price(VALUE)]
    response, corrupt = build_response(query, query.exchanges, raw, now_ns=NOW_NS, stale_after_ms=10_000)
    assert [(p.exchange, p.symbol, p.price) for p in response.prices] == [
        ("kraken", "BTC-USDT", "64321.50"),
        ("bybit", "BTC-USDT", "64321.50"),
    ]
    assert response.prices[0].ts_event_ns == VALUE.ts_event_ns
    assert response.prices[0].ts_recv_ns == VALUE.ts_recv_ns
    assert not response.prices[0].HasField("quote")
    assert (response.prices[0].size, response.prices[0].age_ms, response.prices[0].stale) == ("0.012", 2, False)
    assert list(response.missing_exchanges) == ["binance", "okx"]
    assert [item.exchange for item in corrupt] == ["okx"]


def test_build_response_all_venues_lists_nothing_missing() -> None:
    query = LatestPriceQuery("BTC-USDT", ())
    response, corrupt = build_response(
        query, ["binance", "okx"], [encode_latest_price(VALUE), None], now_ns=NOW_NS, stale_after_ms=10_000
    )
    assert [p.exchange for p in response.prices] == ["binance"]
    assert list(response.missing_exchanges) == []
    assert corrupt == []


def test_build_response_refuses_misaligned_values() -> None:
    with pytest.raises(ValueError, match="1 values for 2 exchanges"):
        build_response(LatestPriceQuery("BTC-USDT", ()), ["a", "b"], [None], now_ns=NOW_NS, stale_after_ms=1)


def test_a_price_older_than_the_threshold_is_flagged_stale() -> None:
    query = LatestPriceQuery("BTC-USDT", ("binance",))
    later = VALUE.ts_recv_ns + 10_001 * 1_000_000
    response, _ = build_response(query, ["binance"], [encode_latest_price(VALUE)], now_ns=later, stale_after_ms=10_000)
    assert (response.prices[0].age_ms, response.prices[0].stale) == (10_001, True)
