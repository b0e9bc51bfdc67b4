"""The client's pure parts: message → row (exact Decimal, age, staleness) and the CLI's table and JSON."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pytest

from tickstrata.client.latest_cli import main, to_json, to_table
from tickstrata.client.market_data import LatestPriceRow, LatestPrices, MarketDataClient, row_from_message
from tickstrata.localstack.process import free_port
from tickstrata.marketdata.v1 import market_data_pb2

NOW_NS = 1_700_000_010_000_000_000


def message(price: str = "64321.50", recv_ago_ms: int = 12) -> market_data_pb2.LatestPrice:
    return market_data_pb2.LatestPrice(
        exchange="binance",
        symbol="BTC-USDT",
        price=price,
        ts_event_ns=NOW_NS - 20_000_000,
        ts_recv_ns=NOW_NS - recv_ago_ms * 1_000_000,
    )


def test_row_from_message_is_exact_and_judges_staleness() -> None:
    fresh = row_from_message(message(), now_ns=NOW_NS, stale_after_ms=5000)
    assert fresh == LatestPriceRow(
        "binance", "BTC-USDT", Decimal("64321.50"), NOW_NS - 20_000_000, NOW_NS - 12_000_000, 12.0, False
    )
    assert str(fresh.price) == "64321.50"
    assert row_from_message(message(recv_ago_ms=5000), now_ns=NOW_NS, stale_after_ms=5000).stale is False
    assert row_from_message(message(recv_ago_ms=5001), now_ns=NOW_NS, stale_after_ms=5000).stale is True


@pytest.mark.parametrize("price", ["", "abc", "NaN", "Infinity"])
def test_row_from_message_refuses_a_non_decimal_price(price: str) -> None:
    with pytest.raises(ValueError, match="price"):
        row_from_message(message(price), now_ns=NOW_NS, stale_after_ms=5000)


def rows() -> LatestPrices:
    return LatestPrices(
        "BTC-USDT",
        (
            row_from_message(message("64321.5", 12), now_ns=NOW_NS, stale_after_ms=5000),
            LatestPriceRow("kraken", "BTC-USDT", Decimal("0.00000001"), 1, NOW_NS - 8_123_000_000, 8123.0, True),
        ),
        ("okx",),
    )


def test_table_is_aligned_and_lists_missing() -> None:
    assert to_table(rows()).splitlines() == [
        "exchange       price  age ms  stale",
        "binance      64321.5    12.0",
        "kraken    0.00000001  8123.0  STALE",
        "missing: okx",
    ]


def test_table_when_nothing_is_cached() -> None:
    assert to_table(LatestPrices("BTC-USDT", (), ())) == "no cached price for BTC-USDT"


def test_json_keeps_prices_exact() -> None:
    data = json.loads(to_json(rows()))
    assert data["symbol"] == "BTC-USDT"
    assert [(p["exchange"], p["price"], p["stale"]) for p in data["prices"]] == [
        ("binance", "64321.5", False),
        ("kraken", "0.00000001", True),
    ]
    assert data["missing_exchanges"] == ["okx"]


def test_client_is_a_context_manager() -> None:
    with MarketDataClient("127.0.0.1:1") as client:
        assert client.address == "127.0.0.1:1"


def test_cli_unreachable_service_exits_1_naming_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    out, err = io.StringIO(), io.StringIO()
    assert main(["BTC-USDT", "--address", address, "--timeout", "5"], stdout=out, stderr=err) == 1
    assert out.getvalue() == ""
    assert f"query service at {address} unavailable" in err.getvalue()
