"""`tickstrata`: one command, a subcommand per role.

Each role's module is imported only when that role runs: kopf and the Kubernetes client stay out of every process
but the operator's, and a command loads only what it uses, which keeps start-up fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final, NamedTuple, cast

from tickstrata import __version__


class Role(NamedTuple):
    module: str
    summary: str


ROLES: Final[dict[str, Role]] = {
    "collector": Role("tickstrata.collector.main", "exchange WebSockets → Redis Streams, latest-price cache"),
    "writer": Role("tickstrata.writer.main", "Redis Streams → QuestDB (hot tier)"),
    "validator": Role("tickstrata.validator.main", "completeness ledger, gap backfill, QualityService"),
    "tierer": Role("tickstrata.tierer.main", "hot → warm (ClickHouse) → cold (Parquet on S3)"),
    "query": Role("tickstrata.query.main", "MarketDataService: latest prices, candles, trades, replay"),
    "simulate": Role("tickstrata.simulator.main", "exchange simulator speaking the venues' protocols"),
    "operator": Role("tickstrata_operator.main", "Kubernetes operator for ExchangeFeed resources"),
    "latest": Role("tickstrata.client.latest_cli", "latest price of a symbol per exchange, from the query service"),
    "candles": Role("tickstrata.client.candles_cli", "candles at any interval, as a table, CSV or Parquet"),
    "trades": Role("tickstrata.client.trades_cli", "trades over a time range, as a table, CSV or Parquet"),
    "quality": Role("tickstrata.client.quality_cli", "completeness per feed, open gaps, violations (--html report)"),
    "up": Role("tickstrata.cli.up", "run the whole pipeline on this machine with local servers"),
}


def usage() -> str:
    width = max(len(name) for name in ROLES)
    rows = "\n".join(f"  {name:<{width}}  {role.summary}" for name, role in ROLES.items())
    return (
        "usage: tickstrata <command> [options]\n\n"
        f"commands:\n{rows}\n  {'version':<{width}}  print the version\n\n"
        "`tickstrata <command> --help` lists that command's options and environment variables."
    )


ROLE_VARIABLE: Final = "TICKSTRATA_ROLE"
"""The command to run when none is given: the container image's role (`docker build --build-arg ROLE=writer`)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args and os.environ.get(ROLE_VARIABLE):
        args = [os.environ[ROLE_VARIABLE]]
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("version", "--version"):
        print(f"tickstrata {__version__}")
        return 0
    role = ROLES.get(command)
    if role is None:
        print(f"tickstrata: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    entry = cast(Callable[[Sequence[str]], int], importlib.import_module(role.module).main)
    return entry(rest)


if __name__ == "__main__":
    sys.exit(main())
