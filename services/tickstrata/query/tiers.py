"""The tier router: which storage tier answers which part of a time range. The split is pure; tiers do the I/O.

Each tier says which window of time it holds (`holds`): the hot tier (QuestDB) everything newer than its
retention boundary, the warm tier (ClickHouse, the tiering issue) the year before that, the cold tier (Parquet)
the rest. The router walks the tiers in preference order (hottest first: the freshest copy of a row wins where
windows overlap during a move) and gives each the part of the request no preferred tier has claimed, so every
instant of [start, end) is read from exactly one tier and the parts stitch in time order without overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import pyarrow as pa

from tickstrata.query.resample import MINUTE_SCHEMA

TRADE_SCHEMA: Final = pa.schema(
    [
        ("ts_event_ns", pa.int64()),
        ("ts_recv_ns", pa.int64()),
        ("trade_id", pa.string()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("side", pa.string()),
    ]
)
"""Trades as a tier returns them; `arrow_results.trade_table` turns them into the contract's schema."""


class Tier(Protocol):
    name: str

    def holds(self, now_ns: int) -> tuple[int, int]:
        """The window [start, end) of event time this tier answers for at `now_ns`."""

    async def read_minute_candles(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> pa.Table:
        """1-minute candles with open time in [start, end), sorted (schema: `resample.MINUTE_SCHEMA`)."""

    async def read_trades(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> pa.Table:
        """Trades with event time in [start, end), sorted by time then venue order."""


@dataclass(frozen=True)
class Part:
    tier_index: int
    start_ns: int
    end_ns: int


def _subtract(
    pieces: list[tuple[int, int]], window: tuple[int, int]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split `pieces` into the parts inside `window` and the parts outside it."""
    inside, outside = [], []
    low, high = window
    for start, end in pieces:
        if end <= low or start >= high:
            outside.append((start, end))
            continue
        if start < low:
            outside.append((start, low))
        inside.append((max(start, low), min(end, high)))
        if end > high:
            outside.append((high, end))
    return inside, outside


def plan(windows: Sequence[tuple[int, int]], start_ns: int, end_ns: int) -> list[Part]:
    """Assign [start, end) to tiers by preference (index 0 first); the parts are returned in time order.

    Instants no tier holds are left out: nothing is stored there (the validator reports such holes)."""
    remaining = [(start_ns, end_ns)] if start_ns < end_ns else []
    parts: list[Part] = []
    for index, window in enumerate(windows):
        inside, remaining = _subtract(remaining, window)
        parts += [Part(index, start, end) for start, end in inside]
    return sorted(parts, key=lambda part: part.start_ns)


async def read_minute_candles(
    tiers: Sequence[Tier], exchange: str, symbol: str, start_ns: int, end_ns: int, *, now_ns: int
) -> pa.Table:
    parts = plan([tier.holds(now_ns) for tier in tiers], start_ns, end_ns)
    tables = [await tiers[p.tier_index].read_minute_candles(exchange, symbol, p.start_ns, p.end_ns) for p in parts]
    return _concat(tables, MINUTE_SCHEMA)


async def read_trades(
    tiers: Sequence[Tier], exchange: str, symbol: str, start_ns: int, end_ns: int, *, now_ns: int
) -> pa.Table:
    parts = plan([tier.holds(now_ns) for tier in tiers], start_ns, end_ns)
    tables = [await tiers[p.tier_index].read_trades(exchange, symbol, p.start_ns, p.end_ns) for p in parts]
    return _concat(tables, TRADE_SCHEMA)


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables([table.cast(schema) for table in tables]) if tables else schema.empty_table()
