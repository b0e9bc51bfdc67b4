"""The backfill routes the operator publishes: every symbol of every running feed → its collector Service."""

from __future__ import annotations

from typing import Any

from tests.unit.operator.test_feed_and_children import body
from tickstrata_operator.routes import backfill_routes


def named(name: str, **spec: Any) -> dict[str, Any]:
    feed = body(**spec)
    feed["metadata"]["name"] = name
    return feed


def test_each_symbol_routes_to_its_own_feeds_service_per_venue() -> None:
    routes = backfill_routes(
        [
            named("btc", symbols=["BTC-USDT"]),
            named("alts", symbols=["ETH-USDT", "SOL-USDT"]),
            named("perp", market="usdm-futures", symbols=["BTC-USDT-PERP"]),
        ]
    )
    assert routes == {
        "binance": {
            "BTC-USDT": "btc-collector.md.svc:50051",
            "ETH-USDT": "alts-collector.md.svc:50051",
            "SOL-USDT": "alts-collector.md.svc:50051",
        },
        "binance-usdm": {"BTC-USDT-PERP": "perp-collector.md.svc:50051"},
    }


def test_refused_and_suspended_feeds_publish_no_route() -> None:
    assert backfill_routes([named("bad", symbols="BTC-USDT"), named("off", suspend=True)]) == {}
