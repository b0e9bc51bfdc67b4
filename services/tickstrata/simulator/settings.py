"""Simulator settings: environment variables prefixed `SIMULATOR_` (flags of `tickstrata simulate` map onto them)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tickstrata.common.settings import ServiceSettings, service_config


class SimulatorSettings(ServiceSettings):
    model_config = service_config("SIMULATOR_")

    health_port: int = Field(default=8086, ge=0, le=65535)
    """Port of the HTTP health server."""

    host: str = "127.0.0.1"
    """Address the simulated venues listen on (loopback: the simulator is for tests and demos)."""

    spot_port: int = Field(default=8765, ge=0, le=65535)
    """Port of the Binance spot host (WebSocket and REST); 0 picks a free one."""

    usdm_port: int = Field(default=8766, ge=0, le=65535)
    """Port of the Binance USD-M host (WebSocket and REST); 0 picks a free one."""

    ports_file: Path | None = None
    """If set, the bound ports are written here as JSON ({"binance": p, "binance-usdm": p}) once listening."""

    seed: int = 42
    """Seed of the generated markets: the same seed replays the same trades, books and klines."""

    symbols: str = ""
    """Comma-separated symbols (BTCUSDT,ETHUSDT); empty means the whole catalogue (24 symbols)."""

    trades_per_sec: float = Field(default=2.0, ge=0)
    """Mean aggregate trades per second per symbol while running."""

    history_trades_per_sec: float = Field(default=0.5, ge=0)
    """Mean aggregate trades per second per symbol before the simulator started (REST history)."""

    history_minutes: int = Field(default=2 * 24 * 60, ge=1)
    """How far back REST history goes (the symbols' "listing")."""

    book_depth: int = Field(default=100, ge=5, le=5000)
    """Price levels kept per side of each book."""

    book_updates_per_sec: float = Field(default=10.0, ge=0)
    """Mean quote changes per second per symbol besides those trades cause."""

    empty_kline_mode: Literal["flat", "skip"] = "flat"
    """A minute without trades: a flat zero-volume candle (Binance spot), or no candle at all (WS and REST)."""

    kline_push_ms: int = Field(default=2000, ge=100)
    """How often an in-progress 1-minute kline is pushed (Binance: about every 2 s); closed klines always go out."""

    tick_ms: int = Field(default=20, ge=1, le=1000)
    """How often the markets advance and frames go out."""

    max_streams: int = Field(default=1024, ge=1)
    """Streams allowed per WebSocket connection."""

    spot_max_incoming_per_sec: int = Field(default=5, ge=1)
    """Incoming messages (text, ping, pong) per second before a spot connection is closed."""

    usdm_max_incoming_per_sec: int = Field(default=10, ge=1)
    """The same for USD-M."""

    spot_ping_interval_secs: float = Field(default=20.0, gt=0)
    """Server ping frames on spot connections."""

    spot_pong_timeout_secs: float = Field(default=60.0, gt=0)
    """Spot closes a connection whose pong has not arrived this long after a ping."""

    usdm_ping_interval_secs: float = Field(default=180.0, gt=0)
    """Server ping frames on USD-M connections."""

    usdm_pong_timeout_secs: float = Field(default=600.0, gt=0)
    """USD-M pong deadline."""

    max_connection_secs: float = Field(default=86_400.0, gt=0)
    """Connection lifetime: the venue's 24-hour cut."""

    send_server_shutdown: bool = True
    """Announce the cut with a `serverShutdown` event before closing."""

    spot_weight_limit_per_min: int = Field(default=6000, ge=1)
    """REST request weight per minute on spot."""

    usdm_weight_limit_per_min: int = Field(default=2400, ge=1)
    """REST request weight per minute on USD-M."""

    ban_secs: int = Field(default=120, ge=1)
    """First 418 ban length; each further ban doubles it."""

    scenario_file: Path | None = None
    """JSON or YAML list of faults, each optionally with `at_secs` after start."""

    replay_file: Path | None = None
    """Serve this capture (JSON lines) instead of generated data."""

    replay_speed: float = Field(default=1.0, ge=0)
    """Replay pace: 1 = recorded speed, 10 = ten times faster, 0 = as fast as possible."""

    replay_wait_for_client: bool = True
    """Start the replay when the first client subscribes to one of its streams."""

    record_file: Path | None = None
    """Append every frame sent as a capture line here (the replay format)."""

    tls_cert_file: Path | None = None
    """PEM certificate: serve wss:// and https:// instead of ws:// and http://."""

    tls_key_file: Path | None = None
    """PEM private key of the certificate."""

    @property
    def symbol_list(self) -> tuple[str, ...]:
        return tuple(s.strip().upper() for s in self.symbols.split(",") if s.strip())
