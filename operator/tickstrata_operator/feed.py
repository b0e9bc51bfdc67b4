"""An ExchangeFeed as the operator reads it: the resource's body parsed into a frozen value. Pure: no I/O.

The CRD's schema and CEL rules already refuse bad resources at the API server, with defaults filled in. This
parser checks the same rules again because a resource may predate the current CRD (stored under an older
schema) or reach the operator through a path that skipped validation; it then refuses with the field path, and
the reconciler reports that as a permanent error in the `Degraded` condition instead of building bad children.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

API_GROUP: Final = "tickstrata.io"
API_VERSION: Final = "v1alpha1"
PLURAL: Final = "exchangefeeds"
KIND: Final = "ExchangeFeed"

MAX_NAME_CHARS: Final = 40
"""Child names add up to 12 characters and CronJob names may not exceed 52 (the CRD says the same)."""
NAME_PATTERN: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""A DNS label starting with a letter (RFC 1035), not just any object name: the collector's Service is named after
the feed, and Service names may hold no dot and may not start with a digit (the CRD says the same)."""

VENUES: Final[Mapping[tuple[str, str], str]] = {
    ("binance", "spot"): "binance",
    ("binance", "usdm-futures"): "binance-usdm",
}
"""(exchange, market) → the collector's venue id (`COLLECTOR_EXCHANGE`, the `md:<venue>:*` stream names)."""

SYMBOL_PATTERN: Final = re.compile(r"^[A-Z0-9]{1,24}-[A-Z0-9]{1,24}(-PERP)?$")
BOOK_DEPTHS: Final = (5, 10, 20, 50, 100, 500, 1000)


class InvalidFeedError(ValueError):
    """The resource cannot be reconciled as it is; `field` is its path (`spec.retention.warmDays`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Channels:
    trades: bool
    candles: bool
    quotes: bool
    funding: bool
    book: bool
    book_depth: int
    book_snapshot_interval_ms: int

    def collector_channels(self) -> list[str]:
        """The collector's channel names (`COLLECTOR_CHANNELS`), in a fixed order."""
        flags = (
            ("trades", self.trades),
            ("candles", self.candles),
            ("quotes", self.quotes),
            ("books", self.book),
            ("funding", self.funding),
        )
        return [name for name, on in flags if on]


@dataclass(frozen=True, slots=True)
class Retention:
    hot_days: int
    warm_days: int
    cold_days: int
    """0 keeps cold data forever (no expiry CronJob)."""


@dataclass(frozen=True, slots=True)
class Feed:
    """Everything the children are built from (nothing else of the resource is read)."""

    name: str
    namespace: str
    uid: str
    generation: int
    exchange: str
    market: str
    symbols: tuple[str, ...]
    channels: Channels
    retention: Retention
    tiering_schedule: str
    tiering_time_zone: str
    resources: Mapping[str, Mapping[str, str]]
    ws_url: str | None
    rest_url: str | None
    credentials_secret: str | None
    suspend: bool

    @property
    def venue(self) -> str:
        return VENUES[(self.exchange, self.market)]


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidFeedError(field, f"expected an object, got {type(value).__name__}")
    return value


