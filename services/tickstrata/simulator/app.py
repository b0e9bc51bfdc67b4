"""Simulator: the venues' WebSocket and REST protocols on loopback (the skeleton runs the lifecycle)."""

from __future__ import annotations

from typing import ClassVar

from tickstrata.common.lifecycle import ServiceApp, ServiceContext
from tickstrata.simulator.settings import SimulatorSettings


class SimulatorApp(ServiceApp[SimulatorSettings]):
    name: ClassVar[str] = "simulator"

    async def start(self, context: ServiceContext) -> None:
        """Nothing to serve yet: the venue protocols arrive with the collector issue."""
