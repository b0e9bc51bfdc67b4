"""ExchangeFeed resources the API server must refuse (with the field path) or accept, for test_exchangefeed_crd.py.

Each invalid case is a change to one valid feed and the field path the refusal must name; every rule of the CRD
(schema, enum, pattern, bounds, CEL, immutability, strict decoding) has at least one case.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Body = dict[str, Any]


def valid_feed(name: str = "feed") -> Body:
    return {
        "apiVersion": "tickstrata.io/v1alpha1",
        "kind": "ExchangeFeed",
        "metadata": {"name": name},
        "spec": {"exchange": "binance", "market": "spot", "symbols": ["BTC-USDT", "ETH-USDT"]},
    }


@dataclass(frozen=True)
class Case:
    id: str
    change: Callable[[Body], None]
    field: str
    """What the API server's message must contain: the field path (and for CEL rules, a word of the message)."""

    def body(self, name: str) -> Body:
        body = copy.deepcopy(valid_feed(name))
        self.change(body)
        return body


def _spec(**values: Any) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        body["spec"].update(values)

    return change


def _drop(key: str) -> Callable[[Body], None]:
    def change(body: Body) -> None:
        del body["spec"][key]

    return change


INVALID: list[Case] = [
    # exchange / market
    Case("unknown exchange", _spec(exchange="kraken"), "spec.exchange"),
    Case("exchange in upper case", _spec(exchange="BINANCE"), "spec.exchange"),
    Case("empty exchange", _spec(exchange=""), "spec.exchange"),
    Case("exchange missing", _drop("exchange"), "spec.exchange"),
    Case("exchange not a string", _spec(exchange=7), "spec.exchange"),
    Case("unknown market", _spec(market="margin"), "spec.market"),
    Case("market missing", _drop("market"), "spec.market"),
    # symbols
    Case("symbols missing", _drop("symbols"), "spec.symbols"),
    Case("symbols empty", _spec(symbols=[]), "spec.symbols"),
    Case("symbol in lower case", _spec(symbols=["btc-usdt"]), "spec.symbols[0]"),
    Case("symbol without a dash", _spec(symbols=["BTCUSDT"]), "spec.symbols[0]"),
    Case("symbol with a slash", _spec(symbols=["BTC/USDT"]), "spec.symbols[0]"),
    Case("symbol empty", _spec(symbols=["BTC-USDT", ""]), "spec.symbols[1]"),
    Case("symbol too long", _spec(symbols=["A" * 25 + "-USDT"]), "spec.symbols[0]"),
    Case("perpetual symbol on spot", _spec(symbols=["BTC-USDT-PERP"]), "spec.symbols"),
    Case("spot symbol on futures", _spec(market="usdm-futures", symbols=["BTC-USDT"]), "spec.symbols"),
    Case("symbol with spaces", _spec(symbols=[" BTC-USDT"]), "spec.symbols[0]"),
    Case("symbol repeated", _spec(symbols=["BTC-USDT", "BTC-USDT"]), "spec.symbols[1]"),
    Case("too many symbols", _spec(symbols=[f"C{i:03d}-USDT" for i in range(201)]), "spec.symbols"),
    Case("symbols not a list", _spec(symbols="BTC-USDT"), "spec.symbols"),
    # channels
    Case("no channel enabled", _spec(channels={"trades": False, "candles": False}), "spec.channels"),
    Case("funding on spot", _spec(channels={"funding": True}), "spec.channels.funding"),
    Case("book depth not offered", _spec(channels={"book": {"enabled": True, "depth": 7}}), "spec.channels.book.depth"),
    Case(
        "book interval too short",
        _spec(channels={"book": {"enabled": True, "snapshotIntervalMs": 10}}),
        "spec.channels.book.snapshotIntervalMs",
    ),
    Case(
        "book interval too long",
        _spec(channels={"book": {"snapshotIntervalMs": 3_600_001}}),
        "spec.channels.book.snapshotIntervalMs",
    ),
    Case("channel flag not a boolean", _spec(channels={"trades": "yes"}), "spec.channels.trades"),
    Case("unknown channel", _spec(channels={"liquidations": True}), "spec.channels.liquidations"),
    # retention
    Case("warm not after hot", _spec(retention={"hotDays": 10, "warmDays": 10}), "spec.retention.warmDays"),
    Case("retention inverted", _spec(retention={"hotDays": 30, "warmDays": 7}), "spec.retention.warmDays"),
    Case("cold inside warm", _spec(retention={"warmDays": 365, "coldDays": 100}), "spec.retention.coldDays"),
    Case("cold equal to warm", _spec(retention={"warmDays": 365, "coldDays": 365}), "spec.retention.coldDays"),
    Case("hot days zero", _spec(retention={"hotDays": 0}), "spec.retention.hotDays"),
    Case("hot days negative", _spec(retention={"hotDays": -1}), "spec.retention.hotDays"),
    Case("cold days negative", _spec(retention={"coldDays": -5}), "spec.retention.coldDays"),
    Case("warm days beyond 10 years", _spec(retention={"warmDays": 3651}), "spec.retention.warmDays"),
    Case("retention as text", _spec(retention={"hotDays": "7d"}), "spec.retention.hotDays"),
    # tiering
    Case("cron with 4 fields", _spec(tiering={"schedule": "0 * * *"}), "spec.tiering.schedule"),
    Case("cron minute 60", _spec(tiering={"schedule": "60 * * * *"}), "spec.tiering.schedule"),
    Case("cron hour 24", _spec(tiering={"schedule": "0 24 * * *"}), "spec.tiering.schedule"),
    Case("cron day 32", _spec(tiering={"schedule": "0 0 32 * *"}), "spec.tiering.schedule"),
    Case("cron month 13", _spec(tiering={"schedule": "0 0 1 13 *"}), "spec.tiering.schedule"),
    Case("cron weekday 8", _spec(tiering={"schedule": "0 0 * * 8"}), "spec.tiering.schedule"),
    Case("cron macro unknown", _spec(tiering={"schedule": "@sometimes"}), "spec.tiering.schedule"),
    Case("cron words", _spec(tiering={"schedule": "every hour"}), "spec.tiering.schedule"),
    Case("cron empty", _spec(tiering={"schedule": ""}), "spec.tiering.schedule"),
    Case("time zone malformed", _spec(tiering={"timeZone": "UTC+2 hours"}), "spec.tiering.timeZone"),
    # collector resources
    Case(
        "memory request above limit",
        _spec(collector={"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}),
        "spec.collector.resources",
    ),
    Case(
        "cpu request above limit",
        _spec(collector={"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}}),
        "spec.collector.resources",
    ),
    Case(
        "cpu not a quantity",
        _spec(collector={"resources": {"requests": {"cpu": "lots"}}}),
        "spec.collector.resources.requests.cpu",
    ),
    Case(
        "memory zero",
        _spec(collector={"resources": {"limits": {"memory": "0"}}}),
        "spec.collector.resources.limits.memory",
    ),
    # endpoints, credentials
    Case("websocket url over http", _spec(endpoints={"wsUrl": "http://example.com/ws"}), "spec.endpoints.wsUrl"),
    Case("rest url over ftp", _spec(endpoints={"restUrl": "ftp://example.com"}), "spec.endpoints.restUrl"),
    Case(
        "inline api key", _spec(credentials={"apiKey": "abc", "secretRef": {"name": "keys"}}), "spec.credentials.apiKey"
    ),
    Case("secret reference without a name", _spec(credentials={"secretRef": {}}), "spec.credentials.secretRef.name"),
    Case(
        "secret name malformed", _spec(credentials={"secretRef": {"name": "Keys_1"}}), "spec.credentials.secretRef.name"
    ),
    Case("credentials without a reference", _spec(credentials={}), "spec.credentials.secretRef"),
    # the rest
    Case("suspend as text", _spec(suspend="true"), "spec.suspend"),
    Case("unknown spec field", _spec(replicas=2), "spec.replicas"),
    Case("name too long for the children", lambda body: body["metadata"].update(name="f" * 41), "metadata.name"),
    # The collector's Service is named after the feed, and Service names are DNS labels: no dot, no leading digit.
    Case("name with a dot", lambda body: body["metadata"].update(name="binance.spot"), "metadata.name"),
    Case("name starting with a digit", lambda body: body["metadata"].update(name="1inch"), "metadata.name"),
]


VALID: list[tuple[str, Callable[[Body], None]]] = [
    ("minimal", lambda body: None),
    (
        "usdm futures with funding",
        _spec(market="usdm-futures", symbols=["BTC-USDT-PERP", "1000PEPE-USDT-PERP"], channels={"funding": True}),
    ),
    ("books only", _spec(channels={"trades": False, "candles": False, "book": {"enabled": True, "depth": 1000}})),
    ("quotes and trades", _spec(channels={"quotes": True, "candles": False})),
    ("retention at the bounds", _spec(retention={"hotDays": 1, "warmDays": 2, "coldDays": 3})),
    ("cold kept forever", _spec(retention={"hotDays": 90, "warmDays": 3650, "coldDays": 0})),
    (
        "cron with lists, ranges and steps",
        _spec(tiering={"schedule": "0,30 1-5/2 1,15 */3 1-5", "timeZone": "Europe/Berlin"}),
    ),
    ("cron macro", _spec(tiering={"schedule": "@daily"})),
    (
        "resources",
        _spec(
            collector={
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
            }
        ),
    ),
    (
        "endpoints of the simulator",
        _spec(endpoints={"wsUrl": "ws://simulator:8765/ws", "restUrl": "http://simulator:8765"}),
    ),
    ("credentials by reference", _spec(credentials={"secretRef": {"name": "binance-api-keys"}})),
    ("suspended", _spec(suspend=True)),
    ("200 symbols", _spec(symbols=[f"C{i:03d}-USDT" for i in range(200)])),
    ("name of 40 characters", lambda body: body["metadata"].update(name="f" * 40)),
]
