"""The exchange simulator as a real process (`tickstrata simulate`), on free loopback ports, for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tickstrata.localstack.simulator import SimulatorEndpoints, start_simulator

__all__ = ["SimulatorEndpoints", "simulator", "start_simulator"]


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorEndpoints]:
    """A simulator with 20 trades/s per symbol, shared by tests that only read from it."""
    process, endpoints = start_simulator(tmp_path_factory.mktemp("simulator"), trades_per_sec="20")
    try:
        yield endpoints
    finally:
        process.stop()
