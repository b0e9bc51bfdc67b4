"""The exchange simulator as a real process (`tickstrata simulate`), on free loopback ports, for the session."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tickstrata.localstack.process import ManagedServer, free_port

SIMULATOR_START_TIMEOUT_SECS = 60.0


@dataclass(frozen=True)
class SimulatorEndpoints:
    ports: dict[str, int]
    health_port: int

    def ws_url(self, exchange: str) -> str:
        return f"ws://127.0.0.1:{self.ports[exchange]}"

    def rest_url(self, exchange: str) -> str:
        return f"http://127.0.0.1:{self.ports[exchange]}"


def start_simulator(directory: Path, **settings: str) -> tuple[ManagedServer, SimulatorEndpoints]:
    """Start `tickstrata simulate` with `SIMULATOR_*` overrides; return the process and where it listens."""
    ports_file = directory / "ports.json"
    health_port = free_port()
    env = {
        **os.environ,
        "SIMULATOR_HEALTH_HOST": "127.0.0.1",
        "SIMULATOR_HEALTH_PORT": str(health_port),
        "SIMULATOR_SPOT_PORT": "0",
        "SIMULATOR_USDM_PORT": "0",
        "SIMULATOR_PORTS_FILE": str(ports_file),
        **{f"SIMULATOR_{key.upper()}": value for key, value in settings.items()},
    }
    process = ManagedServer(
        name="simulator",
        argv=[sys.executable, "-m", "tickstrata", "simulate"],
        log_path=directory / "simulator.log",
        env=env,
    )
    process.start()

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=1) as response:
            return bool(response.status == 200) and ports_file.exists()

    process.wait_ready(ready, timeout_secs=SIMULATOR_START_TIMEOUT_SECS)
    ports = {name: int(port) for name, port in json.loads(ports_file.read_text()).items()}
    return process, SimulatorEndpoints(ports, health_port)


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorEndpoints]:
    """A simulator with 20 trades/s per symbol, shared by tests that only read from it."""
    process, endpoints = start_simulator(tmp_path_factory.mktemp("simulator"), trades_per_sec="20")
    try:
        yield endpoints
    finally:
        process.stop()
