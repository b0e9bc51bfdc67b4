"""Validator settings: environment variables prefixed `VALIDATOR_`."""

from __future__ import annotations

import socket

from pydantic import Field, field_validator

from tickstrata.common.backfill_routes import parse_address
from tickstrata.common.events import validate_exchange
from tickstrata.common.grpc_app import GrpcRedisSettings
from tickstrata.common.settings import service_config


def parse_backfill_addresses(text: str) -> dict[str, str]:
    """`binance=collector-a:50051,binance-usdm=collector-b:50051` → {exchange: host:port}."""
    addresses: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        exchange, sep, address = item.partition("=")
        if not sep:
            raise ValueError(f"expected exchange=host:port, got {item!r}")
        addresses[validate_exchange(exchange.strip())] = parse_address(address.strip())
    return addresses


class ValidatorSettings(GrpcRedisSettings):
    model_config = service_config("VALIDATOR_")

    health_port: int = Field(default=8083, ge=0, le=65535)
    """Port of the HTTP health server."""

    grpc_port: int = Field(default=50053, ge=0, le=65535)
    """Port of the QualityService gRPC server."""

    questdb_http_url: str = Field(default="http://127.0.0.1:9000", pattern=r"^https?://")
    """QuestDB's HTTP endpoint: the ledger tables (DDL and reads over /exec, rows over ILP)."""

    consumer_name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    """This validator's consumer name in the `validator` group (one replica: the ledger is in its memory)."""

    backfill_addresses: str = ""
    """Each exchange's collector BackfillService, `exchange=host:port` joined by commas (`tickstrata up` sets it).
    Without one, the routes the operator publishes in Redis (`backfill:routes:<exchange>`) are used; an instrument
    with neither keeps its holes `missing` (logged once)."""

    grace_secs: float = Field(default=30.0, ge=1, le=3600)
    """How long after a minute ends its data may still arrive before the minute is judged (the watermark)."""

    flush_interval_secs: float = Field(default=2.0, gt=0, le=60)
    """How often states that changed with time (the watermark moved) are persisted, gaps resolved and
    completeness published, when no entry arrives."""

    backfill_poll_secs: float = Field(default=0.5, gt=0, le=60)
    """How often backfill jobs are planned, submitted and polled."""

    max_jobs_per_exchange: int = Field(default=4, ge=1, le=64)
    """Backfill jobs this validator keeps at a collector at once (it queues the rest; the venue's budget is the
    collector's)."""

    max_ask_minutes: int = Field(default=360, ge=1, le=44_640)
    """The longest window one backfill job asks for."""

    completeness_window_secs: int = Field(default=86_400, ge=60)
    """The rolling window of the per-feed completeness published to Redis (the ExchangeFeed column)."""

    horizon_hours: float = Field(default=48.0, gt=0, le=24 * 31)
    """How much of the ledger stays in memory (and is reloaded from QuestDB after a restart)."""

    sequential_trade_id_exchanges: str = "binance,binance-usdm"
    """Exchanges whose trade ids are consecutive integers per symbol: their trade-id continuity is checked."""

    volume_matches_trades_exchanges: str = "binance,binance-usdm"
    """Exchanges whose 1-minute candle volume is exactly the sum of their trades' sizes: a minute whose live trades
    fall short of its candle is asked of the venue, even with no gap reported."""

    stale_after_secs: float = Field(default=120.0, gt=0)
    """An instrument that was trading and is quiet longer than this is a `stale` violation (once per spell)."""

    price_deviation_percent: float = Field(default=1.0, gt=0, le=100)
    """A venue's last price further than this from the other venues' (same symbol) is a `price_deviation`."""

    batch_entries: int = Field(default=1000, ge=1, le=100_000)
    """Stream entries read per batch."""

    block_ms: int = Field(default=1000, ge=1, le=60_000)
    """How long a read waits for new entries."""

    @field_validator("backfill_addresses")
    @classmethod
    def _addresses(cls, value: str) -> str:
        parse_backfill_addresses(value)
        return value

    @field_validator("sequential_trade_id_exchanges", "volume_matches_trades_exchanges")
    @classmethod
    def _exchanges(cls, value: str) -> str:
        for exchange in (part.strip() for part in value.split(",")):
            if exchange:
                validate_exchange(exchange)
        return value

    def backfill_address_map(self) -> dict[str, str]:
        return parse_backfill_addresses(self.backfill_addresses)

    def sequential_exchanges(self) -> frozenset[str]:
        return _exchange_set(self.sequential_trade_id_exchanges)

    def volume_matching_exchanges(self) -> frozenset[str]:
        return _exchange_set(self.volume_matches_trades_exchanges)


def _exchange_set(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())
