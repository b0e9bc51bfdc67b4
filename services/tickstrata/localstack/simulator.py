"""The exchange simulator (`tickstrata simulate`) as a child process on free loopback ports: tests and benchmarks."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tickstrata.localstack.process import ManagedServer, free_port

HOST: Final = "127.0.0.1"
SIMULATOR_START_TIMEOUT_SECS: Final = 60.0


@dataclass(frozen=True)
class SimulatorEndpoints:
    """Where a started simulator listens: a port per exchange (`binance`, `binance-usdm`) and its health port."""

    ports: dict[str, int]
    health_port: int
    tls: bool = False

    def ws_url(self, exchange: str) -> str:
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{self.ports[exchange]}"

    def rest_url(self, exchange: str) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.ports[exchange]}"


def start_simulator(
    directory: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    **settings: str,
) -> tuple[ManagedServer, SimulatorEndpoints]:
    """Start `tickstrata simulate` with `SIMULATOR_*` overrides (`settings` names without the prefix) and wait
    until it is ready; return the process, which the caller stops, and where it listens.

    Its log and ports file go into `directory`. With `tls`, a PEM (certificate, key), it serves wss:// and https://.
    """
    ports_file = directory / "simulator-ports.json"
    health_port = free_port()
    env = {
        **os.environ,
        "SIMULATOR_HEALTH_HOST": HOST,
        "SIMULATOR_HEALTH_PORT": str(health_port),
        "SIMULATOR_SPOT_PORT": "0",
        "SIMULATOR_USDM_PORT": "0",
        "SIMULATOR_PORTS_FILE": str(ports_file),
        **{f"SIMULATOR_{key.upper()}": value for key, value in settings.items()},
    }
    if tls is not None:
        env |= {"SIMULATOR_TLS_CERT_FILE": str(tls[0]), "SIMULATOR_TLS_KEY_FILE": str(tls[1])}
    process = ManagedServer(
        name="simulator",
        argv=[sys.executable, "-m", "tickstrata", "simulate"],
        log_path=directory / "simulator.log",
        env=env,
    )

    def ready() -> bool:
        # The health endpoint is plain HTTP even when the venues serve TLS.
        with urllib.request.urlopen(f"http://{HOST}:{health_port}/readyz", timeout=1) as response:
            return bool(response.status == 200) and ports_file.exists()

    process.start()
    try:
        process.wait_ready(ready, timeout_secs=SIMULATOR_START_TIMEOUT_SECS, interval_secs=0.05)
        ports = {name: int(port) for name, port in json.loads(ports_file.read_text()).items()}
    except BaseException:
        process.stop()  # e.g. Ctrl-C while waiting: never leave an orphan simulator behind
        raise
    return process, SimulatorEndpoints(ports, health_port, tls=tls is not None)
