"""`tickstrata collector`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.collector.app import CollectorApp
from tickstrata.collector.settings import CollectorSettings
from tickstrata.common.cli_support import run_from_cli


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        CollectorApp,
        CollectorSettings,
        argv=argv,
        prog="tickstrata collector",
        description="Exchange WebSockets → Redis Streams; BackfillService.",
    )
