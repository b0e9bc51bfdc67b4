"""`tickstrata tierer`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata.tierer.app import TiererApp
from tickstrata.tierer.settings import TiererSettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        TiererApp,
        TiererSettings,
        argv=argv,
        prog="tickstrata tierer",
        description="Hot → warm → cold retention and archival.",
    )
