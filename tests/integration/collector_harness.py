"""Run a real collector process against a real simulator and real Redis, and read back what it published."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.integration.servers.simulator_fixtures import SimulatorEndpoints
from tickstrata.common.events import Event, Gap, Quarantine, Trade
from tickstrata.common.streams import GAP_STREAM, QUARANTINE_STREAM, decode_entry
from tickstrata.localstack.process import ManagedServer, free_port

READY_TIMEOUT_SECS = 60.0


def post_fault(endpoints: SimulatorEndpoints, exchange: str, fault: dict[str, Any]) -> dict[str, Any]:
    """Inject a fault now; return the simulator's record of it (its `effects` are the ground truth)."""
    request = urllib.request.Request(
        f"{endpoints.rest_url(exchange)}/_sim/faults",
        data=json.dumps(fault).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        applied: list[dict[str, Any]] = json.loads(response.read())["applied"]
    return applied[0]


def simulator_state(endpoints: SimulatorEndpoints, exchange: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{endpoints.rest_url(exchange)}/_sim/state", timeout=10) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def faults(endpoints: SimulatorEndpoints, exchange: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{endpoints.rest_url(exchange)}/_sim/faults", timeout=10) as response:
        records: list[dict[str, Any]] = json.loads(response.read())["faults"]
    return records


def wait_until(predicate: Callable[[], bool], *, timeout_secs: float, what: str) -> None:
    deadline = time.monotonic() + timeout_secs
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs:.0f} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Published:
    """Everything in Redis, decoded."""

    client: redis.Redis

    def events(self, stream: str) -> list[Event]:
        decoded: list[Event] = []
        for _entry_id, fields in self.client.xrange(stream) or []:
            assert fields is not None
            decoded.extend(decode_entry(fields).events)
        return decoded

    def trades(self, exchange: str) -> dict[str, list[Trade]]:
        by_symbol: dict[str, list[Trade]] = defaultdict(list)
        for event in self.events(f"md:{exchange}:trades"):
            assert isinstance(event, Trade)
            by_symbol[event.symbol].append(event)
        return by_symbol

    def gaps(self) -> list[Gap]:
        return [event for event in self.events(GAP_STREAM) if isinstance(event, Gap)]

    def quarantined(self) -> list[Quarantine]:
        return [event for event in self.events(QUARANTINE_STREAM) if isinstance(event, Quarantine)]


@dataclass
class CollectorProcess:
    process: ManagedServer
    health_port: int
    grpc_port: int

    def readyz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (urllib.error.URLError, OSError):
            return 0

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


@contextmanager
def running_collector(
    directory: Path,
    endpoints: SimulatorEndpoints,
    redis_url: str,
    *,
    exchange: str,
    symbols: list[str],
    channels: list[str] | None = None,
    **settings: str,
) -> Iterator[CollectorProcess]:
    """A `tickstrata collector` process; stopped by SIGTERM afterwards, and its clean exit is asserted."""
    health_port, grpc_port = free_port(), free_port()
    env = {
        **os.environ,
        "COLLECTOR_EXCHANGE": exchange,
        "COLLECTOR_SYMBOLS": ",".join(symbols),
        "COLLECTOR_WS_URL": endpoints.ws_url(exchange),
        "COLLECTOR_REST_URL": endpoints.rest_url(exchange),
        "COLLECTOR_REDIS_URL": redis_url,
        "COLLECTOR_HEALTH_HOST": "127.0.0.1",
        "COLLECTOR_HEALTH_PORT": str(health_port),
        "COLLECTOR_GRPC_HOST": "127.0.0.1",
        "COLLECTOR_GRPC_PORT": str(grpc_port),
        "COLLECTOR_RECONNECT_INITIAL_SECS": "0.05",
        "COLLECTOR_RECONNECT_MAX_SECS": "0.5",
        "COLLECTOR_BOOK_SNAPSHOT_INTERVAL_MS": "250",
        **{f"COLLECTOR_{key.upper()}": value for key, value in settings.items()},
    }
    if channels:
        env["COLLECTOR_CHANNELS"] = ",".join(channels)
    process = ManagedServer(
        name=f"collector-{exchange}",
        argv=[sys.executable, "-m", "tickstrata", "collector"],
        log_path=directory / f"collector-{exchange}.log",
        env=env,
    )
    process.start()
    collector = CollectorProcess(process, health_port, grpc_port)
    try:
        process.wait_ready(lambda: collector.readyz() == 200, timeout_secs=READY_TIMEOUT_SECS)
        yield collector
    finally:
        code = process.stop(timeout_secs=30)
    assert code == 0, f"collector exited with {code}\n{collector.log()[-4000:]}"
    assert "Traceback" not in collector.log(), collector.log()[-4000:]
