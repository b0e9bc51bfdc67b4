"""Simulator settings: environment variables prefixed `SIMULATOR_`."""

from __future__ import annotations

from pydantic import Field

from tickstrata.common.settings import ServiceSettings, service_config


class SimulatorSettings(ServiceSettings):
    model_config = service_config("SIMULATOR_")

    health_port: int = Field(default=8086, ge=0, le=65535)
    """Port of the HTTP health server."""

    host: str = "127.0.0.1"
    """Address the simulated venues listen on (loopback: the simulator is for tests and demos)."""

    port: int = Field(default=8765, ge=0, le=65535)
    """Port of the simulated venues' WebSocket and REST endpoints."""

    seed: int = 42
    """Seed of the generated markets: the same seed replays the same trades, books and klines."""
