"""The hot tier: QuestDB, read over PGWire (psycopg 3) from the tables the writer creates.

PGWire rather than HTTP `/exec`: bind parameters (no SQL built from user input), and rows arrive as typed
values instead of JSON to re-parse. One connection per call: QuestDB accepts a PGWire connection in about a
millisecond on loopback, and a call never waits for another call's long read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import psycopg
import pyarrow as pa

from tickstrata.query.resample import MINUTE_SCHEMA
from tickstrata.query.tiers import TRADE_SCHEMA

INSTRUMENT_CACHE_SECS: Final = 10.0
CONNECT_TIMEOUT_SECS: Final = 5


class TierUnavailableError(ConnectionError):
    """The tier could not be reached or refused the read; the call may be retried."""


class TooManyRowsError(ValueError):
    """The range holds more rows than one call may return."""


_CANDLES_SQL: Final = (
    "SELECT cast(ts AS LONG), open, high, low, close, volume, quote_volume, trade_count, closed, source "
    "FROM candles WHERE exchange = %s AND symbol = %s AND interval_secs = 60 "
    "AND ts >= cast(%s AS TIMESTAMP_NS) AND ts < cast(%s AS TIMESTAMP_NS) ORDER BY ts LIMIT %s"
)
# Ties at one timestamp keep the venue's order: numeric ids compare by length, then lexically.
_TRADES_SQL: Final = (
    "SELECT cast(ts AS LONG), ts_recv_ns, trade_id, price, size, side FROM trades "
    "WHERE exchange = %s AND symbol = %s AND ts >= cast(%s AS TIMESTAMP_NS) AND ts < cast(%s AS TIMESTAMP_NS) "
    "ORDER BY ts, length(trade_id), trade_id LIMIT %s"
)
_INSTRUMENTS_SQL: Final = (
    "SELECT DISTINCT exchange, symbol FROM trades UNION SELECT DISTINCT exchange, symbol FROM candles"
)


def _floats(values: Sequence[Any]) -> pa.Array:
    return pa.array(np.array([np.nan if v is None else v for v in values], dtype=np.float64), type=pa.float64())


def minute_table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in MINUTE_SCHEMA]
    return pa.table(
        {
            "open_time_ns": pa.array(columns[0], type=pa.int64()),
            "open": _floats(columns[1]),
            "high": _floats(columns[2]),
            "low": _floats(columns[3]),
            "close": _floats(columns[4]),
            "volume": _floats(columns[5]),
            "quote_volume": _floats(columns[6]),
            "trade_count": pa.array(columns[7], type=pa.int64()),
            "closed": pa.array(columns[8], type=pa.bool_()),
            "source": pa.array(columns[9], type=pa.string()),
        },
        schema=MINUTE_SCHEMA,
    )


def trade_rows_table(rows: Sequence[Sequence[Any]]) -> pa.Table:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in TRADE_SCHEMA]
    return pa.table(
        {
            "ts_event_ns": pa.array(columns[0], type=pa.int64()),
            "ts_recv_ns": pa.array(columns[1], type=pa.int64()),
            "trade_id": pa.array(columns[2], type=pa.string()),
            "price": _floats(columns[3]),
            "size": _floats(columns[4]),
            "side": pa.array(columns[5], type=pa.string()),
        },
        schema=TRADE_SCHEMA,
    )


@dataclass
class QuestDBHotTier:
    """Reads the hot tier.

    Until the tiering issue adds the tier catalog, nothing has ever left QuestDB, so it answers for all time; the
    tierer will move this boundary forward as it verifies each partition's copy in the warm tier."""

    dsn: str
    max_rows: int
    holds_from_ns: int = 0
    name: str = "hot"
    _instruments: frozenset[tuple[str, str]] = field(default=frozenset())
    _instruments_at: float = -1e9

    def holds(self, now_ns: int) -> tuple[int, int]:
        # Everything from the boundary on, including anything stamped ahead of now (clock skew).
        return self.holds_from_ns, 2**63 - 1

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECS
            ) as connection:
                cursor = await connection.execute(sql, params)
                return await cursor.fetchall()
        except psycopg.errors.UndefinedTable:
            return []  # no row written yet: the writer creates the tables at its start
        except psycopg.Error as error:
            if "does not exist" in str(error):
                return []
            raise TierUnavailableError(f"QuestDB read failed: {error}") from error
        except OSError as error:
            raise TierUnavailableError(f"QuestDB unreachable: {error}") from error

    async def _bounded(self, sql: str, exchange: str, symbol: str, start_ns: int, end_ns: int) -> list[tuple[Any, ...]]:
        rows = await self._fetch(sql, (exchange, symbol, start_ns, end_ns, self.max_rows + 1))
        if len(rows) > self.max_rows:
            raise TooManyRowsError(
                f"more than {self.max_rows:,} rows in the range; split it into smaller ranges "
                "(or raise QUERY_MAX_ROWS_PER_CALL)"
            )
        return rows

    async def read_minute_candles(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> pa.Table:
        return minute_table(await self._bounded(_CANDLES_SQL, exchange, symbol, start_ns, end_ns))

    async def read_trades(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> pa.Table:
        return trade_rows_table(await self._bounded(_TRADES_SQL, exchange, symbol, start_ns, end_ns))

    async def instruments(self, *, refresh: bool = False) -> frozenset[tuple[str, str]]:
        """(exchange, symbol) pairs stored here, cached for a few seconds."""
        if refresh or time.monotonic() - self._instruments_at > INSTRUMENT_CACHE_SECS:
            rows = await self._fetch(_INSTRUMENTS_SQL, ())
            self._instruments = frozenset((str(e), str(s)) for e, s in rows)
            self._instruments_at = time.monotonic()
        return self._instruments
