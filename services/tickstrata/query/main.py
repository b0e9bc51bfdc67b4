"""`tickstrata query`."""

from __future__ import annotations

from collections.abc import Sequence

from tickstrata.common.cli_support import run_from_cli
from tickstrata.query.app import QueryApp
from tickstrata.query.settings import QuerySettings


def main(argv: Sequence[str] | None = None) -> int:
    return run_from_cli(
        QueryApp,
        QuerySettings,
        argv=argv,
        prog="tickstrata query",
        description="MarketDataService: latest prices, candles, trades, replay.",
    )
