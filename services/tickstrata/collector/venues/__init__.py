"""Venue adapters: declarative classes plus pure parsers, one module per venue family (no I/O here)."""

from __future__ import annotations

from typing import Final

from tickstrata.collector.venues.base import (
    Channel,
    ConnectionSpec,
    ControlMessage,
    DepthDiff,
    DepthSnapshot,
    ParseResult,
    RestRequest,
    VenueAdapter,
)
from tickstrata.collector.venues.binance import BinanceAdapter, BinanceSpotAdapter, BinanceUsdmAdapter

ADAPTERS: Final[dict[str, type[BinanceAdapter]]] = {
    BinanceSpotAdapter.exchange: BinanceSpotAdapter,
    BinanceUsdmAdapter.exchange: BinanceUsdmAdapter,
}
"""Exchange id → adapter class."""

__all__ = [
    "ADAPTERS",
    "BinanceAdapter",
    "BinanceSpotAdapter",
    "BinanceUsdmAdapter",
    "Channel",
    "ConnectionSpec",
    "ControlMessage",
    "DepthDiff",
    "DepthSnapshot",
    "ParseResult",
    "RestRequest",
    "VenueAdapter",
]
