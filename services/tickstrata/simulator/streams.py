"""Stream names: parsing, validation, and USD-M's routing of streams to `/public` or `/market`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from tickstrata.simulator.instruments import Venue

Route = Literal["public", "market"]

_STREAM_RE: Final = re.compile(r"^([a-z0-9_]+|[A-Za-z0-9_]+)@([A-Za-z0-9_@+:.]+)$")

# The channels the simulator generates data for, with the diff-depth cadence in ms where it applies.
SPOT_DEPTH_CADENCE_MS: Final = {"depth": 1000, "depth@100ms": 100}
USDM_DEPTH_CADENCE_MS: Final = {"depth": 250, "depth@250ms": 250, "depth@500ms": 500, "depth@100ms": 100}
SPOT_CHANNELS: Final = frozenset({"aggTrade", "trade", "kline_1m", "bookTicker", *SPOT_DEPTH_CADENCE_MS})
USDM_CHANNELS: Final = frozenset(
    {"aggTrade", "trade", "kline_1m", "bookTicker", "markPrice", "markPrice@1s", *USDM_DEPTH_CADENCE_MS}
)
# USD-M's high-frequency streams live on /public; everything else on /market (kline assumed there, as tardis does).
_USDM_PUBLIC_PREFIXES: Final = ("depth", "bookTicker", "trade")


@dataclass(frozen=True, slots=True)
class StreamName:
    symbol: str  # as written in the name (lower case for a valid Binance stream)
    channel: str

    @property
    def name(self) -> str:
        return f"{self.symbol}@{self.channel}"


def parse_stream(text: str) -> StreamName | None:
    """`btcusdt@depth@100ms` -> StreamName('btcusdt', 'depth@100ms'); None when the text is not a stream name."""
    match = _STREAM_RE.match(text)
    if match is None:
        return None
    return StreamName(match.group(1), match.group(2))


def usdm_route(channel: str) -> Route:
    return "public" if channel.startswith(_USDM_PUBLIC_PREFIXES) else "market"


def depth_cadences(venue: Venue) -> dict[str, int]:
    return SPOT_DEPTH_CADENCE_MS if venue is Venue.SPOT else USDM_DEPTH_CADENCE_MS


def channels(venue: Venue) -> frozenset[str]:
    return SPOT_CHANNELS if venue is Venue.SPOT else USDM_CHANNELS


def deliverable(venue: Venue, route: Route | None, stream: StreamName, symbols: frozenset[str]) -> bool:
    """Whether a connection on `route` receives data for `stream` (a subscription may be accepted and stay silent:
    an unknown symbol, upper-case letters, or a USD-M stream on the wrong route)."""
    if stream.symbol not in symbols or stream.channel not in channels(venue):
        return False
    if venue is Venue.USDM:
        # Unrouted URLs (/ws, /stream) behave as /public, as the real venue does since the split.
        return usdm_route(stream.channel) == (route or "public")
    return True
