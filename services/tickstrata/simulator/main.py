"""`tickstrata simulate`: flags for the common choices, every setting also as a `SIMULATOR_*` variable.

Flags are sugar over the environment: each sets its variable before the settings are read once, so the process
behaves the same whether a test passes `--seed 7` or `SIMULATOR_SEED=7`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Final

from tickstrata.common.cli_support import run_from_cli
from tickstrata.simulator.app import SimulatorApp
from tickstrata.simulator.settings import SimulatorSettings

# flag -> (environment variable, help)
_FLAGS: Final = {
    "--seed": ("SIMULATOR_SEED", "seed of the generated markets"),
    "--symbols": ("SIMULATOR_SYMBOLS", "comma-separated symbols (default: all 24)"),
    "--trades-per-sec": ("SIMULATOR_TRADES_PER_SEC", "mean trades per second per symbol"),
    "--spot-port": ("SIMULATOR_SPOT_PORT", "Binance spot host port (0: free port)"),
    "--usdm-port": ("SIMULATOR_USDM_PORT", "Binance USD-M host port (0: free port)"),
    "--ports-file": ("SIMULATOR_PORTS_FILE", "write the bound ports here as JSON"),
    "--scenario": ("SIMULATOR_SCENARIO_FILE", "JSON/YAML list of timed faults"),
    "--replay": ("SIMULATOR_REPLAY_FILE", "serve this capture (JSON lines) instead of generated data"),
    "--speed": ("SIMULATOR_REPLAY_SPEED", "replay speed factor (0: as fast as possible)"),
    "--record": ("SIMULATOR_RECORD_FILE", "append every frame sent to this capture file"),
    "--tls-cert": ("SIMULATOR_TLS_CERT_FILE", "PEM certificate (serve wss:// and https://)"),
    "--tls-key": ("SIMULATOR_TLS_KEY_FILE", "PEM private key"),
}


def _flag_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickstrata simulate", add_help=False)
    for flag, (variable, text) in _FLAGS.items():
        parser.add_argument(flag, dest=variable, help=f"{text} ({variable})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _flag_parser()
    if "-h" in args or "--help" in args:
        parser.print_help()
        print()
    known, rest = parser.parse_known_args(args)
    for variable, value in vars(known).items():
        if value is not None:
            os.environ[variable] = value
    return run_from_cli(
        SimulatorApp,
        SimulatorSettings,
        argv=rest,
        prog="tickstrata simulate",
        description="Binance spot and USD-M simulator on loopback: WebSocket + REST, faults, replay.",
    )
