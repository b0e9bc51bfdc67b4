"""`tickstrata writer`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata.writer.app import WriterApp
from tickstrata.writer.settings import WriterSettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        WriterApp,
        WriterSettings,
        argv=argv,
        prog="tickstrata writer",
        description="Redis Streams → QuestDB writer.",
    )
