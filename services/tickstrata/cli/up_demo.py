"""The queries `tickstrata up` runs at the end of a bounded run, so a newcomer sees the data come back out.

They go through the real query service with the Python client, exactly as a user's code would: the latest price
of each demo symbol on every venue (from the Redis cache), and the last hour of 1-minute candles of one symbol
(from QuestDB). A failing query prints its error and the run goes on: the demo must show what works.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime
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
