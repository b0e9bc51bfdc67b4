"""The hot tier: QuestDB, read over PGWire (psycopg 3) from the tables the writer creates.

PGWire rather than HTTP `/exec`: bind parameters (no SQL built from user input), and rows arrive as typed
values instead of JSON to re-parse. Connections come from a small bounded pool (`pg_pool`).

Bounded cost: rows are streamed in chunks of `CHUNK_ROWS` (libpq's chunked-rows mode: the server's rows wait in
the socket, not in client memory) and turned into Arrow record batches as they arrive (`row_batches`); the row
cap is counted while reading, and the read stops at the first row past it. Between chunks the read yields to the
event loop, so GetLatestPrice and `/healthz` keep answering during a long read. A row outside the stored bounds
is left out and counted (`BadValues`, source ``questdb``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Final, cast

import psycopg
import pyarrow as pa

from tickstrata.common.questdb_schema import TIER_CATALOG_TABLE
from tickstrata.query.bad_values import BadValues
from tickstrata.query.instruments import Instrument
from tickstrata.query.pg_pool import PgPool
from tickstrata.query.row_batches import RowBatcher, minute_batcher, trade_batcher

CHUNK_ROWS: Final = 4096
"""Rows per chunk read from the server; the read yields to the event loop after each."""


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
_MOVED_DAYS_SQL: Final = (
    f"SELECT cast(ts AS LONG) FROM {TIER_CATALOG_TABLE} WHERE data_table = %s AND exchange = %s AND symbol = %s "  # noqa: S608 - a constant
    "AND ts >= cast(%s AS TIMESTAMP_NS) AND ts < cast(%s AS TIMESTAMP_NS) ORDER BY ts"
)
DAY_NS: Final = 86_400 * 1_000_000_000


class _Abandoned(Exception):  # noqa: N818 - control flow inside `_stream`, never escapes it
    """A retry on a fresh connection is wanted: the pooled one died while idle."""


class QuestDBHotTier:
    """Reads the hot tier.

    It answers for all time except the days the tierer moved to the warm tier (`moved_days`, from the tier catalog),
    which this service cannot read yet: a call that touches one is refused instead of answered with a hole."""

    name: str = "hot"

    def __init__(self, pool: PgPool, *, max_rows: int, bad_values: BadValues, holds_from_ns: int = 0) -> None:
        self._pool = pool
        self.max_rows = max_rows
        self._bad_values = bad_values
        self.holds_from_ns = holds_from_ns
        self.rows_read = 0
        """Rows received from QuestDB since start, kept or not (tests bound a refused read by it)."""

    def holds(self, now_ns: int) -> tuple[int, int]:
        # Everything from the boundary on, including anything stamped ahead of now (clock skew).
        return self.holds_from_ns, 2**63 - 1

    async def _stream(self, sql: str, params: Sequence[Any], sink: RowBatcher, *, what: str) -> None:
        """Stream the rows of `sql` into `sink`, at most `max_rows`; raise `TooManyRowsError` at the next one."""
        for attempt in range(2):
            try:
                await self._stream_once(sql, params, sink, what=what, may_retry=attempt == 0)
                return
            except _Abandoned:
                continue

    async def _stream_once(self, sql: str, params: Sequence[Any], sink: RowBatcher, *, what: str,
                           may_retry: bool) -> None:  # fmt: skip
        received = 0
        reused = False
        try:
            async with self._pool.lease() as lease:
                reused = lease.reused
                # An async generator (typed as an iterator): closed explicitly below, never left to the GC.
                rows = cast("AsyncGenerator[tuple[Any, ...], None]",
                            lease.connection.cursor().stream(sql, params, size=CHUNK_ROWS))  # fmt: skip
                try:
                    async for row in rows:
                        received += 1
                        self.rows_read += 1
                        if received > self.max_rows:
                            raise TooManyRowsError(
                                f"more than {self.max_rows:,} rows in the range; split it into smaller ranges "
                                "(or raise QUERY_MAX_ROWS_PER_CALL)"
                            )
                        if (problem := sink.add(row)) is not None:
                            self._bad_values.record("questdb", what, problem)
                        if received % CHUNK_ROWS == 0:
                            await asyncio.sleep(0)  # let GetLatestPrice and the probes in between chunks
                except BaseException:
                    # Drop the socket before the stream's clean-up, which would otherwise drain what is left.
                    lease.keep = False
                    await lease.connection.close()
                    raise
                finally:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await rows.aclose()
        except psycopg.errors.UndefinedTable:
            return  # no row written yet: the writer creates the tables at its start
        except psycopg.Error as error:
            if "does not exist" in str(error):
                return
            if may_retry and reused and received == 0 and isinstance(error, psycopg.OperationalError):
                raise _Abandoned from error  # most likely a pooled connection that died while idle
            raise TierUnavailableError(f"QuestDB read failed: {error}") from error
        except OSError as error:
            raise TierUnavailableError(f"QuestDB unreachable: {error}") from error

    async def read_minute_candles(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> pa.Table:
        sink = minute_batcher()
        params = (exchange, symbol, start_ns, end_ns, self.max_rows + 1)
        await self._stream(_CANDLES_SQL, params, sink, what=f"candles:{exchange}:{symbol}")
        return sink.table()

    async def read_trades(self, exchange: str, symbol: str, start_ns: int, end_ns: int) -> pa.Table:
        sink = trade_batcher()
        params = (exchange, symbol, start_ns, end_ns, self.max_rows + 1)
        await self._stream(_TRADES_SQL, params, sink, what=f"trades:{exchange}:{symbol}")
        return sink.table()

    async def read_instruments(self) -> frozenset[Instrument]:
        """(exchange, symbol) pairs stored here: a full scan, so callers go through `InstrumentCache`."""
        rows = await self._fetch(_INSTRUMENTS_SQL, ())
        return frozenset((str(e), str(s)) for e, s in rows)  # one row per instrument

    async def moved_days(self, table: str, exchange: str, symbol: str, start_ns: int, end_ns: int) -> list[int]:
        """The first nanosecond of each day of [start, end) whose `table` rows of the instrument moved to warm (a
        tiny indexed read of the tier catalog; none before the tierer first ran)."""
        day_start_ns = start_ns - start_ns % DAY_NS
        rows = await self._fetch(_MOVED_DAYS_SQL, (table, exchange, symbol, day_start_ns, end_ns))
        return [int(row[0]) for row in rows]

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """All rows of a small query; none when its table does not exist yet."""
        for attempt in range(2):
            reused = False
            try:
                async with self._pool.lease() as lease:
                    reused = lease.reused
                    cursor = await lease.connection.execute(sql, params)
                    return list(await cursor.fetchall())
            except psycopg.errors.UndefinedTable:
                return []
            except psycopg.Error as error:
                if "does not exist" in str(error):
                    return []
                if attempt == 0 and reused and isinstance(error, psycopg.OperationalError):
                    continue
                raise TierUnavailableError(f"QuestDB read failed: {error}") from error
            except OSError as error:
                raise TierUnavailableError(f"QuestDB unreachable: {error}") from error
        raise AssertionError("unreachable")
