"""`tickstrata operator`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata_operator.app import OperatorApp
from tickstrata_operator.settings import OperatorSettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        OperatorApp,
        OperatorSettings,
        argv=argv,
        prog="tickstrata operator",
        description="Kubernetes operator for ExchangeFeed resources.",
    )
