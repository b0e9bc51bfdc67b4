"""`tickstrata latest`: the latest price of a symbol per exchange, from the query service.

    $ tickstrata latest BTC-USDT --exchange binance --exchange kraken --exchange okx
    exchange    price  age ms  stale
    binance   64321.5    12.4
    kraken    64320.1  8123.0  STALE
    missing: okx

Exit status: 0 on an answer (even an empty one), 1 when the query service cannot be reached or fails, 2 for a
malformed request (bad symbol or exchange id, or a bad option).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from tickstrata.client.market_data import (
    DEFAULT_ADDRESS,
    DEFAULT_STALE_AFTER_MS,
    DEFAULT_TIMEOUT_SECS,
    InvalidQueryError,
    LatestPrices,
    MarketDataClient,
    QueryError,
)

HEADERS = ("exchange", "price", "age ms", "stale")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickstrata latest",
        description="The latest price of a symbol on each exchange, from the query service's latest-price cache.",
    )
    parser.add_argument("symbol", help="normalized symbol, e.g. BTC-USDT or BTC-USDT-PERP")
    parser.add_argument(
        "--exchange",
        "-e",
        dest="exchanges",
        action="append",
        default=[],
        metavar="EXCHANGE",
        help="exchange id to read (repeatable); default: every exchange holding the symbol",
    )
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, help=f"query service gRPC address (default {DEFAULT_ADDRESS})"
    )
    parser.add_argument(
        "--stale-after-ms",
        type=float,
        default=DEFAULT_STALE_AFTER_MS,
        help=f"flag prices received longer ago than this (default {DEFAULT_STALE_AFTER_MS})",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_SECS, help=f"seconds (default {DEFAULT_TIMEOUT_SECS:g})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def to_json(result: LatestPrices) -> str:
    """Prices as exact decimal strings, timestamps as integer ns."""
    return json.dumps(
        {
            "symbol": result.symbol,
            "prices": [
                {
                    "exchange": row.exchange,
                    "price": format(row.price, "f"),
                    "ts_event_ns": row.ts_event_ns,
                    "ts_recv_ns": row.ts_recv_ns,
                    "age_ms": round(row.age_ms, 3),
                    "stale": row.stale,
                }
                for row in result.rows
            ],
            "missing_exchanges": list(result.missing_exchanges),
        },
        indent=2,
    )


def to_table(result: LatestPrices) -> str:
    """A plain aligned table: exchange left, numbers right, then the named exchanges that had no price."""
    if not result.rows:
        lines = [f"no cached price for {result.symbol}"]
    else:
        cells = [
            (row.exchange, format(row.price, "f"), f"{row.age_ms:.1f}", "STALE" if row.stale else "")
            for row in result.rows
        ]
        widths = [max(len(header), *(len(row[i]) for row in cells)) for i, header in enumerate(HEADERS)]

        def line(values: Sequence[str]) -> str:
            exchange, price, age, stale = values
            text = f"{exchange:<{widths[0]}}  {price:>{widths[1]}}  {age:>{widths[2]}}  {stale:<{widths[3]}}"
            return text.rstrip()

        lines = [line(HEADERS), *(line(row) for row in cells)]
    if result.missing_exchanges:
        lines.append(f"missing: {', '.join(result.missing_exchanges)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args = build_parser().parse_args(argv)
    try:
        with MarketDataClient(args.address, timeout_secs=args.timeout, stale_after_ms=args.stale_after_ms) as client:
            result = client.latest_prices(args.symbol, args.exchanges)
    except InvalidQueryError as exc:
        print(f"tickstrata latest: {exc}", file=err)
        return 2
    except QueryError as exc:
        print(f"tickstrata latest: {exc}", file=err)
        return 1
    print(to_json(result) if args.json else to_table(result), file=out)
    return 0
