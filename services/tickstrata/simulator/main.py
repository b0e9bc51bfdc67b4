"""`tickstrata simulate`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata.simulator.app import SimulatorApp
from tickstrata.simulator.settings import SimulatorSettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        SimulatorApp,
        SimulatorSettings,
        argv=argv,
        prog="tickstrata simulate",
        description="Exchange simulator on loopback.",
    )
