"""The queries `tickstrata up` runs at the end of a bounded run, so a newcomer sees the data come back out.

They go through the real query service with the Python client, exactly as a user's code would: the latest price
of each demo symbol on every venue (from the Redis cache), and the last hour of 1-minute candles of one symbol
(from QuestDB). A failing query prints its error and the run goes on: the demo must show what works.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from tickstrata.client import MarketDataClient, QueryError

CANDLE_ROWS_SHOWN: Final = 8
CANDLE_COLUMNS: Final = ("open_time_ns", "open", "high", "low", "close", "volume", "closed")


def _format_cell(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M")
    return str(value)


def candle_lines(table: Any, *, max_rows: int = CANDLE_ROWS_SHOWN) -> list[str]:
    """The last `max_rows` candles of an Arrow table as aligned text lines (header first)."""
    columns = [name for name in CANDLE_COLUMNS if name in table.column_names]
    rows = table.slice(max(0, table.num_rows - max_rows)).select(columns).to_pylist()
    cells = [[_format_cell(row[name]) for name in columns] for row in rows]
    headers = ["open (UTC)" if name == "open_time_ns" else name for name in columns]
    widths = [
        max(len(headers[i]), *(len(r[i]) for r in cells)) if cells else len(headers[i]) for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) for value, width in zip(values, widths, strict=True))

    return [line(headers), *(line(r) for r in cells)]


def run_demo_queries(
    address: str, symbols: Sequence[str], candle_feed: tuple[str, str], say: Callable[[str], None]
) -> bool:
    """Print the demo queries' results; return whether all of them answered."""
    ok = True
    with MarketDataClient(address) as client:
        say(f"query service at {address} — latest prices (from the Redis cache, every venue):")
        for symbol in symbols:
            try:
                started = time.perf_counter()
                result = client.latest_prices(symbol)
                elapsed_ms = (time.perf_counter() - started) * 1000
            except QueryError as error:
                say(f"  {symbol}: {error}")
                ok = False
                continue
            venues = ", ".join(f"{row.exchange} {row.price}" for row in result.rows) or "no price cached"
            say(f"  {symbol:<14} {venues}  ({elapsed_ms:.1f} ms)")
        exchange, symbol = candle_feed
        say(f"1-minute candles of {symbol} on {exchange}, last hour (from QuestDB):")
        try:
            started = time.perf_counter()
            table = client.candles(exchange, symbol, "1m", start="-1h")
            elapsed_ms = (time.perf_counter() - started) * 1000
        except (QueryError, ValueError) as error:
            say(f"  candles unavailable: {error}")
            return False
        for text in candle_lines(table):
            say(f"  {text}")
        say(f"  {table.num_rows} candles in {elapsed_ms:.1f} ms")
    return ok


# `tickstrata up --simulate --faults`: what the venues do wrong during the run, relative to the simulator's start.
# Each one is a loss the validator must account for: a trade-id gap and a dropped connection are backfilled, an
# empty minute and an outage are proven empty by the venue's REST history.
DEMO_FAULTS: Final = (
    {"kind": "drop", "venue": "binance", "stream": "btcusdt@aggTrade", "count": 5, "at_secs": 20},
    {"kind": "abrupt_close", "venue": "binance-usdm", "at_secs": 35},
    {"kind": "empty_interval", "venue": "binance", "symbol": "ETHUSDT", "minutes": 1, "at_secs": 45},
    {"kind": "outage", "venue": "binance-usdm", "duration_secs": 60, "at_secs": 70},
)


REPAIR_WAIT_SECS: Final = 30.0
"""How long the end-of-run report waits for backfills in flight before it shows what is still missing."""


def write_demo_faults(data_dir: Path, say: Callable[[str], None]) -> Path:
    """The simulator's scenario file for `--faults`, announced."""
    data_dir.mkdir(parents=True, exist_ok=True)
    scenario = data_dir / "faults.json"
    scenario.write_text(json.dumps(list(DEMO_FAULTS), indent=2))
    kinds = ", ".join(f"{fault['kind']} at {fault['at_secs']} s" for fault in DEMO_FAULTS)
    say(f"the simulated venues will misbehave ({scenario}): {kinds}")
    return scenario


def print_quality(address: str, say: Callable[[str], None], *, window_secs: float) -> None:
    """The validator's report over the run: completeness per feed, open gaps, violations."""
    import grpc  # noqa: PLC0415 - only a bounded run with a validator prints it

    from tickstrata.client.quality_cli import fetch_report  # noqa: PLC0415
    from tickstrata.client.quality_report import QualityReport, render_text  # noqa: PLC0415
    from tickstrata.quality.v1 import quality_service_pb2_grpc  # noqa: PLC0415

    end_ns = time.time_ns()
    deadline = time.monotonic() + REPAIR_WAIT_SECS
    with grpc.insecure_channel(address) as channel:
        stub = quality_service_pb2_grpc.QualityServiceStub(channel)

        def fetch() -> QualityReport:
            start_ns = end_ns - int(window_secs * 1e9)
            return fetch_report(stub, exchanges=[], symbols=[], start_ns=start_ns, end_ns=end_ns, timeout_secs=10)

        try:
            report = fetch()
            # A minute judged a moment ago may still be waiting for its backfill: give the repairs a little time,
            # as a user looking at the report would.
            while (report.total.missing or report.open_gaps) and time.monotonic() < deadline:
                time.sleep(1)
                report = fetch()
        except grpc.RpcError as error:
            say(f"quality report failed: {error}")
            return
    say("quality, as `tickstrata quality` shows it:")
    for line in render_text(report).splitlines():
        say(f"  {line}")
