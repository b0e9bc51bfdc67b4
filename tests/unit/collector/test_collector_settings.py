"""Collector settings: the feed from variables or a feed file, defaults per venue, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickstrata.collector.settings import CollectorSettings
from tickstrata.common.settings import SettingsError, load_settings


def test_channels_default_to_everything_the_venue_has() -> None:
    assert load_settings(CollectorSettings, {}).channels == ["trades", "candles", "quotes", "books"]
    usdm = load_settings(CollectorSettings, {"COLLECTOR_EXCHANGE": "binance-usdm"})
    assert usdm.channels == ["trades", "candles", "quotes", "books", "funding"]


def test_feed_file_overrides_the_variables(tmp_path: Path) -> None:
    feed = tmp_path / "feed.yaml"
    feed.write_text("exchange: binance-usdm\nsymbols: [BTC-USDT-PERP, ETH-USDT-PERP]\nchannels: trades,funding\n")
    settings = load_settings(
        CollectorSettings,
        {"COLLECTOR_FEED_FILE": str(feed), "COLLECTOR_EXCHANGE": "binance", "COLLECTOR_BOOK_LEVELS": "5"},
    )
    assert settings.exchange == "binance-usdm"
    assert settings.symbols == ["BTC-USDT-PERP", "ETH-USDT-PERP"]
    assert settings.channels == ["trades", "funding"]
    assert settings.book_levels == 5


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"COLLECTOR_EXCHANGE": "kraken"}, "COLLECTOR_EXCHANGE: Value error, unsupported exchange 'kraken'"),
        ({"COLLECTOR_CHANNELS": "trades,orders"}, "COLLECTOR_CHANNELS: Value error, unknown channels ['orders']"),
        ({"COLLECTOR_WS_URL": "http://x"}, "COLLECTOR_WS_URL: Value error, must start with ws:// or wss://"),
        ({"COLLECTOR_CHANNELS": "funding"}, "CollectorSettings: Value error, channel 'funding' exists only on"),
    ],
)
def test_bad_feeds_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(CollectorSettings, environ)
    assert message in str(caught.value)


def test_feed_file_with_unknown_keys_is_refused(tmp_path: Path) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text('{"exchange": "binance", "symbol": "BTC-USDT"}')
    with pytest.raises(SettingsError, match=r"unknown keys \['symbol'\]"):
        load_settings(CollectorSettings, {"COLLECTOR_FEED_FILE": str(feed)})
