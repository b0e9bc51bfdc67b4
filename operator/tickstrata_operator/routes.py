"""The backfill routes the operator publishes for the validator: (exchange, symbol) → the feed's collector Service.

Pure: `backfill_routes` turns the ExchangeFeeds into one mapping per exchange; `feed_stats.StatsReader.write_routes`
writes them (`tickstrata.common.backfill_routes` is the contract). A feed the reconciler refuses, or a suspended
one (no collector runs), publishes no route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tickstrata_operator.children import backfill_address
from tickstrata_operator.feed import VENUES, InvalidFeedError, parse_feed


def backfill_routes(bodies: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """exchange id → symbol → `host:port` of the BackfillService that serves it."""
    routes: dict[str, dict[str, str]] = {}
    for body in bodies:
        try:
            feed = parse_feed(body)
        except InvalidFeedError:
            continue
        venue = VENUES.get((feed.exchange, feed.market))
        if venue is None or feed.suspend:
            continue
        address = backfill_address(feed)
        for symbol in feed.symbols:
            routes.setdefault(venue, {})[symbol] = address
    return routes