def _int(section: Mapping[str, Any], key: str, field: str, default: int, *, low: int, high: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidFeedError(f"{field}.{key}", f"expected an integer in [{low}, {high}], got {value!r}")
    return value


def _bool(section: Mapping[str, Any], key: str, field: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise InvalidFeedError(f"{field}.{key}", f"expected true or false, got {value!r}")
    return value


def _channels(spec: Mapping[str, Any], market: str) -> Channels:
    section = _mapping(spec.get("channels"), "spec.channels")
    book = _mapping(section.get("book"), "spec.channels.book")
    depth = book.get("depth", 20)
    if depth not in BOOK_DEPTHS:
        raise InvalidFeedError("spec.channels.book.depth", f"expected one of {list(BOOK_DEPTHS)}, got {depth!r}")
    channels = Channels(
        trades=_bool(section, "trades", "spec.channels", True),
        candles=_bool(section, "candles", "spec.channels", True),
        quotes=_bool(section, "quotes", "spec.channels", False),
        funding=_bool(section, "funding", "spec.channels", False),
        book=_bool(book, "enabled", "spec.channels.book", False),
        book_depth=depth,
        book_snapshot_interval_ms=_int(book, "snapshotIntervalMs", "spec.channels.book", 1000, low=50, high=3_600_000),
    )
    if not channels.collector_channels():
        raise InvalidFeedError("spec.channels", "enable at least one channel")
    if channels.funding and market != "usdm-futures":
        raise InvalidFeedError("spec.channels.funding", "funding rates exist only on the usdm-futures market")
    return channels


def _retention(spec: Mapping[str, Any]) -> Retention:
    section = _mapping(spec.get("retention"), "spec.retention")
    retention = Retention(
        hot_days=_int(section, "hotDays", "spec.retention", 7, low=1, high=90),
        warm_days=_int(section, "warmDays", "spec.retention", 365, low=2, high=3650),
        cold_days=_int(section, "coldDays", "spec.retention", 0, low=0, high=36500),
    )
    if retention.warm_days <= retention.hot_days:
        raise InvalidFeedError("spec.retention.warmDays", "must be greater than hotDays")
    if retention.cold_days and retention.cold_days <= retention.warm_days:
        raise InvalidFeedError("spec.retention.coldDays", "must be 0 (keep forever) or greater than warmDays")
    return retention


def _symbols(spec: Mapping[str, Any], market: str) -> tuple[str, ...]:
    symbols = spec.get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise InvalidFeedError("spec.symbols", "name at least one symbol, e.g. BTC-USDT")
    for index, symbol in enumerate(symbols):
        if not isinstance(symbol, str) or not SYMBOL_PATTERN.match(symbol):
            raise InvalidFeedError(f"spec.symbols[{index}]", f"expected BASE-QUOTE in upper case, got {symbol!r}")
    if len(set(symbols)) != len(symbols):
        raise InvalidFeedError("spec.symbols", "each symbol at most once")
    perpetual = market == "usdm-futures"
    for index, symbol in enumerate(symbols):
        if symbol.endswith("-PERP") is not perpetual:
            raise InvalidFeedError(
                f"spec.symbols[{index}]",
                f"{market} symbols {'end' if perpetual else 'do not end'} in -PERP, got {symbol!r}",
            )
    return tuple(symbols)


def _resources(spec: Mapping[str, Any]) -> Mapping[str, Mapping[str, str]]:
    collector = _mapping(spec.get("collector"), "spec.collector")
    resources = _mapping(collector.get("resources"), "spec.collector.resources")
    if not resources:
        return {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    built: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        section = _mapping(resources.get(kind), f"spec.collector.resources.{kind}")
        built[kind] = {key: str(section[key]) for key in ("cpu", "memory") if key in section}
    return {kind: values for kind, values in built.items() if values}


def parse_feed(body: Mapping[str, Any]) -> Feed:
    """The feed described by an ExchangeFeed's body; raise `InvalidFeedError` naming the field."""
    metadata = _mapping(body.get("metadata"), "metadata")
    name = str(metadata.get("name", ""))
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidFeedError("metadata.name", f"1 to {MAX_NAME_CHARS} characters, got {len(name)}")
    if not NAME_PATTERN.match(name):
        raise InvalidFeedError(
            "metadata.name", f"lower-case letters, digits and '-', starting with a letter (a DNS label), got {name!r}"
        )
    spec = _mapping(body.get("spec"), "spec")
    exchange, market = spec.get("exchange"), spec.get("market")
    if (exchange, market) not in VENUES:
        known = ", ".join(f"{e}/{m}" for e, m in VENUES)
        field = "spec.exchange" if exchange not in {e for e, _ in VENUES} else "spec.market"
        raise InvalidFeedError(field, f"unknown exchange/market {exchange}/{market}; known: {known}")
    tiering = _mapping(spec.get("tiering"), "spec.tiering")
    endpoints = _mapping(spec.get("endpoints"), "spec.endpoints")
    credentials = _mapping(spec.get("credentials"), "spec.credentials")
    secret_ref = _mapping(credentials.get("secretRef"), "spec.credentials.secretRef")
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise InvalidFeedError("spec.suspend", f"expected true or false, got {suspend!r}")
    return Feed(
        name=name,
        namespace=str(metadata.get("namespace", "default")),
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation", 0)),
        exchange=str(exchange),
        market=str(market),
        symbols=_symbols(spec, str(market)),
        channels=_channels(spec, str(market)),
        retention=_retention(spec),
        tiering_schedule=str(tiering.get("schedule", "17 * * * *")),
        tiering_time_zone=str(tiering.get("timeZone", "Etc/UTC")),
        resources=_resources(spec),
        ws_url=endpoints.get("wsUrl"),
        rest_url=endpoints.get("restUrl"),
        credentials_secret=secret_ref.get("name") or None,
        suspend=suspend,
    )
