"""exchangeInfo: an instrument we cannot represent is skipped with a warning; the feed goes on with the others."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from opentelemetry.metrics import NoOpMeter

from tickstrata.collector.feed import Feed, FeedConfigError
from tickstrata.collector.instruments import InstrumentRegistry
from tickstrata.collector.publisher import Publisher
from tickstrata.collector.rest import RestClient
from tickstrata.collector.settings import CollectorSettings
from tickstrata.collector.validation import InvalidPayloadError
from tickstrata.collector.venues import ADAPTERS

DATA = Path(__file__).parents[2] / "data" / "exchanges"


def exchange_info(exchange: str, edit: dict[str, Any]) -> bytes:
    """The recorded exchangeInfo with entries replaced by venue symbol (a value of None removes the entry)."""
    info = json.loads((DATA / exchange / "exchange_info.json").read_text())
    entries = []
    for entry in info["symbols"]:
        replacement = edit.get(entry["symbol"], entry)
        if replacement is not None:
            entries.append(replacement)
    info["symbols"] = entries
    return json.dumps(info).encode()


def usdm_entry(symbol: str = "ETHUSDT", **changes: Any) -> dict[str, Any]:
    info = json.loads((DATA / "binance-usdm" / "exchange_info.json").read_text())
    (entry,) = [e for e in info["symbols"] if e["symbol"] == symbol]
    entry = {**entry, **changes}
    return cast(dict[str, Any], entry)


def with_tick(tick: str) -> dict[str, Any]:
    entry = usdm_entry()
    entry["filters"] = [{**f, "tickSize": tick} if f["filterType"] == "PRICE_FILTER" else f for f in entry["filters"]]
    return entry


@pytest.mark.parametrize(
    ("bad_entry", "reason"),
    [
        (with_tick("0.0000000000000000001"), "precision or filter"),  # 19 decimals: we format up to 18
        (with_tick("-0.10"), "unsupported PRICE_FILTER tickSize"),
        (with_tick("NaN"), "unsupported PRICE_FILTER tickSize"),
        (with_tick("ten cents"), "shape"),
        (usdm_entry(filters="not a list"), "shape"),
        (usdm_entry(status=7), "shape"),
    ],
)
def test_an_unsupported_entry_is_skipped_with_its_reason_and_the_rest_load(
    bad_entry: dict[str, Any], reason: str
) -> None:
    adapter = ADAPTERS["binance-usdm"](InstrumentRegistry("binance-usdm"))
    good = {instrument.symbol for instrument in adapter.parse_exchange_info(exchange_info("binance-usdm", {}))}
    assert "ETH-USDT-PERP" in good

    listing = adapter.read_exchange_info(exchange_info("binance-usdm", {"ETHUSDT": bad_entry}))

    assert {instrument.symbol for instrument in listing.instruments} == good - {"ETH-USDT-PERP"}
    (skipped,) = listing.skipped
    assert (skipped.venue_symbol, skipped.symbol) == ("ETHUSDT", "ETH-USDT-PERP")
    assert reason in skipped.reason


def test_a_body_that_is_no_instrument_list_still_raises() -> None:
    adapter = ADAPTERS["binance"](InstrumentRegistry("binance"))
    with pytest.raises(InvalidPayloadError):
        adapter.read_exchange_info(b"<html>502</html>")


class FakeRest:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def get(self, path: str, params: object = None, *, weight: int) -> bytes:
        return self.body


def feed(symbols: list[str], body: bytes) -> Feed:
    settings = CollectorSettings(exchange="binance-usdm", symbols=symbols, channels=["trades", "books"])
    adapter = ADAPTERS["binance-usdm"](InstrumentRegistry("binance-usdm"))
    rest = cast(RestClient, FakeRest(body))
    return Feed(settings, adapter, rest, cast(Publisher, object()), NoOpMeter("test"))


async def test_a_configured_symbol_skipped_is_a_warning_and_the_feed_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    body = exchange_info("binance-usdm", {"ETHUSDT": with_tick("0.0000000000000000001")})
    subject = feed(["BTC-USDT-PERP", "ETH-USDT-PERP"], body)
    with caplog.at_level(logging.WARNING):
        await subject.load_instruments()
    assert subject.symbols == ["BTC-USDT-PERP"]
    assert list(subject.books) == ["BTC-USDT-PERP"]
    assert subject.unusable_symbols == ["ETH-USDT-PERP"]
    assert subject.instruments_skipped == 1
    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any(m.startswith("skipped instrument ETHUSDT: precision or filter") for m in messages), messages
    assert any("configured symbol ETH-USDT-PERP is not collected" in m for m in messages), messages


async def test_a_feed_left_without_any_usable_symbol_fails_start_up() -> None:
    body = exchange_info("binance-usdm", {"ETHUSDT": with_tick("NaN")})
    with pytest.raises(FeedConfigError, match="no configured symbol is usable"):
        await feed(["ETH-USDT-PERP"], body).load_instruments()


async def test_an_unlisted_symbol_is_still_a_configuration_error() -> None:
    body = exchange_info("binance-usdm", {"ETHUSDT": None})
    with pytest.raises(FeedConfigError, match="ETH-USDT-PERP is not listed"):
        await feed(["BTC-USDT-PERP", "ETH-USDT-PERP"], body).load_instruments()
