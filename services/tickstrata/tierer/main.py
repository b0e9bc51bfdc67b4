"""`tickstrata tierer`: one run of one stage (`TIERER_STAGE`), then exit (0 done, 1 failed, 3 stopped)."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata.tierer.app import TiererJob
from tickstrata.tierer.settings import TiererSettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        TiererJob,
        TiererSettings,
        argv=argv,
        prog="tickstrata tierer",
        description=(
            "Hot → warm → cold retention and archival: runs one stage (TIERER_STAGE) for one feed, then exits "
            "0 (done), 1 (failed) or 3 (stopped by a signal first). Scheduled as CronJobs by the operator."
        ),
    )
