"""`tickstrata candles` and `tickstrata trades`: history from the query service, as a table, CSV or Parquet.

    $ tickstrata candles binance BTC-USDT 1h --from 2026-11-24T00:00Z --to 2026-11-24T06:00Z
    open_time_ns               open      high      low       close     volume   ...
    2026-11-24 00:00:00+00:00  64010.25  64102.5   63990.0   64051.75  12.3051  ...
    6 candles of binance BTC-USDT 1h, 2026-11-24T00:00:00Z → 2026-11-24T06:00:00Z, in 41 ms

    $ tickstrata trades binance BTC-USDT --from -1h --parquet trades.parquet

CSV keeps decimals exact (plain strings); Parquet keeps the Arrow types (decimal128, timestamp[ns, UTC]) with
zstd compression. Exit status: 0 on an answer, 1 when the query service fails or cannot be reached, 2 for a bad
argument or a request the service refuses as malformed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tickstrata.client.market_data import (
    DEFAULT_ADDRESS,
    NUMERIC_ENCODINGS,
    InvalidQueryError,
    MarketDataClient,
    QueryError,
)
from tickstrata.client.timeargs import TimeArgumentError, join_relative_times, to_ns

DEFAULT_SHOWN_ROWS = 20


def _parser(kind: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"tickstrata {kind}", description=__doc__.split("\n\n")[0])
    parser.add_argument("exchange", help="exchange id, e.g. binance")
    parser.add_argument("symbol", help="normalized symbol, e.g. BTC-USDT")
    if kind == "candles":
        parser.add_argument("interval", nargs="?", default="1m", help="1m 5m 15m 1h 4h 1d, <n>m|h|d (default 1m)")
        parser.add_argument("--include-forming", action="store_true", help="also the candle still forming")
    parser.add_argument("--from", dest="start", required=True, help="start: ISO-8601 with zone, a date, or -1h")
    parser.add_argument("--to", dest="end", default="now", help="end (exclusive), same forms; default now")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", metavar="FILE", help="write every row as CSV ('-' for stdout)")
    output.add_argument("--parquet", metavar="FILE", help="write every row as Parquet (zstd)")
    parser.add_argument("--numeric", choices=sorted(NUMERIC_ENCODINGS), default="decimal", help="number encoding")
    parser.add_argument("--limit", type=int, default=DEFAULT_SHOWN_ROWS, help="rows shown in the terminal table")
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"query service (default {DEFAULT_ADDRESS})")
    return parser


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".") + "Z"
    return str(value)


def render(table: pa.Table, limit: int) -> list[str]:
    """The last `limit` rows as an aligned table, with a line saying how many rows were left out."""
    columns = [name for name in table.column_names if name not in ("exchange", "symbol")]
    shown = table.slice(max(0, table.num_rows - limit)).select(columns).to_pylist() if limit > 0 else []
    cells = [[_cell(row[name]) for name in columns] for row in shown]
    widths = [max([len(name), *(len(row[i]) for row in cells)]) for i, name in enumerate(columns)]
    lines = []
    if table.num_rows > len(shown):
        lines.append(f"… {table.num_rows - len(shown):,} earlier rows (use --limit, --csv or --parquet)")
    lines.append("  ".join(name.ljust(width) for name, width in zip(columns, widths, strict=True)).rstrip())
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return lines


def _needs_text(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_decimal(arrow_type) or pa.types.is_dictionary(arrow_type))


def _write_csv(table: pa.Table, path: str, out: TextIO) -> None:
    # Decimals as their exact plain strings; dictionaries as their values.
    plain = pa.table(
        {
            name: column.cast(pa.string()) if _needs_text(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )
    if path == "-":
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(plain, sink)
        out.write(sink.getvalue().to_pybytes().decode())
    else:
        pa_csv.write_csv(plain, path)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(kind: str, argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    args = _parser(kind).parse_args(join_relative_times(sys.argv[1:] if argv is None else argv))
    now_ns = time.time_ns()
    try:
        start_ns, end_ns = to_ns(args.start, now_ns=now_ns), to_ns(args.end, now_ns=now_ns)
    except TimeArgumentError as error:
        print(f"tickstrata {kind}: {error}", file=err)
        return 2

    def progress(rows: int) -> None:
        if err.isatty():
            print(f"\r{rows:,} rows …", end="", file=err, flush=True)

    started = time.perf_counter()
    try:
        with MarketDataClient(args.address) as client:
            if kind == "candles":
                table = client.candles(
                    args.exchange, args.symbol, args.interval, start=start_ns, end=end_ns,
                    include_forming=args.include_forming, numeric=args.numeric, progress=progress,
                )  # fmt: skip
            else:
                table = client.trades(
                    args.exchange, args.symbol, start=start_ns, end=end_ns, numeric=args.numeric, progress=progress
                )
    except (InvalidQueryError, TimeArgumentError) as error:
        print(f"tickstrata {kind}: {error}", file=err)
        return 2
    except QueryError as error:
        print(f"tickstrata {kind}: {error}", file=err)
        return 1
    elapsed_ms = (time.perf_counter() - started) * 1000
    if err.isatty():
        print("\r", end="", file=err)
    what = f"{args.exchange} {args.symbol}" + (f" {args.interval}" if kind == "candles" else "")
    summary = f"{table.num_rows:,} {kind} of {what}, {_iso(start_ns)} → {_iso(end_ns)}, in {elapsed_ms:,.0f} ms"
    if args.parquet:
        pq.write_table(table, args.parquet, compression="zstd")
        print(f"{summary}; written to {args.parquet}", file=err)
    elif args.csv:
        _write_csv(table, args.csv, out)
        print(f"{summary}" + ("" if args.csv == "-" else f"; written to {args.csv}"), file=err)
    else:
        print("\n".join(render(table, args.limit)), file=out)
        print(summary, file=out)
    return 0


def candles_main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    return run("candles", argv, stdout or sys.stdout, stderr or sys.stderr)


def trades_main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    return run("trades", argv, stdout or sys.stdout, stderr or sys.stderr)
