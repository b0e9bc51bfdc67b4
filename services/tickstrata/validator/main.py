"""`tickstrata validator`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata.validator.app import ValidatorApp
from tickstrata.validator.settings import ValidatorSettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        ValidatorApp,
        ValidatorSettings,
        argv=argv,
        prog="tickstrata validator",
        description="Completeness ledger and QualityService.",
    )
