"""Collector settings: environment variables prefixed `COLLECTOR_`, or a feed file for the feed itself.

One collector process serves one feed: a venue, its symbols and channels. The feed can come from variables
(`COLLECTOR_EXCHANGE=binance COLLECTOR_SYMBOLS=BTC-USDT,ETH-USDT`) or from `COLLECTOR_FEED_FILE`, a JSON/YAML file
with the same keys (what the operator mounts from its ConfigMap); values in the file win over the defaults and the
variables name everything else (connections, limits, Redis).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from tickstrata.common.grpc_app import GrpcRedisSettings
from tickstrata.common.settings import service_config, split_csv

SUPPORTED_EXCHANGES = ("binance", "binance-usdm")
ALL_CHANNELS = ("trades", "candles", "quotes", "books", "funding")
FEED_KEYS = ("exchange", "symbols", "channels", "ws_url", "rest_url")


def _read_feed_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"feed_file {path}: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"feed_file {path}: expected a mapping with keys {', '.join(FEED_KEYS)}")
    unknown = sorted(set(loaded) - set(FEED_KEYS))
    if unknown:
        raise ValueError(f"feed_file {path}: unknown keys {unknown}; known: {', '.join(FEED_KEYS)}")
    return {key: split_csv(value) if key in ("symbols", "channels") else value for key, value in loaded.items()}


class CollectorSettings(GrpcRedisSettings):
    model_config = service_config("COLLECTOR_")

    health_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the HTTP health server."""

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    """Port of the BackfillService gRPC server."""

    feed_file: Path | None = None
    """A JSON or YAML file with exchange, symbols, channels, ws_url, rest_url (overrides the variables)."""

    exchange: str = "binance"
    """Venue id: binance (spot) or binance-usdm (USD-M perpetuals)."""

    feed_name: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=120)
    """Name of this feed's statistics hash (`stats:collector:<name>`); empty: the exchange id. The operator sets
    `<namespace>.<ExchangeFeed name>`."""

    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["BTC-USDT"])
    """Normalized symbols, comma-separated: BTC-USDT,ETH-USDT (spot) or BTC-USDT-PERP (USD-M)."""

    channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Channels, comma-separated: trades, candles, quotes, books, funding (binance-usdm only); default: all."""

    api_key: SecretStr = SecretStr("")
    """The venue API key, from the ExchangeFeed's `credentials.secretRef` (the operator passes it as a Secret
    reference). The public channels collected today need none: it is held, never logged, and not yet sent."""

    api_secret: SecretStr = SecretStr("")
    """The venue API secret that goes with `api_key`; the same rules."""

    ws_url: str | None = None
    """WebSocket base URL (ws:// or wss://); default the venue's. Point it at the simulator or a testnet."""

    rest_url: str | None = None
    """REST base URL (http:// or https://); default the venue's."""

    book_levels: int = Field(default=20, ge=1, le=1000)
    """Levels per side in published book snapshots."""

    book_snapshot_interval_ms: int = Field(default=1000, ge=50, le=3_600_000)
    """How often a top-N book snapshot is published per symbol."""

    depth_snapshot_limit: int = Field(default=1000, ge=5, le=5000)
    """Levels requested in the REST depth snapshot that seeds each local book."""

    watchdog_timeout_secs: float = Field(default=30.0, gt=0, le=3600)
    """A connection that receives nothing for this long is treated as dead and replaced."""

    reconnect_initial_secs: float = Field(default=0.5, gt=0, le=60)
    """First reconnect delay; doubles per failed attempt, with full jitter."""

    reconnect_max_secs: float = Field(default=30.0, gt=0, le=600)
    """Cap of the reconnect delay."""

    connection_max_age_secs: float = Field(default=23 * 3600.0, gt=0)
    """Replace a connection before the venue's 24-hour cut, overlapping old and new so nothing is missed."""

    publish_queue_events: int = Field(default=50_000, ge=100, le=5_000_000)
    """Bound of the in-process queue between the sockets and Redis. When full, trades, candles and funding wait
    (reading pauses: backpressure to the venue) and quotes and books are dropped, each window published as a gap."""

    publish_batch_events: int = Field(default=500, ge=1, le=1000)
    """Events per stream entry at most (one XADD carries a small batch)."""

    publish_linger_ms: float = Field(default=1.0, ge=0, le=100)
    """How long the publisher lets a batch fill before a Redis round trip (0: never wait)."""

    quarantine_max_entries: int = Field(default=10_000, ge=100)
    """Cap (`MAXLEN`) of `qa:quarantine`, which no consumer group trims; what the cap pushes out is counted.
    Market-data streams have no length cap: only their consumers trim them, below what every group acknowledged."""

    rest_weight_safety_ratio: float = Field(default=0.8, gt=0, le=1)
    """Fraction of the venue's REST weight limit this process allows itself."""

    future_tolerance_ms: int = Field(default=5000, ge=0, le=600_000)
    """Events stamped further than this in the future (by the venue) are quarantined."""

    @field_validator("symbols", "channels", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        if value not in SUPPORTED_EXCHANGES:
            raise ValueError(f"unsupported exchange {value!r}; supported: {', '.join(SUPPORTED_EXCHANGES)}")
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ALL_CHANNELS))
        if unknown or not value:
            raise ValueError(f"unknown channels {unknown or value}; known: {', '.join(ALL_CHANNELS)}")
        return value

    @field_validator("ws_url")
    @classmethod
    def _ws_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value.rstrip("/") if value else value

    @field_validator("rest_url")
    @classmethod
    def _http_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="before")
    @classmethod
    def _merge_feed_file(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        path = data.get("feed_file")
        if path:
            data = {**data, **_read_feed_file(Path(path))}
        if not data.get("channels"):
            perpetual = data.get("exchange") == "binance-usdm"
            data = {**data, "channels": [c for c in ALL_CHANNELS if perpetual or c != "funding"]}
        return data

    @model_validator(mode="after")
    def _funding_needs_perpetuals(self) -> CollectorSettings:
        if "funding" in self.channels and self.exchange != "binance-usdm":
            # A spot venue has no funding; silently ignoring the channel would hide a misconfigured feed.
            raise ValueError("channel 'funding' exists only on binance-usdm")
        if self.reconnect_max_secs < self.reconnect_initial_secs:
            raise ValueError("reconnect_max_secs must be >= reconnect_initial_secs")
        return self

    # BackfillService limits (collector/backfill_table.py): every job and every request id it keeps is bounded.
    backfill_max_running_jobs: int = Field(default=2, ge=1, le=64)
    """Backfill jobs fetching at once; they share the venue's REST weight budget, so more only slices it thinner."""

    backfill_max_queued_jobs: int = Field(default=256, ge=0, le=100_000)
    """Backfill jobs waiting (first come, first served) beyond the running ones; a new one beyond this is refused
    with RESOURCE_EXHAUSTED."""

    backfill_finished_retention_secs: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    """How long a finished job (and its request_id) stays answerable; then GetBackfillStatus says NOT_FOUND."""

    backfill_max_finished_jobs: int = Field(default=1000, ge=1, le=100_000)
    """Finished jobs kept at most, within the retention; beyond it the oldest are forgotten first."""

    # Hostile-response limits (collector/rest.py, feed.py, quarantine_budget.py): no single answer stops the feed.
    rest_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    """Largest REST body read, on the wire and decompressed; a bigger one is refused unread (spot exchangeInfo
    without permission sets, the largest legitimate answer, is a few MB; a 5000-level depth snapshot ~0.4 MB)."""

    quarantine_max_bytes_per_sec: int = Field(default=1024 * 1024, ge=1024)
    """Bytes of quarantine records published per second at most (burst: one second); beyond it payloads are cut,
    then records dropped, and both are counted."""

    snapshot_retry_initial_secs: float = Field(default=0.5, gt=0, le=60)
    """First delay before re-fetching a depth snapshot that failed or was refused; doubles, with full jitter."""

    snapshot_retry_max_secs: float = Field(default=30.0, gt=0, le=600)
    """Cap of the depth snapshot retry delay."""
